"""mpmath oracle and proof cases for instance_norm, written from the spec's equations."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import mpmath
import numpy as np

from . import DPS, ProofCase, mp_array, seeded
from .layer_norm import _DISTS as DISTS
from .layer_norm import _draw as draw


def _maybe_mp(a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None else mp_array(a)


def mp_forward(primals: dict[str, np.ndarray | None], hyper: dict[str, Any]
               ) -> dict[str, np.ndarray]:
    x = primals["x"]
    assert x is not None
    ch = hyper.get("channel_axis", 1) % x.ndim
    with mpmath.workdps(DPS):
        eps = mpmath.mpf(hyper["eps"])
        xm = mp_array(x)
        w = _maybe_mp(primals.get("weight"))
        b = _maybe_mp(primals.get("bias"))
        # reduction set of element idx: its (sample, channel)
        members: dict[tuple[int, int], list[Any]] = defaultdict(list)
        for idx in np.ndindex(*x.shape):
            members[(idx[0], idx[ch])].append(xm[idx])
        stat_shape = (x.shape[0], x.shape[ch])
        mean = np.empty(stat_shape, dtype=object)
        var = np.empty(stat_shape, dtype=object)
        rstd = np.empty(stat_shape, dtype=object)
        for key, vals in members.items():
            mu = mpmath.fsum(vals) / len(vals)
            v = mpmath.fsum((u - mu) ** 2 for u in vals) / len(vals)
            mean[key], var[key], rstd[key] = mu, v, 1 / mpmath.sqrt(v + eps)
        y = np.empty(x.shape, dtype=object)
        for idx in np.ndindex(*x.shape):
            n, c = idx[0], idx[ch]
            out = (xm[idx] - mean[n, c]) * rstd[n, c]
            if w is not None:
                out = out * w[c]
            if b is not None:
                out = out + b[c]
            y[idx] = out
    return {"y": y, "mean": mean, "var": var, "rstd": rstd}


# (shape, channel_axis): batch of 1, spatial size 1, 7, 13 and > 1000, channels-last, 1-3 d.
_SHAPES = [((2, 3, 7), 1), ((2, 2, 13), 1), ((1, 3, 5), 1), ((2, 3, 1), 1), ((2, 5, 3), -1),
           ((2, 4, 4, 3), -1), ((1, 2, 1031), 1), ((2, 2, 3, 3), 1), ((1, 2, 2, 2, 3), 1),
           ((3, 1, 6), 1)]
_EPS = [1e-5, 1e-12, 0.1]


def proof_cases() -> list[ProofCase]:
    cases = []
    seed = 0
    for shape, channel_axis in _SHAPES:
        channels = shape[channel_axis]
        spatial = int(np.prod(shape)) // (shape[0] * channels)
        for dist in DISTS:
            seed += 1
            rng = seeded(3000 + seed)
            x = draw(rng, shape, dist)
            affine = ("none", "weight", "bias", "both")[seed % 4]
            weight = rng.normal(1.0, 0.5, channels) if affine in ("weight", "both") else None
            bias = rng.normal(0.0, 0.5, channels) if affine in ("bias", "both") else None
            eps = _EPS[seed % 3]
            smooth = (dist in ("normal", "offset_1e3", "uniform_pos") and x.size <= 64
                      and spatial > 1)
            cases.append(ProofCase(
                name=(f"{dist}-{'x'.join(map(str, shape))}-channel_axis={channel_axis}"
                      f"-affine={affine}"),
                primals={"x": x, "weight": weight, "bias": bias},
                hyper={"channel_axis": channel_axis, "eps": eps},
                fd=smooth, fd_step=1e-3))
    return cases
