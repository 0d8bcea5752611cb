"""mpmath oracle and proof cases for group_norm, written from the spec's equations."""

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
    groups = hyper["groups"]
    per_group = x.shape[ch] // groups
    with mpmath.workdps(DPS):
        eps = mpmath.mpf(hyper["eps"])
        xm = mp_array(x)
        w = _maybe_mp(primals.get("weight"))
        b = _maybe_mp(primals.get("bias"))
        # reduction set of element idx: its sample and the contiguous group of its channel
        members: dict[tuple[int, int], list[Any]] = defaultdict(list)
        for idx in np.ndindex(*x.shape):
            members[(idx[0], idx[ch] // per_group)].append(xm[idx])
        stat_shape = (x.shape[0], groups)
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
            g = c // per_group
            out = (xm[idx] - mean[n, g]) * rstd[n, g]
            if w is not None:
                out = out * w[c]
            if b is not None:
                out = out + b[c]
            y[idx] = out
    return {"y": y, "mean": mean, "var": var, "rstd": rstd}


# (shape, channel_axis, groups): C = 6 with every divisor, no spatial axes, batch of 1,
# reductions of 1, 13 and > 1000 values, channels-last in 1-d and 2-d.
_CONFIGS = [((2, 6, 5), 1, 1), ((2, 6, 5), 1, 2), ((2, 6, 5), 1, 3), ((2, 6, 5), 1, 6),
            ((3, 6), 1, 2), ((1, 4, 7), 1, 2), ((2, 4, 1), 1, 4), ((2, 13), 1, 1),
            ((2, 7, 6), -1, 3), ((2, 3, 3, 6), -1, 2), ((1, 4, 17, 31), 1, 2),
            ((2, 2, 6, 2), 1, 1), ((2, 4, 6), -1, 3)]
_EPS = [1e-5, 1e-12, 0.1]


def proof_cases() -> list[ProofCase]:
    cases = []
    seed = 0
    for shape, channel_axis, groups in _CONFIGS:
        channels = shape[channel_axis]
        m = int(np.prod(shape)) // (shape[0] * groups)
        for dist in DISTS:
            seed += 1
            rng = seeded(4000 + seed)
            x = draw(rng, shape, dist)
            affine = ("none", "weight", "bias", "both")[seed % 4]
            weight = rng.normal(1.0, 0.5, channels) if affine in ("weight", "both") else None
            bias = rng.normal(0.0, 0.5, channels) if affine in ("bias", "both") else None
            eps = _EPS[seed % 3]
            smooth = dist in ("normal", "offset_1e3", "uniform_pos") and x.size <= 64 and m > 1
            cases.append(ProofCase(
                name=(f"{dist}-{'x'.join(map(str, shape))}-channel_axis={channel_axis}"
                      f"-groups={groups}-affine={affine}"),
                primals={"x": x, "weight": weight, "bias": bias},
                hyper={"groups": groups, "channel_axis": channel_axis, "eps": eps},
                fd=smooth, fd_step=1e-3))
    return cases
