"""mpmath oracle and proof cases for sync_batch_norm, written from the spec's equations.

The oracle does what the workers do: each shard's (n_i, mean_i, M2_i) in 50-digit arithmetic,
the pairwise merge of spec/methods/sync_batch_norm.md folded over the workers in order (empty
shards skipped), then normalization and the running update with the global count. The
reference computes through batch_norm on the whole batch instead, so every proof case is also
a proof that the merge equals the statistics of the concatenation.
"""

from __future__ import annotations

import itertools
from typing import Any

import mpmath
import numpy as np

from . import DPS, ProofCase, mp_array, seeded


def _shard_moments(vals: list[Any]) -> tuple[int, Any, Any]:
    n = len(vals)
    if n == 0:
        return 0, mpmath.mpf(0), mpmath.mpf(0)
    mean = mpmath.fsum(vals) / n
    return n, mean, mpmath.fsum((v - mean) ** 2 for v in vals)


def merge(parts: list[tuple[int, Any, Any]]) -> tuple[int, Any, Any]:
    """Chan et al.'s pairwise update, folded left over the workers; empty workers skipped."""
    n, mean, m2 = 0, mpmath.mpf(0), mpmath.mpf(0)
    for nb, mb, m2b in parts:
        if nb == 0:
            continue
        delta = mb - mean
        total = n + nb
        mean = mean + delta * nb / total
        m2 = m2 + m2b + delta**2 * n * nb / total
        n = total
    return n, mean, m2


def _factor(hyper: dict[str, Any]) -> Any:
    f = hyper["batch_stat_weight"]
    if f == "cumulative":
        return 1 / mpmath.mpf(hyper.get("num_batches_tracked", 0) + 1)
    return mpmath.mpf(f)


def mp_forward(primals: dict[str, np.ndarray | None], hyper: dict[str, Any]
               ) -> dict[str, np.ndarray]:
    x = primals["x"]
    assert x is not None
    c_axis = hyper.get("channel_axis", 1) % x.ndim
    channels = x.shape[c_axis]
    sizes = [int(s) for s in hyper["shard_sizes"]]
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    with mpmath.workdps(DPS):
        eps = mpmath.mpf(hyper["eps"])
        xm = mp_array(x)
        w, b = primals.get("weight"), primals.get("bias")
        wm = mp_array(w) if w is not None else None
        bm = mp_array(b) if b is not None else None
        rm, rv = hyper.get("running_mean"), hyper.get("running_var")
        mean = np.empty((channels,), dtype=object)
        var = np.empty((channels,), dtype=object)
        count = 0
        if hyper["training"]:
            for c in range(channels):
                per_channel = np.take(xm, c, axis=c_axis)  # batch axis stays axis 0
                parts = [_shard_moments(list(per_channel[lo:hi].ravel()))
                         for lo, hi in itertools.pairwise(bounds)]
                count, mean[c], m2 = merge(parts)
                var[c] = m2 / count
            center, spread = mean, var
        else:
            assert rm is not None
            assert rv is not None
            center, spread = mp_array(rm), mp_array(rv)
        scale = np.array([1 / mpmath.sqrt(s + eps) for s in spread], dtype=object)
        y = np.empty(x.shape, dtype=object)
        for idx in np.ndindex(*x.shape):
            c = idx[c_axis]
            v = (xm[idx] - center[c]) * scale[c]
            if wm is not None:
                v = v * wm[c]
            if bm is not None:
                v = v + bm[c]
            y[idx] = v
        out = {"y": y}
        if not hyper["training"]:
            return out
        out.update(mean=mean, var=var, rstd=scale)
        if rm is None:
            return out
        f = _factor(hyper)
        unbiased = hyper["running_var_estimator"] == "unbiased"
        stored = [v * count / (count - 1) if unbiased else v for v in var]
        out["running_mean"] = np.array(
            [(1 - f) * r + f * m for r, m in zip(mp_array(rm), mean, strict=True)], dtype=object)
        out["running_var"] = np.array(
            [(1 - f) * r + f * v for r, v in zip(mp_array(rv), stored, strict=True)],
            dtype=object)
        nbt = np.empty((), dtype=object)
        nbt[()] = mpmath.mpf(hyper.get("num_batches_tracked", 0) + 1)
        out["num_batches_tracked"] = nbt
    return out


# (name, shape, channel_axis, shard_sizes): W workers, uneven and empty shards.
_LAYOUTS = [
    ("w2-even", (6, 3), 1, [3, 3]),
    ("w2-uneven", (8, 3), 1, [3, 5]),
    ("w3-uneven", (7, 2, 3), 1, [1, 4, 2]),
    ("w3-empty-middle", (5, 3, 2), 1, [2, 0, 3]),
    ("w3-empty-first", (4, 2, 2, 2), 1, [0, 1, 3]),
    ("w4-uneven", (9, 2, 2), 1, [4, 1, 3, 1]),
    ("w4-two-empty", (5, 3), 1, [0, 5, 0, 0]),
    ("w2-nhwc", (5, 2, 2, 3), -1, [2, 3]),
    ("w3-nlc", (6, 4, 2), -1, [1, 3, 2]),
    ("w1", (4, 2, 3), 1, [4]),
    ("w2-large", (203, 2, 5), 1, [70, 133]),    # n = 1015
    ("w3-one-row-each", (3, 2), 1, [1, 1, 1]),  # n = 3: every worker holds one value
]
_DISTS = ["normal", "offset_1e3", "offset_1e8", "tiny", "huge", "constant", "const_channel"]
_MODES = ["train", "track_biased", "track_unbiased", "cumulative_first", "cumulative_k4", "eval"]
_LOC_SCALE = {"normal": (0.0, 1.0), "offset_1e3": (1e3, 1.0), "offset_1e8": (-1e8, 1.0),
              "tiny": (0.0, 1e-150), "huge": (0.0, 1e100), "constant": (12345.678, 0.0),
              "const_channel": (0.5, 2.0)}


def _draw(rng: np.random.Generator, shape: tuple[int, ...], c_axis: int, dist: str) -> np.ndarray:
    loc, scale = _LOC_SCALE[dist]
    x = np.full(shape, loc) if dist == "constant" else loc + scale * rng.standard_normal(shape)
    if dist == "const_channel":
        np.moveaxis(x, c_axis, 0)[0] = -7.25
    return x


def _mode_hyper(mode: str, rng: np.random.Generator, channels: int, dist: str
                ) -> dict[str, Any]:
    if mode == "train":
        return {"training": True}
    loc, scale = _LOC_SCALE[dist]
    scale = scale or 1.0
    stats = {"running_mean": loc + scale * rng.standard_normal(channels),
             "running_var": scale**2 * rng.uniform(0.5, 2.0, channels)}
    if mode == "eval":
        return {"training": False, **stats}
    return {"training": True, **stats, **{
        "track_biased": {"batch_stat_weight": 0.1, "running_var_estimator": "biased"},
        "track_unbiased": {"batch_stat_weight": 1 - 0.99, "running_var_estimator": "unbiased"},
        "cumulative_first": {"batch_stat_weight": "cumulative", "num_batches_tracked": 0,
                             "running_var_estimator": "unbiased"},
        "cumulative_k4": {"batch_stat_weight": "cumulative", "num_batches_tracked": 4,
                          "running_var_estimator": "biased"},
    }[mode]}


def proof_cases() -> list[ProofCase]:
    cases = []
    for i, (lname, shape, c_axis, sizes) in enumerate(_LAYOUTS):
        channels = shape[c_axis]
        for j, dist in enumerate(_DISTS):
            seed = 7000 + 100 * i + j
            rng = seeded(seed)
            x = _draw(rng, shape, c_axis, dist)
            mode = _MODES[(i + j) % len(_MODES)]
            hyper = _mode_hyper(mode, rng, channels, dist)
            affine = (i + 2 * j) % 3
            weight = rng.normal(1.0, 0.5, channels) if affine >= 1 else None
            bias = rng.normal(0.0, 0.5, channels) if affine == 2 else None
            eps = [1e-5, 0.0, 0.1, 1e-3][(i + j) % 4]
            if eps == 0.0 and dist in ("constant", "const_channel") and hyper["training"]:
                eps = 1e-5  # eps = 0 needs a nonzero spread in every channel
            hyper.update(eps=eps, channel_axis=c_axis, shard_sizes=list(sizes))
            smooth = dist in ("normal", "offset_1e3") and x.size <= 64
            cases.append(ProofCase(
                name=f"{dist}-{lname}-{'x'.join(map(str, shape))}-{mode}-affine={affine}",
                primals={"x": x, "weight": weight, "bias": bias},
                hyper=hyper, fd=smooth, fd_step=1e-3,
                tags=frozenset({mode, dist, lname})))
    cases.append(_local_count_matters())
    return cases


def _local_count_matters() -> ProofCase:
    """Shards [1, 2]: the local counts 1 and 2 against the global 3 in the unbiased estimate.

    A worker that corrected with its own count would divide by 0 (n_i = 1) or use 2/1; the
    global correction is 3/2.
    """
    rng = seeded(7999)
    x = rng.normal(0.0, 1.0, (3, 2))
    hyper = {"training": True, "eps": 1e-5, "channel_axis": 1, "shard_sizes": [1, 2],
             "running_mean": np.zeros(2), "running_var": np.ones(2), "batch_stat_weight": 0.5,
             "running_var_estimator": "unbiased"}
    return ProofCase(name="local_count-w2-3x2-track_unbiased-affine=0",
                     primals={"x": x, "weight": None, "bias": None}, hyper=hyper, fd=True,
                     tags=frozenset({"track_unbiased", "local_count"}))
