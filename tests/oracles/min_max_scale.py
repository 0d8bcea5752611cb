"""mpmath oracle and proof cases for min_max_scale, written from the spec's equations."""

from __future__ import annotations

from typing import Any

import mpmath
import numpy as np

from . import DPS, ProofCase, mp_array, rows, seeded


def mp_forward(primals: dict[str, np.ndarray | None], hyper: dict[str, Any]
               ) -> dict[str, np.ndarray]:
    x = primals["x"]
    assert x is not None
    axes = tuple(sorted(a % x.ndim for a in hyper["axis"]))
    keep = tuple(i for i in range(x.ndim) if i not in axes)
    stat_shape = tuple(x.shape[i] for i in keep)
    with mpmath.workdps(DPS):
        a, b = mpmath.mpf(hyper["range_min"]), mpmath.mpf(hyper["range_max"])
        xm = mp_array(x)
        out: dict[str, np.ndarray] = {}
        if hyper["training"]:
            lo = np.empty(stat_shape, dtype=object)
            hi = np.empty(stat_shape, dtype=object)
            for idx, vals in rows(xm, axes):
                lo[idx], hi[idx] = min(vals), max(vals)
            out.update(data_min=lo, data_max=hi)
        else:
            lo = mp_array(np.asarray(hyper["data_min"], dtype=np.float64))
            hi = mp_array(np.asarray(hyper["data_max"], dtype=np.float64))
        y = np.empty(x.shape, dtype=object)
        for idx in np.ndindex(*x.shape):
            f = tuple(idx[i] for i in keep)
            r = hi[f] - lo[f]
            if r == 0:
                r = mpmath.mpf(1)
            v = a + (b - a) * (xm[idx] - lo[f]) / r
            if hyper["clip"]:
                v = min(max(v, a), b)
            y[idx] = v
        out["y"] = y
    return out


_LAYOUTS = [
    ("sklearn", (9, 3), [0]),
    ("sklearn-n2", (2, 4), [0]),
    ("rows", (3, 7), [1]),
    ("nchw", (2, 3, 2, 3), [0, 2, 3]),
    ("nhwc", (2, 3, 4, 2), [0, 1, 2]),
    ("spatial", (2, 2, 3, 4), [2, 3]),
    ("neg-axes", (3, 5, 2), [-1, 0]),
    ("all", (4, 5), [0, 1]),
    ("large", (300, 2), [0]),
]
_DISTS = ["normal", "offset_1e3", "offset_1e8", "tiny", "huge", "const_feature"]
_LOC_SCALE = {"normal": (0.0, 1.0), "offset_1e3": (1e3, 1.0), "offset_1e8": (-1e8, 1.0),
              "tiny": (0.0, 1e-150), "huge": (0.0, 1e100), "const_feature": (0.5, 2.0)}
_RANGES = [(0.0, 1.0, False), (-1.0, 1.0, True), (0.0, 255.0, False), (-3.0, 0.5, True)]


def _draw(rng: np.random.Generator, shape: tuple[int, ...], axes: list[int], dist: str
          ) -> np.ndarray:
    loc, scale = _LOC_SCALE[dist]
    x = loc + scale * rng.standard_normal(shape)
    if dist == "const_feature":
        ndim = len(shape)
        red = sorted(a % ndim for a in axes)
        keep = [i for i in range(ndim) if i not in red]
        moved = np.moveaxis(x, keep, list(range(len(keep))))  # a view
        moved[(0,) * len(keep)] = -7.25
    return x


def proof_cases() -> list[ProofCase]:
    cases = []
    for i, (lname, shape, axes) in enumerate(_LAYOUTS):
        for j, dist in enumerate(_DISTS):
            rng = seeded(12000 + 100 * i + j)
            x = _draw(rng, shape, axes, dist)
            a, b, clip = _RANGES[(i + j) % len(_RANGES)]
            hyper: dict[str, Any] = {"axis": axes, "range_min": a, "range_max": b, "clip": clip}
            apply = (i + 2 * j) % 3 == 2
            if apply:
                loc, scale = _LOC_SCALE[dist]
                ndim = len(shape)
                stat = tuple(shape[k] for k in range(ndim)
                             if k not in {q % ndim for q in axes})
                # extremes inside the data's spread, so clip cuts some values and keeps others
                lo = loc + (scale or 1.0) * rng.uniform(-1.0, -0.2, stat)
                hi = loc + (scale or 1.0) * rng.uniform(0.2, 1.0, stat)
                if dist == "const_feature":
                    hi.flat[0] = lo.flat[0]          # a constant feature was fitted
                hyper.update(training=False, data_min=lo, data_max=hi)
            else:
                hyper["training"] = True
            # min/max are kinks: FD only on small smooth fits/applies away from ties and cuts
            smooth = dist == "normal" and x.size <= 64 and not (apply and clip)
            cases.append(ProofCase(
                name=f"{dist}-{lname}-{'x'.join(map(str, shape))}-"
                     f"{'apply' if apply else 'fit'}-[{a:g},{b:g}]-clip={clip}",
                primals={"x": x}, hyper=hyper, fd=smooth, fd_step=1e-4,
                tags=frozenset({dist, lname, "apply" if apply else "fit"})))
    return cases
