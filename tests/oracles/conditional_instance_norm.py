"""mpmath oracle and proof cases for conditional_instance_norm, from the spec's equations."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import mpmath
import numpy as np

from . import DPS, ProofCase, mp_array, seeded
from .layer_norm import _DISTS as DISTS
from .layer_norm import _draw as draw


def mp_forward(primals: dict[str, np.ndarray | None], hyper: dict[str, Any]
               ) -> dict[str, np.ndarray]:
    x, w, b = primals["x"], primals["weight"], primals["bias"]
    assert x is not None
    assert w is not None
    assert b is not None
    style = np.asarray(hyper["style"])
    ch = hyper.get("channel_axis", 1) % x.ndim
    with mpmath.workdps(DPS):
        eps = mpmath.mpf(hyper["eps"])
        xm, wm, bm = mp_array(x), mp_array(w), mp_array(b)
        members: dict[tuple[int, int], list[Any]] = defaultdict(list)
        for idx in np.ndindex(*x.shape):
            members[(idx[0], idx[ch])].append(xm[idx])
        shape = (x.shape[0], x.shape[ch])
        mean = np.empty(shape, dtype=object)
        var = np.empty(shape, dtype=object)
        rstd = np.empty(shape, dtype=object)
        for key, vals in members.items():
            mu = mpmath.fsum(vals) / len(vals)
            v = mpmath.fsum((u - mu) ** 2 for u in vals) / len(vals)
            mean[key], var[key], rstd[key] = mu, v, 1 / mpmath.sqrt(v + eps)
        y = np.empty(x.shape, dtype=object)
        for idx in np.ndindex(*x.shape):
            k, c = idx[0], idx[ch]
            s = int(style[k])
            y[idx] = (xm[idx] - mean[k, c]) * rstd[k, c] * wm[s, c] + bm[s, c]
    return {"y": y, "mean": mean, "var": var, "rstd": rstd}


# (shape, channel_axis, S): repeated styles, unused rows, one style for the whole batch,
# channels-last, 1-3 spatial axes, a long reduction
_SHAPES = [((3, 2, 7), 1, 5), ((4, 3, 5), 1, 3), ((2, 2, 13), 1, 1), ((3, 4, 3, 2), -1, 6),
           ((2, 3, 2, 2, 2), 1, 4), ((1, 2, 1031), 1, 3), ((4, 6, 3), 2, 7), ((3, 2, 1), 1, 2)]
_EPS = [1e-5, 0.1, 1e-12]


def proof_cases() -> list[ProofCase]:
    cases = []
    seed = 0
    for shape, channel_axis, styles in _SHAPES:
        channels = shape[channel_axis]
        spatial = int(np.prod(shape)) // (shape[0] * channels)
        for dist in DISTS:
            seed += 1
            rng = seeded(12000 + seed)
            x = draw(rng, shape, dist)
            style = rng.integers(0, styles, shape[0]).astype(np.int64)
            weight = rng.normal(1.0, 0.5, (styles, channels))
            bias = rng.normal(0.0, 0.5, (styles, channels))
            smooth = (dist in ("normal", "offset_1e3", "uniform_pos") and x.size <= 64
                      and spatial > 2)
            cases.append(ProofCase(
                name=(f"{dist}-{'x'.join(map(str, shape))}-channel_axis={channel_axis}"
                      f"-S={styles}-style={'.'.join(map(str, style.tolist()))}"),
                primals={"x": x, "weight": weight, "bias": bias},
                hyper={"channel_axis": channel_axis, "eps": _EPS[seed % 3], "style": style},
                fd=smooth, fd_step=1e-3))
    return cases
