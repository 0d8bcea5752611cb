"""mpmath oracle and proof cases for weight_norm, written from the spec's equations.

    norm[s] = sqrt(sum_{j in s} x_j^2),   w_j = g[s] * x_j / sqrt(norm[s]^2 + eps)

A slice is one index of ``kept_axis`` (all of the other axes), or the whole tensor for
``kept_axis = "none"``; ``g`` has the shape of ``x`` with the normalized axes set to 1.
"""

from __future__ import annotations

from typing import Any

import mpmath
import numpy as np

from . import DPS, ProofCase, mp_array, seeded


def mp_forward(primals: dict[str, np.ndarray | None], hyper: dict[str, Any]
               ) -> dict[str, np.ndarray]:
    x, g = primals["x"], primals["g"]
    assert x is not None
    assert g is not None
    k = hyper["kept_axis"]
    with mpmath.workdps(DPS):
        eps = mpmath.mpf(hyper["eps"])
        xm = mp_array(x)
        # one slice per index of the kept axis: move it first (or add a length-1 axis)
        moved = xm.reshape((1, -1)) if k == "none" else np.moveaxis(xm, k, 0).reshape(
            x.shape[k], -1)
        gs = mp_array(g).reshape(-1)
        y = np.empty(moved.shape, dtype=object)
        norm = np.empty(moved.shape[0], dtype=object)
        for i in range(moved.shape[0]):
            sq = mpmath.fsum(v * v for v in moved[i])
            norm[i] = mpmath.sqrt(sq)
            den = mpmath.sqrt(sq + eps)
            for j, v in enumerate(moved[i]):
                # 0/0 (eps = 0, a zero slice) is NaN, as IEEE division says
                y[i, j] = mpmath.mpf("nan") if den == 0 else gs[i] * v / den
        if k == "none":
            y_full = y.reshape(x.shape)
        else:
            shape_moved = (x.shape[k], *[d for a, d in enumerate(x.shape) if a != k % x.ndim])
            y_full = np.moveaxis(y.reshape(shape_moved), 0, k)
    return {"y": y_full, "norm": norm.reshape(g.shape)}


def _g_shape(shape: tuple[int, ...], k: int | str) -> tuple[int, ...]:
    if k == "none":
        return (1,) * len(shape)
    kk = k % len(shape)
    return tuple(d if i == kk else 1 for i, d in enumerate(shape))


_SHAPES: list[tuple[tuple[int, ...], int | str]] = [
    ((4, 3, 3, 3), 0), ((5, 7), 0), ((5, 7), 1), ((3, 2, 2, 4), -1), ((4, 3, 2), "none"),
    ((9,), 0), ((9,), "none"), ((2, 3, 5), 1), ((1, 300), 0),
]
_DISTS = ["normal", "away", "tiny", "huge", "decades", "offset_1e3"]


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
    rng = seeded(12101)
    out = []
    x = rng.standard_normal((4, 3, 2, 2))
    x[1] = 0.0
    g = rng.standard_normal((4, 1, 1, 1))
    out.append(ProofCase("zero_slice-eps=1e-12", {"x": x, "g": g},
                         {"kept_axis": 0, "eps": 1e-12}, fd=False))
    out.append(ProofCase("zero_slice-eps=1", {"x": x, "g": g},
                         {"kept_axis": 0, "eps": 1.0}, fd=True))
    out.append(ProofCase("zero_slice-eps=0", {"x": x, "g": g},
                         {"kept_axis": 0, "eps": 0.0}, fd=False))
    out.append(ProofCase("zero_tensor-none", {"x": np.zeros((3, 2)), "g": np.ones((1, 1))},
                         {"kept_axis": "none", "eps": 1e-6}, fd=False))
    # eps comparable to the squared norm: both terms matter
    out.append(ProofCase("eps_comparable", {"x": 1e-3 * rng.standard_normal((3, 4)),
                                            "g": rng.standard_normal((3, 1))},
                         {"kept_axis": 0, "eps": 1e-5}, fd=True, fd_step=1e-6))
    out.append(ProofCase("near_max", {"x": 1e300 * rng.uniform(1.0, 1.7, (2, 30)),
                                      "g": np.array([[0.5], [-2.0]])},
                         {"kept_axis": 0, "eps": 1e-12}, fd=False))
    out.append(ProofCase("subnormal", {"x": 1e-310 * rng.standard_normal((2, 5)),
                                       "g": np.array([[1.5], [-0.25]])},
                         {"kept_axis": 0, "eps": 0.0}, fd=False))
    out.append(ProofCase("huge_g", {"x": rng.standard_normal((3, 4)),
                                    "g": 1e150 * rng.standard_normal((3, 1))},
                         {"kept_axis": 0, "eps": 0.0}, fd=False))
    out.append(ProofCase("columns", {"x": rng.standard_normal((2, 3)),
                                     "g": rng.standard_normal((1, 3))},
                         {"kept_axis": 1, "eps": 0.0}, fd=True))
    return out


def proof_cases() -> list[ProofCase]:
    cases = []
    seed = 0
    for shape, k in _SHAPES:
        for dist in _DISTS:
            seed += 1
            rng = seeded(12000 + seed)
            x = _draw(rng, shape, dist)
            g = rng.standard_normal(_g_shape(shape, k))
            eps = [0.0, 1e-12, 0.0, 1e-3][seed % 4]
            smooth = dist in ("away", "normal") and x.size <= 128
            cases.append(ProofCase(
                name=f"{dist}-{'x'.join(map(str, shape))}-kept={k}-eps={eps:g}",
                primals={"x": x, "g": g}, hyper={"kept_axis": k, "eps": eps},
                fd=smooth, fd_step=1e-3))
    return cases + _special_cases()
