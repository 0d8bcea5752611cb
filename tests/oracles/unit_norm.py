"""mpmath oracle and proof cases for unit_norm, written from the spec's equations.

    norm = sqrt(sum_j x_j^2),   y = x / max(norm, eps)   (unclamped branch at norm == eps)

The cases are nGPT's tensor kinds: hidden states (B, T, D) along D, embedding tables (V, D)
along D, and weight matrices in PyTorch's (out, in) layout along whichever axis is D.
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
                y[(*idx, j)] = mpmath.mpf("nan") if divisor == 0 else v / divisor
    return {"y": np.moveaxis(y, -1, axis), "norm": norm}


# (name, shape, axis): D = 8 model width, 6 = heads * head dim, 16 = MLP width, V = 10
_KINDS: list[tuple[str, tuple[int, ...], int]] = [
    ("hidden", (2, 3, 8), -1), ("embedding", (10, 8), -1), ("lm_head", (10, 8), 1),
    ("w_q", (6, 8), 1), ("w_o", (8, 6), 0), ("w_up", (16, 8), 1), ("w_down", (8, 16), 0),
    ("flax_kernel_q", (8, 6), 0),
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
        out.flat[rng.integers(out.size)] = -0.75
        return out
    if dist == "zero":
        return np.zeros(shape)
    return base


def _eps(dist: str, seed: int) -> float:
    if dist == "tiny":
        return [0.0, 1e-200, 1e-12][seed % 3]
    if dist == "zero":
        return [1e-12, 1e-6, 0.5][seed % 3]
    return [0.0, 1e-12, 0.1, 1e-6][seed % 4]


def _special_cases() -> list[ProofCase]:
    rng = seeded(7501)
    scale = 2.0**-20
    small = 1e-3 * rng.choice([-1.0, 1.0], (4, 3)) * rng.uniform(0.5, 2.0, (4, 3))
    return [
        ProofCase("norm_equals_eps", {"x": np.array([[3.0], [-4.0]]) * scale},
                  {"axis": 0, "eps": 5.0 * scale}, fd=False),
        ProofCase("clamped_linear-axis=0", {"x": small}, {"axis": 0, "eps": 1.0}, fd=True),
        ProofCase("near_max", {"x": 1e306 * rng.uniform(1.0, 1.7, (40, 1))},
                  {"axis": 0, "eps": 0.0}, fd=False),
        ProofCase("w_down_zero_column", {"x": np.hstack([rng.standard_normal((8, 3)),
                                                         np.zeros((8, 1))])},
                  {"axis": 0, "eps": 1e-12}, fd=False),
    ]


def proof_cases() -> list[ProofCase]:
    cases = []
    seed = 0
    for kind, shape, axis in _KINDS:
        for dist in _DISTS:
            seed += 1
            rng = seeded(7600 + seed)
            x = _draw(rng, shape, dist)
            smooth = dist == "away" and x.size <= 64
            cases.append(ProofCase(name=f"{kind}-{dist}-{'x'.join(map(str, shape))}",
                                   primals={"x": x},
                                   hyper={"axis": axis, "eps": _eps(dist, seed)},
                                   fd=smooth, fd_step=1e-3))
    return cases + _special_cases()
