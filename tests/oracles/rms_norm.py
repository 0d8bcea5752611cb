"""mpmath oracle and proof cases for rms_norm, written from the spec's equations."""

from __future__ import annotations

from typing import Any

import mpmath
import numpy as np

from . import DPS, ProofCase, mp_array, rows, seeded
from .layer_norm import _DISTS as DISTS
from .layer_norm import _draw as draw


def _maybe_mp(a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None else mp_array(a)


def mp_forward(primals: dict[str, np.ndarray | None], hyper: dict[str, Any]
               ) -> dict[str, np.ndarray]:
    x = primals["x"]
    assert x is not None
    axis = hyper["axis"] % x.ndim
    reduce_axes = tuple(range(axis, x.ndim))
    with mpmath.workdps(DPS):
        eps = mpmath.mpf(hyper["eps"])
        xm = mp_array(x)
        w = _maybe_mp(primals.get("weight"))
        b = _maybe_mp(primals.get("bias"))
        y = np.empty(x.shape, dtype=object)
        mean_square = np.empty(x.shape[:axis], dtype=object)
        rrms = np.empty(x.shape[:axis], dtype=object)
        for idx, vals in rows(xm, reduce_axes):
            ms = mpmath.fsum(u * u for u in vals) / len(vals)
            r = 1 / mpmath.sqrt(ms + eps)
            mean_square[idx], rrms[idx] = ms, r
            for tail in np.ndindex(*x.shape[axis:]):
                v = xm[idx + tail] * r
                v = v if w is None else v * w[tail]
                # the bias is added after the scale: y = weight * xhat + bias
                y[idx + tail] = v if b is None else v + b[tail]
    return {"y": y, "mean_square": mean_square, "rrms": rrms}


# (shape, axis): batch of 1, size-1, 7, 13 and > 1000 reductions, several trailing axes.
_SHAPES = [((3, 7), -1), ((2, 13), -1), ((1, 5), -1), ((4, 1), -1), ((2, 3, 4), 1),
           ((2, 3, 4), -1), ((1, 1031), -1), ((6,), 0), ((2, 2, 3, 3), 2), ((5, 2), 0)]
_EPS = [1e-5, 1e-12, 0.1, 0.0]
_BIAS_SHAPES = [((3, 7), -1), ((2, 3, 4), 1), ((1, 5), -1), ((4, 1), -1), ((2, 13), -1),
                ((6,), 0), ((2, 2, 3, 3), 2), ((3, 7), -1)]


def proof_cases() -> list[ProofCase]:
    cases = []
    seed = 0
    for shape, axis in _SHAPES:
        for dist in DISTS:
            seed += 1
            rng = seeded(2000 + seed)
            x = draw(rng, shape, dist)
            pshape = shape[axis % len(shape):]
            affine = seed % 2
            weight = rng.normal(1.0, 0.5, pshape) if affine else None
            eps = _EPS[seed % 4]
            n = int(np.prod(pshape))
            # n = 1 with small eps is nearly sign(x): its derivatives sit at the roundoff floor.
            smooth = dist in ("normal", "uniform_pos") and x.size <= 64 and n > 1
            cases.append(ProofCase(
                name=f"{dist}-{'x'.join(map(str, shape))}-axis={axis}-weight={affine}-eps={eps:g}",
                primals={"x": x, "weight": weight},
                hyper={"axis": axis, "eps": eps},
                fd=smooth, fd_step=1e-3))
    # The optional bias (y = weight * xhat + bias), with and without a weight; drawn after the
    # cases above so that their seeds and values are unchanged.
    for k, ((shape, axis), dist) in enumerate(zip(_BIAS_SHAPES, DISTS * 3, strict=False)):
        rng = seeded(2500 + k)
        x = draw(rng, shape, dist)
        pshape = shape[axis % len(shape):]
        weight = rng.normal(1.0, 0.5, pshape) if k % 2 == 0 else None
        bias = rng.normal(0.0, 1.0, pshape)
        eps = _EPS[k % 4]
        n = int(np.prod(pshape))
        smooth = dist in ("normal", "uniform_pos") and x.size <= 64 and n > 1
        cases.append(ProofCase(
            name=f"bias-{dist}-{'x'.join(map(str, shape))}-axis={axis}"
                 f"-weight={int(weight is not None)}-eps={eps:g}",
            primals={"x": x, "weight": weight, "bias": bias},
            hyper={"axis": axis, "eps": eps},
            fd=smooth, fd_step=1e-3))
    return cases
