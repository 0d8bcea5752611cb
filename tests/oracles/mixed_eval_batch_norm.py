"""mpmath oracle and proof cases for mixed_eval_batch_norm, written from the spec's equations.

The oracle forms the variance the way the seed material states it, the mixture of the second
moments minus the squared mixed mean; at 50 digits its cancellation is harmless. The reference
computes the law-of-total-variance form, so every forward proof also proves the two equal.
"""

from __future__ import annotations

from typing import Any

import mpmath
import numpy as np

from . import DPS, ProofCase, mp_array, rows, seeded


def mp_forward(primals: dict[str, np.ndarray | None], hyper: dict[str, Any]
               ) -> dict[str, np.ndarray]:
    x = primals["x"]
    assert x is not None
    c_axis = hyper.get("channel_axis", 1) % x.ndim
    reduce_axes = tuple(i for i in range(x.ndim) if i != c_axis)
    channels = x.shape[c_axis]
    count = x.size // channels
    with mpmath.workdps(DPS):
        eps = mpmath.mpf(hyper["eps"])
        a = mpmath.mpf(hyper["alpha"])
        xm = mp_array(x)
        w, b = primals.get("weight"), primals.get("bias")
        wm = mp_array(w) if w is not None else None
        bm = mp_array(b) if b is not None else None
        rm = mp_array(np.asarray(hyper["running_mean"], dtype=np.float64))
        rv = mp_array(np.asarray(hyper["running_var"], dtype=np.float64))
        batch_mean = np.empty((channels,), dtype=object)
        batch_var = np.empty((channels,), dtype=object)
        mean = np.empty((channels,), dtype=object)
        var = np.empty((channels,), dtype=object)
        rstd = np.empty((channels,), dtype=object)
        for (c,), vals in rows(xm, reduce_axes):
            batch_mean[c] = mpmath.fsum(vals) / count
            second = mpmath.fsum(u * u for u in vals) / count          # E[x^2] of the batch
            batch_var[c] = mpmath.fsum((u - batch_mean[c]) ** 2 for u in vals) / count
            mean[c] = a * batch_mean[c] + (1 - a) * rm[c]
            running_second = rv[c] + rm[c] ** 2
            var[c] = a * second + (1 - a) * running_second - mean[c] ** 2
            rstd[c] = 1 / mpmath.sqrt(var[c] + eps)
        y = np.empty(x.shape, dtype=object)
        for idx in np.ndindex(*x.shape):
            c = idx[c_axis]
            v = (xm[idx] - mean[c]) * rstd[c]
            if wm is not None:
                v = v * wm[c]
            if bm is not None:
                v = v + bm[c]
            y[idx] = v
    return {"y": y, "mean": mean, "var": var, "rstd": rstd, "batch_mean": batch_mean,
            "batch_var": batch_var}


# (name, shape, channel_axis)
_LAYOUTS = [
    ("1d", (5, 3), 1),
    ("1d-n7", (7, 2), 1),
    ("1d-n13", (13, 3), 1),
    ("1d-n1", (1, 3), 1),
    ("2d", (2, 3, 2, 3), 1),
    ("2d-batch1", (1, 2, 3, 4), 1),
    ("3d", (2, 2, 2, 2, 3), 1),
    ("2d-last", (2, 3, 2, 4), -1),
    ("1d-last", (2, 7, 3), -1),
    ("large", (1031, 2), 1),
]
_DISTS = ["normal", "offset_1e3", "offset_1e8", "tiny", "huge", "constant", "shifted_running"]
_ALPHAS = [0.0, 1.0, 0.5, 0.1, 0.9, 1 / 3, 0.999]
_LOC_SCALE = {"normal": (0.0, 1.0), "offset_1e3": (1e3, 1.0), "offset_1e8": (-1e8, 1.0),
              "tiny": (0.0, 1e-150), "huge": (0.0, 1e100), "constant": (12345.678, 0.0),
              "shifted_running": (0.5, 2.0)}


def _running(rng: np.random.Generator, dist: str, channels: int
             ) -> tuple[np.ndarray, np.ndarray]:
    loc, scale = _LOC_SCALE[dist]
    scale = scale or 1.0
    mean = loc + scale * rng.standard_normal(channels)
    if dist == "shifted_running":
        # running statistics far from the batch's: the gap term alpha(1-alpha)(mb-rm)^2 dominates
        mean = mean + 40.0 * scale
    return mean, scale**2 * rng.uniform(0.5, 2.0, channels)


def proof_cases() -> list[ProofCase]:
    cases = []
    for i, (lname, shape, c_axis) in enumerate(_LAYOUTS):
        channels = shape[c_axis]
        for j, dist in enumerate(_DISTS):
            rng = seeded(7000 + 100 * i + j)
            loc, scale = _LOC_SCALE[dist]
            x = np.full(shape, loc) if dist == "constant" else (
                loc + scale * rng.standard_normal(shape))
            rm, rv = _running(rng, dist, channels)
            alpha = _ALPHAS[(i + j) % len(_ALPHAS)]
            affine = (i + 2 * j) % 3
            weight = rng.normal(1.0, 0.5, channels) if affine >= 1 else None
            bias = rng.normal(0.0, 0.5, channels) if affine == 2 else None
            eps = [1e-5, 0.0, 0.1, 1e-3][(i + j) % 4]
            if eps == 0.0 and alpha == 1.0 and (dist == "constant" or x.size == channels):
                eps = 1e-5  # a zero batch variance with eps = 0 divides by zero
            hyper = {"running_mean": rm, "running_var": rv, "alpha": alpha, "eps": eps,
                     "channel_axis": c_axis}
            smooth = dist in ("normal", "offset_1e3", "shifted_running") and x.size <= 64
            cases.append(ProofCase(
                name=f"{dist}-{lname}-{'x'.join(map(str, shape))}-alpha={alpha:.4g}"
                     f"-affine={affine}",
                primals={"x": x, "weight": weight, "bias": bias}, hyper=hyper, fd=smooth,
                # the gap of 80 spreads y's curvature over a wider range than the data's
                fd_step=1e-2 if dist == "shifted_running" else 1e-3, tags=frozenset({dist, lname})))
    return cases
