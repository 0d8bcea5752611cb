"""mpmath oracle and proof cases for layer_norm, written from the spec's equations."""

from __future__ import annotations

from typing import Any

import mpmath
import numpy as np

from . import DPS, ProofCase, mp_array, rows, seeded


def mp_forward(primals: dict[str, np.ndarray | None], hyper: dict[str, Any]
               ) -> dict[str, np.ndarray]:
    x = primals["x"]
    assert x is not None
    axis = hyper["axis"] % x.ndim
    reduce_axes = tuple(range(axis, x.ndim))
    with mpmath.workdps(DPS):
        eps = mpmath.mpf(hyper["eps"])
        xm = mp_array(x)
        w = mp_array(primals["weight"]) if primals.get("weight") is not None else None
        b = mp_array(primals["bias"]) if primals.get("bias") is not None else None
        y = np.empty(x.shape, dtype=object)
        stat_shape = x.shape[:axis]
        mean = np.empty(stat_shape, dtype=object)
        var = np.empty(stat_shape, dtype=object)
        rstd = np.empty(stat_shape, dtype=object)
        for idx, vals in rows(xm, reduce_axes):
            n = len(vals)
            mu = mpmath.fsum(vals) / n
            v = mpmath.fsum((u - mu) ** 2 for u in vals) / n
            r = 1 / mpmath.sqrt(v + eps)
            mean[idx], var[idx], rstd[idx] = mu, v, r
            for tail in np.ndindex(*x.shape[axis:]):
                z = (xm[idx + tail] - mu) * r
                if w is not None:
                    z = z * w[tail]
                if b is not None:
                    z = z + b[tail]
                y[idx + tail] = z
    return {"y": y, "mean": mean, "var": var, "rstd": rstd}


_SHAPES = [((3, 7), -1), ((2, 13), -1), ((1, 5), -1), ((4, 1), -1), ((2, 3, 4), 1),
           ((2, 3, 4), -1), ((1, 1031), -1), ((6,), 0), ((2, 2, 3, 3), 2), ((5, 2), 0)]
_DISTS = ["normal", "offset_1e3", "offset_1e8", "tiny", "huge", "constant", "uniform_pos"]


def _draw(rng: np.random.Generator, shape: tuple[int, ...], dist: str) -> np.ndarray:
    base = rng.standard_normal(shape)
    if dist == "offset_1e3":
        return 1e3 + base
    if dist == "offset_1e8":
        return -1e8 + base
    if dist == "tiny":
        return 1e-150 * base
    if dist == "huge":
        return 1e100 * base
    if dist == "constant":
        return np.full(shape, 12345.678)
    if dist == "uniform_pos":
        return rng.uniform(0.5, 2.0, shape)
    return base


def proof_cases() -> list[ProofCase]:
    cases = []
    seed = 0
    for shape, axis in _SHAPES:
        for dist in _DISTS:
            seed += 1
            rng = seeded(1000 + seed)
            x = _draw(rng, shape, dist)
            pshape = shape[axis % len(shape):]
            affine = seed % 3
            weight = rng.normal(1.0, 0.5, pshape) if affine >= 1 else None
            bias = rng.normal(0.0, 0.5, pshape) if affine == 2 else None
            eps = [1e-5, 1e-12, 0.1][seed % 3]
            smooth = dist in ("normal", "offset_1e3", "uniform_pos") and x.size <= 64
            cases.append(ProofCase(
                name=f"{dist}-{'x'.join(map(str, shape))}-axis={axis}-affine={affine}",
                primals={"x": x, "weight": weight, "bias": bias},
                hyper={"axis": axis, "eps": eps},
                fd=smooth, fd_step=1e-3))
    return cases
