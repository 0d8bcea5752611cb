"""mpmath oracle and proof cases for scale_norm, written from the spec's equations.

    norm[m, i] = sqrt(sum_d x[m, i, d]^2),   y = weight * x / max(norm, eps)   (one weight)
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
    with mpmath.workdps(DPS):
        g = mpmath.mpf(float(w))
        eps = mpmath.mpf(hyper["eps"])
        xs = mp_array(x)
        y = np.empty(xs.shape, dtype=object)
        norm = np.empty(xs.shape[:-1], dtype=object)
        # every module m uses the same g: the loop over the leading axes covers all modules
        for idx in np.ndindex(*xs.shape[:-1]):
            vals = xs[idx]
            n = mpmath.sqrt(mpmath.fsum(v * v for v in vals))
            divisor = n if n >= eps else eps
            norm[idx] = n
            for d, v in enumerate(vals):
                y[(*idx, d)] = mpmath.mpf("nan") if divisor == 0 else g * v / divisor
    return {"y": y, "norm": norm}


_SHAPES: list[tuple[int, ...]] = [
    (3, 2, 7), (2, 13), (4, 3, 1), (1, 2, 257), (6, 2, 2, 4), (2, 5), (3, 1, 16),
]
_DISTS = ["normal", "away", "offset_1e3", "tiny", "huge", "one_nonzero", "zero", "per_module"]


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
        out.flat[rng.integers(out.size)] = 3.5
        return out
    if dist == "zero":
        return np.zeros(shape)
    # every module at its own scale (residual streams grow with depth)
    return base * (10.0 ** rng.uniform(-3, 3, (shape[0],) + (1,) * (len(shape) - 1)))


def _eps(dist: str, seed: int) -> float:
    if dist == "tiny":
        return [0.0, 1e-200, 1e-5][seed % 3]
    if dist == "zero":
        return [1e-5, 1e-12, 0.5][seed % 3]
    return [1e-5, 1e-12, 0.1, 0.0][seed % 4]


def _special_cases() -> list[ProofCase]:
    rng = seeded(7301)
    small = 1e-3 * rng.choice([-1.0, 1.0], (3, 2, 4)) * rng.uniform(0.5, 2.0, (3, 2, 4))
    mixed = np.stack([rng.standard_normal((2, 5)), np.zeros((2, 5)), 1e-6 * np.ones((2, 5))])
    scale = 2.0**-20
    return [
        ProofCase("norm_equals_eps", {"x": np.array([[[3.0, -4.0]], [[0.0, 5.0]]]) * scale,
                                      "weight": np.float64(4.0)},
                  {"eps": 5.0 * scale}, fd=False),
        ProofCase("modules_clamped_zero_and_normal", {"x": mixed, "weight": np.float64(2.5)},
                  {"eps": 1e-5}, fd=False),
        ProofCase("clamped_linear", {"x": small, "weight": np.float64(-1.5)}, {"eps": 1.0},
                  fd=True),
        ProofCase("weight_sqrt_d", {"x": rng.standard_normal((3, 2, 16)),
                                    "weight": np.float64(4.0)}, {"eps": 1e-5}, fd=True),
        ProofCase("weight_zero", {"x": rng.standard_normal((2, 3, 4)),
                                  "weight": np.float64(0.0)}, {"eps": 1e-5}, fd=True),
        ProofCase("twelve_modules", {"x": rng.standard_normal((12, 1, 3)),
                                     "weight": np.float64(0.75)}, {"eps": 1e-5}, fd=True),
        ProofCase("near_max", {"x": 1e306 * rng.uniform(1.0, 1.7, (2, 1, 40)),
                               "weight": np.float64(0.5)}, {"eps": 1e-5}, fd=False),
    ]


def proof_cases() -> list[ProofCase]:
    cases = []
    seed = 0
    for shape in _SHAPES:
        for dist in _DISTS:
            seed += 1
            rng = seeded(7400 + seed)
            x = _draw(rng, shape, dist)
            w = np.float64(rng.uniform(0.5, 5.0) * rng.choice([-1.0, 1.0]))
            smooth = dist == "away" and x.size <= 64
            cases.append(ProofCase(name=f"{dist}-{'x'.join(map(str, shape))}",
                                   primals={"x": x, "weight": w},
                                   hyper={"eps": _eps(dist, seed)}, fd=smooth, fd_step=1e-3))
    return cases + _special_cases()
