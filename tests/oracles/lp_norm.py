"""mpmath oracle and proof cases for lp_norm, written from the spec's equations.

    norm = (sum_j |x_j|^p)^(1/p),   y = x / max(norm, eps)   (unclamped branch at norm == eps)
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
    axis = hyper["axis"] % x.ndim
    with mpmath.workdps(DPS):
        p = mpmath.mpf(hyper["p"])
        eps = mpmath.mpf(hyper["eps"])
        moved = np.moveaxis(mp_array(x), axis, -1)
        y = np.empty(moved.shape, dtype=object)
        norm = np.empty(moved.shape[:-1], dtype=object)
        for idx in np.ndindex(*moved.shape[:-1]):
            vals = moved[idx]
            n = mpmath.fsum(abs(v) ** p for v in vals) ** (1 / p)
            divisor = n if n >= eps else eps
            norm[idx] = n
            for j, v in enumerate(vals):
                # 0/0 with eps = 0 and a zero vector: NaN, as IEEE division says.
                y[(*idx, j)] = mpmath.mpf("nan") if divisor == 0 else v / divisor
    return {"y": np.moveaxis(y, -1, axis), "norm": norm}


_SHAPES: list[tuple[tuple[int, ...], int]] = [
    ((3, 7), -1), ((2, 13), 1), ((4, 1), -1), ((1, 1031), -1), ((5, 3), 0),
    ((2, 3, 4), 1), ((6,), 0), ((2, 2, 5), -1),
]
_DISTS = ["normal", "away", "offset_1e3", "tiny", "huge", "constant", "zero"]
_PS = [2.0, 1.0, 3.0, 1.5]


def _draw(rng: np.random.Generator, shape: tuple[int, ...], dist: str) -> np.ndarray:
    base = rng.standard_normal(shape)
    if dist == "away":
        # Bounded away from the kink at 0, so finite differences see a smooth function.
        return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 2.0, shape)
    if dist == "offset_1e3":
        return 1e3 + base
    if dist == "tiny":
        return 1e-150 * base
    if dist == "huge":
        return 1e100 * base
    if dist == "constant":
        return np.full(shape, -12345.678)
    if dist == "zero":
        return np.zeros(shape)
    return base


def _eps(dist: str, seed: int) -> float:
    if dist == "tiny":
        # Unclamped (the norm is ~1e-150) unless eps is the usual 1e-12, which clamps.
        return [0.0, 1e-200, 1e-12][seed % 3]
    if dist == "zero":
        return [1e-12, 1e-6, 0.5][seed % 3]
    return [1e-12, 1e-6, 0.1, 0.0][seed % 4]


def _special_cases() -> list[ProofCase]:
    rng = seeded(7001)
    z = rng.standard_normal((3, 6))
    unit = z / np.sqrt(np.sum(z * z, axis=1, keepdims=True))
    scale = 2.0**-20
    small = 1e-3 * rng.choice([-1.0, 1.0], (2, 5)) * rng.uniform(0.5, 2.0, (2, 5))
    mixed = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, -2.0, 0.5, 3.0]])
    return [
        # Norm exactly eps (both exact in float64): the unclamped branch, same value.
        ProofCase("norm_equals_eps-p=2", {"x": np.array([[3.0, -4.0]]) * scale},
                  {"p": 2.0, "axis": -1, "eps": 5.0 * scale}, fd=False),
        ProofCase("norm_equals_eps-p=1", {"x": np.array([[1.0, -2.0, 0.5]]) * scale},
                  {"p": 1.0, "axis": -1, "eps": 3.5 * scale}, fd=False),
        # Norms a relative 1e-9 above and below eps: one branch each, far from rounding.
        ProofCase("norm_just_above_eps", {"x": unit * 1e-6 * (1 + 1e-9)},
                  {"p": 2.0, "axis": 1, "eps": 1e-6}, fd=False),
        ProofCase("norm_just_below_eps", {"x": unit * 1e-6 * (1 - 1e-9)},
                  {"p": 2.0, "axis": 1, "eps": 1e-6}, fd=False),
        # One clamped (zero) row and one unclamped row in the same call.
        ProofCase("mixed_rows-zero_and_normal", {"x": mixed},
                  {"p": 2.0, "axis": -1, "eps": 1e-12}, fd=False),
        ProofCase("large_p=1000", {"x": rng.standard_normal((3, 9))},
                  {"p": 1000.0, "axis": -1, "eps": 1e-12}, fd=False),
        ProofCase("p=7-huge", {"x": 1e100 * rng.standard_normal((2, 8))},
                  {"p": 7.0, "axis": -1, "eps": 1e-12}, fd=False),
        ProofCase("p=2.5-tiny-1e-300", {"x": 1e-300 * rng.standard_normal((2, 8))},
                  {"p": 2.5, "axis": -1, "eps": 0.0}, fd=False),
        # The sum is within a factor 4 of the largest float64.
        ProofCase("p=1-near_max", {"x": 1e306 * rng.uniform(1.0, 1.7, (1, 40))},
                  {"p": 1.0, "axis": -1, "eps": 1e-12}, fd=False),
        # The clamped branch is linear: its derivatives are t/eps, g/eps and 0.
        ProofCase("clamped_linear-p=2", {"x": small}, {"p": 2.0, "axis": -1, "eps": 1.0},
                  fd=True),
        ProofCase("clamped_linear-p=1.5", {"x": small.T.copy()},
                  {"p": 1.5, "axis": 0, "eps": 1.0}, fd=True),
    ]


def proof_cases() -> list[ProofCase]:
    cases = []
    seed = 0
    for shape, axis in _SHAPES:
        for dist in _DISTS:
            seed += 1
            rng = seeded(5000 + seed)
            p = _PS[seed % len(_PS)]
            x = _draw(rng, shape, dist)
            smooth = dist == "away" and x.size <= 64
            cases.append(ProofCase(
                name=f"{dist}-{'x'.join(map(str, shape))}-axis={axis}-p={p:g}",
                primals={"x": x},
                hyper={"p": p, "axis": axis, "eps": _eps(dist, seed)},
                fd=smooth, fd_step=1e-3))
    return cases + _special_cases()
