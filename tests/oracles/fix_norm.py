"""mpmath oracle and proof cases for fix_norm, written from the spec's equations.

    norm = sqrt(sum_j x_j^2),   y = weight * x / max(norm, eps)   (unclamped branch at norm == eps)
"""

from __future__ import annotations

from typing import Any

import mpmath
import numpy as np

from . import DPS, ProofCase, mp_array, seeded


def mp_forward(primals: dict[str, np.ndarray | None], hyper: dict[str, Any]
               ) -> dict[str, np.ndarray]:
    x, w = primals["x"], primals["weight"]
    assert x is not None
    assert w is not None
    axis = hyper["axis"] % x.ndim
    with mpmath.workdps(DPS):
        g = mpmath.mpf(float(w))
        eps = mpmath.mpf(hyper["eps"])
        moved = np.moveaxis(mp_array(x), axis, -1)
        y = np.empty(moved.shape, dtype=object)
        norm = np.empty(moved.shape[:-1], dtype=object)
        for idx in np.ndindex(*moved.shape[:-1]):
            vals = moved[idx]
            n = mpmath.sqrt(mpmath.fsum(v * v for v in vals))
            divisor = n if n >= eps else eps
            norm[idx] = n
            for j, v in enumerate(vals):
                # 0/0 with eps = 0 and a zero vector: NaN, as IEEE division says.
                y[(*idx, j)] = mpmath.mpf("nan") if divisor == 0 else g * v / divisor
    return {"y": np.moveaxis(y, -1, axis), "norm": norm}


_SHAPES: list[tuple[tuple[int, ...], int]] = [
    ((3, 7), -1), ((2, 13), 1), ((4, 1), -1), ((1, 515), -1), ((5, 3), 0),
    ((2, 3, 4), 1), ((6,), 0), ((2, 2, 5), -1),
]
_DISTS = ["normal", "away", "offset_1e3", "tiny", "huge", "one_nonzero", "zero"]


def _draw(rng: np.random.Generator, shape: tuple[int, ...], dist: str) -> np.ndarray:
    base = rng.standard_normal(shape)
    if dist == "away":
        return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 2.0, shape)
    if dist == "offset_1e3":
        return 1e3 + base
    if dist == "tiny":
        return 1e-150 * base
    if dist == "huge":
        return 1e100 * base
    if dist == "one_nonzero":
        out = np.zeros(shape)
        out.flat[rng.integers(out.size)] = -2.5
        return out
    if dist == "zero":
        return np.zeros(shape)
    return base


def _eps(dist: str, seed: int) -> float:
    if dist == "tiny":
        return [0.0, 1e-200, 1e-12][seed % 3]
    if dist == "zero":
        return [1e-12, 1e-5, 0.5][seed % 3]
    return [1e-12, 1e-5, 0.1, 0.0][seed % 4]


def _special_cases() -> list[ProofCase]:
    rng = seeded(7101)
    z = rng.standard_normal((3, 6))
    unit = z / np.sqrt(np.sum(z * z, axis=1, keepdims=True))
    scale = 2.0**-20
    small = 1e-3 * rng.choice([-1.0, 1.0], (2, 5)) * rng.uniform(0.5, 2.0, (2, 5))
    w = np.float64(1.75)
    return [
        ProofCase("norm_equals_eps", {"x": np.array([[3.0, -4.0]]) * scale, "weight": w},
                  {"axis": -1, "eps": 5.0 * scale}, fd=False),
        ProofCase("norm_just_above_eps", {"x": unit * 1e-5 * (1 + 1e-9), "weight": w},
                  {"axis": 1, "eps": 1e-5}, fd=False),
        ProofCase("norm_just_below_eps", {"x": unit * 1e-5 * (1 - 1e-9), "weight": w},
                  {"axis": 1, "eps": 1e-5}, fd=False),
        ProofCase("zero_and_normal_rows",
                  {"x": np.array([[0.0, 0.0, 0.0], [1.0, -2.0, 0.5]]), "weight": w},
                  {"axis": -1, "eps": 1e-12}, fd=False),
        ProofCase("weight_zero", {"x": rng.standard_normal((3, 4)), "weight": np.float64(0.0)},
                  {"axis": -1, "eps": 1e-12}, fd=True),
        ProofCase("weight_negative", {"x": rng.standard_normal((2, 5)),
                                      "weight": np.float64(-3.0)},
                  {"axis": 0, "eps": 1e-12}, fd=True),
        ProofCase("weight_sqrt_d", {"x": rng.standard_normal((4, 16)),
                                    "weight": np.float64(4.0)},
                  {"axis": -1, "eps": 1e-5}, fd=True),
        ProofCase("weight_huge", {"x": rng.standard_normal((2, 6)), "weight": np.float64(1e300)},
                  {"axis": -1, "eps": 1e-12}, fd=False),
        ProofCase("near_max", {"x": 1e306 * rng.uniform(1.0, 1.7, (1, 40)),
                               "weight": np.float64(0.5)},
                  {"axis": -1, "eps": 1e-12}, fd=False),
        ProofCase("clamped_linear", {"x": small, "weight": w}, {"axis": -1, "eps": 1.0}, fd=True),
        ProofCase("clamped_linear-axis=0", {"x": small.T.copy(), "weight": np.float64(-0.5)},
                  {"axis": 0, "eps": 1.0}, fd=True),
    ]


def proof_cases() -> list[ProofCase]:
    cases = []
    seed = 0
    for shape, axis in _SHAPES:
        for dist in _DISTS:
            seed += 1
            rng = seeded(7200 + seed)
            x = _draw(rng, shape, dist)
            w = np.float64(rng.uniform(0.5, 3.0) * rng.choice([-1.0, 1.0]))
            smooth = dist == "away" and x.size <= 64
            cases.append(ProofCase(
                name=f"{dist}-{'x'.join(map(str, shape))}-axis={axis}",
                primals={"x": x, "weight": w},
                hyper={"axis": axis, "eps": _eps(dist, seed)},
                fd=smooth, fd_step=1e-3))
    return cases + _special_cases()
