"""mpmath oracle and proof cases for batch_renorm, written from the spec's equations.

The running statistics of the training cases are drawn around each case's own batch
statistics, so that the clipping regime a case names is the one it gets, with a margin: the
ratio sigma / sigma_running lies in [2, 3] or [1/3, 1/2] and |mean - running_mean| /
sigma_running in [1, 2] (channels with a spread). ``rmax = 1.5`` then clips r and ``rmax = 4``
does not; ``dmax = 0.5`` clips d and ``dmax = 3`` does not.
"""

from __future__ import annotations

from typing import Any

import mpmath
import numpy as np

from . import DPS, ProofCase, mp_array, rows, seeded


def _clip(v: Any, lo: Any, hi: Any) -> Any:
    return min(max(v, lo), hi)


def _factor(hyper: dict[str, Any]) -> Any:
    f = hyper["batch_stat_weight"]
    if f == "cumulative":
        return 1 / mpmath.mpf(hyper.get("num_batches_tracked", 0) + 1)
    return mpmath.mpf(f)


def _affine(v: Any, c: int, wm: np.ndarray | None, bm: np.ndarray | None) -> Any:
    if wm is not None:
        v = v * wm[c]
    if bm is not None:
        v = v + bm[c]
    return v


def mp_forward(primals: dict[str, np.ndarray | None], hyper: dict[str, Any]
               ) -> dict[str, np.ndarray]:
    x = primals["x"]
    assert x is not None
    c_axis = hyper.get("channel_axis", 1) % x.ndim
    reduce_axes = tuple(i for i in range(x.ndim) if i != c_axis)
    channels = x.shape[c_axis]
    with mpmath.workdps(DPS):
        eps = mpmath.mpf(hyper["eps"])
        xm = mp_array(x)
        w, b = primals.get("weight"), primals.get("bias")
        wm = mp_array(w) if w is not None else None
        bm = mp_array(b) if b is not None else None
        rmm = mp_array(hyper["running_mean"])
        rvm = mp_array(hyper["running_var"])
        sigma_running = [mpmath.sqrt(v + eps) for v in rvm]
        y = np.empty(x.shape, dtype=object)
        if not hyper["training"]:
            for idx in np.ndindex(*x.shape):
                c = idx[c_axis]
                y[idx] = _affine((xm[idx] - rmm[c]) / sigma_running[c], c, wm, bm)
            return {"y": y}

        rmax, dmax = mpmath.mpf(hyper["rmax"]), mpmath.mpf(hyper["dmax"])
        count = x.size // channels
        mean = np.empty((channels,), dtype=object)
        var = np.empty((channels,), dtype=object)
        for (c,), vals in rows(xm, reduce_axes):
            mean[c] = mpmath.fsum(vals) / count
            var[c] = mpmath.fsum((u - mean[c]) ** 2 for u in vals) / count
        sigma = [mpmath.sqrt(v + eps) for v in var]
        r = np.array([_clip(s / sr, 1 / rmax, rmax) for s, sr in zip(sigma, sigma_running,
                                                                     strict=True)], dtype=object)
        d = np.array([_clip((m - rm) / sr, -dmax, dmax)
                      for m, rm, sr in zip(mean, rmm, sigma_running, strict=True)], dtype=object)
        for idx in np.ndindex(*x.shape):
            c = idx[c_axis]
            y[idx] = _affine((xm[idx] - mean[c]) / sigma[c] * r[c] + d[c], c, wm, bm)

        f = _factor(hyper)
        unbiased = hyper["running_var_estimator"] == "unbiased"
        stored = [v * count / (count - 1) if unbiased else v for v in var]
        nbt = np.empty((), dtype=object)
        nbt[()] = mpmath.mpf(hyper.get("num_batches_tracked", 0) + 1)
        return {
            "y": y, "mean": mean, "var": var,
            "rstd": np.array([1 / s for s in sigma], dtype=object), "r": r, "d": d,
            "running_mean": np.array([(1 - f) * o + f * m for o, m in zip(rmm, mean, strict=True)],
                                     dtype=object),
            "running_var": np.array([(1 - f) * o + f * v for o, v in zip(rvm, stored, strict=True)],
                                    dtype=object),
            "num_batches_tracked": nbt,
        }


# (name, shape, channel_axis), as batch_norm's proofs
_LAYOUTS = [
    ("1d", (5, 3), 1),                  # n = 5
    ("1d-n7", (7, 2), 1),               # n = 7
    ("1d-n13", (13, 3), 1),             # n = 13
    ("1d-n1", (1, 3), 1),               # n = 1
    ("2d", (2, 3, 2, 3), 1),            # n = 12
    ("2d-batch1", (1, 2, 3, 4), 1),     # batch of one, spatial > 1
    ("3d", (2, 2, 2, 2, 3), 1),         # n = 24
    ("2d-last", (2, 3, 2, 4), -1),      # NHWC, n = 12
    ("1d-last", (2, 7, 3), -1),         # NLC, n = 14
    ("large", (1031, 2), 1),            # n = 1031
]
_DISTS = ["normal", "offset_1e3", "offset_1e8", "tiny", "huge", "constant", "const_channel"]
_LOC_SCALE = {"normal": (0.0, 1.0), "offset_1e3": (1e3, 1.0), "offset_1e8": (-1e8, 1.0),
              "tiny": (0.0, 1e-150), "huge": (0.0, 1e100), "constant": (12345.678, 0.0),
              "const_channel": (0.5, 2.0)}
# regime -> (rmax, dmax); "eval" has none
REGIMES: dict[str, tuple[float, float] | None] = {
    "unclipped": (4.0, 3.0),
    "r_clipped": (1.5, 3.0),
    "d_clipped": (4.0, 0.5),
    "both_clipped": (1.5, 0.5),
    "identity": (1.0, 0.0),          # r = 1, d = 0: batch norm
    "no_bounds": (float("inf"), float("inf")),
    "eval": None,
}
FROZEN_EXACT = frozenset({"both_clipped", "identity", "eval"})
"""Regimes where r and d are locally constant, so plain finite differences of forward are
the spec's derivatives (elsewhere the spec's derivatives hold r and d fixed: see
tests/test_reference_batch_renorm.py)."""
_UPDATES: list[dict[str, Any]] = [
    {"batch_stat_weight": 0.1, "running_var_estimator": "unbiased"},
    {"batch_stat_weight": 0.01, "running_var_estimator": "biased"},
    {"batch_stat_weight": "cumulative", "num_batches_tracked": 0,
     "running_var_estimator": "biased"},
    {"batch_stat_weight": "cumulative", "num_batches_tracked": 3,
     "running_var_estimator": "unbiased"},
    {"batch_stat_weight": 0.0, "running_var_estimator": "unbiased"},
    {"batch_stat_weight": 1.0, "running_var_estimator": "biased"},
]


def _draw(rng: np.random.Generator, shape: tuple[int, ...], c_axis: int, dist: str) -> np.ndarray:
    loc, scale = _LOC_SCALE[dist]
    x = loc + scale * rng.standard_normal(shape)
    if dist == "constant":
        x = np.full(shape, loc)
    if dist == "const_channel":
        np.moveaxis(x, c_axis, 0)[0] = -7.25  # a view: writes land in x
    return x


def running_around(rng: np.random.Generator, x: np.ndarray, c_axis: int, eps: float,
                   scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Running statistics with sigma / sigma_running in [2, 3] or [1/3, 1/2] and
    |mean - running_mean| / sigma_running in [1, 2] for every channel with a spread."""
    axes = tuple(i for i in range(x.ndim) if i != c_axis % x.ndim)
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    channels = mean.size
    spread = np.where(var > 0, var, scale**2 or 1.0)
    ratio = rng.uniform(2.0, 3.0, channels) ** np.where(rng.random(channels) < 0.5, 1.0, -1.0)
    # (var + eps) / (running_var + eps) = ratio^2, solved for running_var (>= 0 by construction
    # wherever var dominates eps; clamped at 0 otherwise)
    running_var = np.maximum((spread + eps) / ratio**2 - eps, 0.0)
    sign = np.where(rng.random(channels) < 0.5, 1.0, -1.0)
    offset = sign * rng.uniform(1.0, 2.0, channels) * np.sqrt(running_var + eps)
    return mean - offset, running_var


def proof_cases() -> list[ProofCase]:
    cases = []
    regimes = list(REGIMES)
    for i, (lname, shape, c_axis) in enumerate(_LAYOUTS):
        channels = shape[c_axis]
        n = int(np.prod(shape)) // channels
        for j, dist in enumerate(_DISTS):
            seed = 7000 + 100 * i + j
            rng = seeded(seed)
            x = _draw(rng, shape, c_axis, dist)
            regime = regimes[(i + j) % len(regimes)]
            eps = [1e-5, 0.0, 0.1, 1e-3][(i + 2 * j) % 4]
            degenerate = dist in ("constant", "const_channel") or n == 1
            if eps == 0.0 and degenerate:
                eps = 1e-5  # sigma = 0 would make z = 0 * inf
            loc, scale = _LOC_SCALE[dist]
            hyper: dict[str, Any] = {"training": regime != "eval", "eps": eps,
                                     "channel_axis": c_axis}
            if regime == "eval":
                hyper["running_mean"] = loc + (scale or 1.0) * rng.standard_normal(channels)
                hyper["running_var"] = (scale or 1.0) ** 2 * rng.uniform(0.5, 2.0, channels)
            else:
                hyper["running_mean"], hyper["running_var"] = running_around(
                    rng, x, c_axis, eps, scale)
                bounds = REGIMES[regime]
                assert bounds is not None
                hyper["rmax"], hyper["dmax"] = bounds
                update = dict(_UPDATES[(i + j) % len(_UPDATES)])
                if n == 1:
                    update["running_var_estimator"] = "biased"  # unbiased is undefined at n = 1
                hyper.update(update)
            affine = (i + 2 * j) % 3
            weight = rng.normal(1.0, 0.5, channels) if affine >= 1 else None
            bias = rng.normal(0.0, 0.5, channels) if affine == 2 else None
            smooth = dist in ("normal", "offset_1e3") and x.size <= 64
            cases.append(ProofCase(
                name=f"{dist}-{lname}-{'x'.join(map(str, shape))}-{regime}-affine={affine}",
                primals={"x": x, "weight": weight, "bias": bias}, hyper=hyper,
                fd=smooth and regime in FROZEN_EXACT, fd_step=1e-3,
                tags=frozenset({regime, dist, lname})))
    return cases
