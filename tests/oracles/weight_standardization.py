"""mpmath oracle and proof cases for weight_standardization, written from the spec's equations.

    mean[o] = (1/n) sum_j x[o, j],  var[o] = (1/n) sum_j (x[o, j] - mean[o])^2
    y[o, j] = (x[o, j] - mean[o]) / sqrt(var[o] + eps)

``o`` runs over ``kept_axis`` (the output channels), ``j`` over the other axes.
"""

from __future__ import annotations

from typing import Any

import mpmath
import numpy as np

from . import DPS, ProofCase, mp_array, seeded


def mp_forward(primals: dict[str, np.ndarray | None], hyper: dict[str, Any]
               ) -> dict[str, np.ndarray]:
    x = primals["x"]
    assert x is not None
    k = hyper["kept_axis"] % x.ndim
    with mpmath.workdps(DPS):
        eps = mpmath.mpf(hyper["eps"])
        moved = np.moveaxis(mp_array(x), k, 0)
        rows = moved.reshape(x.shape[k], -1)
        y = np.empty(rows.shape, dtype=object)
        mean = np.empty(rows.shape[0], dtype=object)
        var = np.empty(rows.shape[0], dtype=object)
        rstd = np.empty(rows.shape[0], dtype=object)
        n = rows.shape[1]
        for o in range(rows.shape[0]):
            mean[o] = mpmath.fsum(rows[o]) / n
            var[o] = mpmath.fsum((v - mean[o]) ** 2 for v in rows[o]) / n
            den = var[o] + eps
            # 1/sqrt(0) = inf and 0 * inf = NaN (eps = 0, a constant channel), as IEEE says
            rstd[o] = mpmath.inf if den == 0 else 1 / mpmath.sqrt(den)
            for j, v in enumerate(rows[o]):
                d = v - mean[o]
                y[o, j] = mpmath.mpf("nan") if den == 0 else d * rstd[o]
        y_full = np.moveaxis(y.reshape(moved.shape), 0, k)
    return {"y": y_full, "mean": mean, "var": var, "rstd": rstd}


_SHAPES: list[tuple[tuple[int, ...], int]] = [
    ((4, 3, 3, 3), 0), ((3, 3, 2, 5), -1), ((5, 7), 0), ((7, 5), -1), ((3, 4, 5), 1),
    ((2, 2, 2, 3, 3), 0), ((1, 300), 0), ((6, 2), 0),
]
_DISTS = ["normal", "away", "offset_1e3", "tiny", "huge", "decades"]


def _draw(rng: np.random.Generator, shape: tuple[int, ...], dist: str) -> np.ndarray:
    base = rng.standard_normal(shape)
    if dist == "away":
        return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 2.0, shape)
    if dist == "offset_1e3":
        return 1e3 + base
    if dist == "tiny":
        return 1e-150 * base
    if dist == "huge":
        return 1e150 * base
    if dist == "decades":
        return base * 10.0 ** rng.uniform(-8, 8, shape)
    return base


def _special_cases() -> list[ProofCase]:
    rng = seeded(12201)
    out = []
    x = rng.standard_normal((4, 3, 2, 2))
    x[1] = 0.75
    out.append(ProofCase("constant_channel-eps=1e-6", {"x": x}, {"kept_axis": 0, "eps": 1e-6},
                         fd=False))
    out.append(ProofCase("constant_channel-eps=0", {"x": x}, {"kept_axis": 0, "eps": 0.0},
                         fd=False))
    out.append(ProofCase("eps_comparable", {"x": 1e-3 * rng.standard_normal((3, 8))},
                         {"kept_axis": 0, "eps": 1e-6}, fd=True, fd_step=1e-6))
    out.append(ProofCase("eps=1-smooth", {"x": rng.standard_normal((3, 5))},
                         {"kept_axis": 0, "eps": 1.0}, fd=True))
    out.append(ProofCase("n=2", {"x": rng.standard_normal((5, 2))},
                         {"kept_axis": 0, "eps": 1e-10}, fd=False))
    out.append(ProofCase("offset_1e8", {"x": 1e8 + rng.standard_normal((3, 6))},
                         {"kept_axis": 0, "eps": 0.0}, fd=False))
    out.append(ProofCase("tiny-eps=0", {"x": 1e-100 * rng.standard_normal((2, 6))},
                         {"kept_axis": 0, "eps": 0.0}, fd=False))
    return out


def proof_cases() -> list[ProofCase]:
    cases = []
    seed = 0
    for shape, k in _SHAPES:
        for dist in _DISTS:
            seed += 1
            rng = seeded(12200 + seed)
            x = _draw(rng, shape, dist)
            eps = [0.0, 1e-6, 1e-10, 1e-5][seed % 4] if dist not in ("tiny",) else 0.0
            # n = 2 with eps = 0 gives y = +-1: a zero derivative that differences only blur
            smooth = dist in ("away", "normal") and x.size <= 128 and x.size // x.shape[k] > 2
            cases.append(ProofCase(
                name=f"{dist}-{'x'.join(map(str, shape))}-kept={k}-eps={eps:g}",
                primals={"x": x}, hyper={"kept_axis": k, "eps": eps}, fd=smooth, fd_step=1e-3))
    return cases + _special_cases()
