"""mpmath oracle and proof cases for sequence_batch_norm, written from the spec's equations.

The mask and the running statistics live in ``ProofCase.hyper``, the way the reference takes
them (keyword arguments). Padded positions of ``x`` hold values that must never be read: NaN,
+-Inf or 1e300 in the ``pad_*`` distributions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import mpmath
import numpy as np

from . import DPS, ProofCase, seeded

NAN = mpmath.mpf("nan")


def _factor(hyper: dict[str, Any]) -> Any:
    f = hyper["batch_stat_weight"]
    if f == "cumulative":
        return 1 / mpmath.mpf(hyper.get("num_batches_tracked", 0) + 1)
    return mpmath.mpf(f)


def _index(c_axis: int, n: int, t: int, c: int) -> tuple[int, int, int]:
    """Where element (batch n, time t, channel c) sits in x."""
    return (n, t, c) if c_axis == 2 else (n, c, t)


def _stat_index(frame: bool, c_axis: int, t: int, c: int) -> tuple[int, ...]:
    if not frame:
        return (c,)
    return (t, c) if c_axis == 2 else (c, t)


def _rows(mask: np.ndarray, frame: bool) -> Iterator[tuple[int, list[tuple[int, int]]]]:
    """(time step or -1, the valid (n, t) pairs sharing one statistic)."""
    n_, t_ = mask.shape
    if not frame:
        yield -1, [(n, t) for n in range(n_) for t in range(t_) if mask[n, t]]
        return
    for t in range(t_):
        yield t, [(n, t) for n in range(n_) if mask[n, t]]


def _mp(v: float) -> Any:
    return mpmath.mpf(float(v))


def mp_forward(primals: dict[str, np.ndarray | None], hyper: dict[str, Any]
               ) -> dict[str, np.ndarray]:
    x = primals["x"]
    assert x is not None
    mask = np.asarray(hyper["mask"], dtype=bool)
    c_axis = hyper.get("channel_axis", -1) % 3
    frame = hyper["statistics"] == "frame"
    channels = x.shape[c_axis]
    w, b = primals.get("weight"), primals.get("bias")
    stat_shape = x.shape[1:] if frame else (channels,)
    with mpmath.workdps(DPS):
        eps = _mp(hyper["eps"])
        y = np.empty(x.shape, dtype=object)
        y[...] = mpmath.mpf(0)  # padded positions
        stats = {k: np.empty(stat_shape, dtype=object) for k in ("mean", "var", "rstd")}
        for arr in stats.values():
            arr[...] = NAN
        rm, rv = hyper.get("running_mean"), hyper.get("running_var")
        new_rm = None if rm is None else np.vectorize(_mp, otypes=[object])(rm)
        new_rv = None if rv is None else np.vectorize(_mp, otypes=[object])(rv)
        training = hyper["training"]
        tracking = training and rm is not None
        for t, pairs in _rows(mask, frame):
            k = len(pairs)
            for c in range(channels):
                s = _stat_index(frame, c_axis, t, c)
                vals = [_mp(x[_index(c_axis, n, tt, c)]) for n, tt in pairs]
                if training:
                    if k == 0:
                        continue  # no statistic; nothing to normalize or update
                    mean = mpmath.fsum(vals) / k
                    var = mpmath.fsum((v - mean) ** 2 for v in vals) / k
                    stats["mean"][s], stats["var"][s] = mean, var
                else:
                    assert rm is not None
                    assert rv is not None
                    mean, var = _mp(rm[s]), _mp(rv[s])
                scale = 1 / mpmath.sqrt(var + eps)
                if training:
                    stats["rstd"][s] = scale
                for (n, tt), v in zip(pairs, vals, strict=True):
                    out = (v - mean) * scale
                    if w is not None:
                        out = out * _mp(w[c])
                    if b is not None:
                        out = out + _mp(b[c])
                    y[_index(c_axis, n, tt, c)] = out
                if tracking:
                    assert new_rm is not None
                    assert new_rv is not None
                    f = _factor(hyper)
                    stored = var * k / (k - 1) if hyper["running_var_estimator"] == "unbiased" \
                        else var
                    new_rm[s] = (1 - f) * new_rm[s] + f * mean
                    new_rv[s] = (1 - f) * new_rv[s] + f * stored
        if not training:
            return {"y": y}
        out_all: dict[str, np.ndarray] = {"y": y, **stats}
        if tracking:
            assert new_rm is not None
            assert new_rv is not None
            out_all["running_mean"], out_all["running_var"] = new_rm, new_rv
            count = np.empty((), dtype=object)
            count[()] = mpmath.mpf(hyper.get("num_batches_tracked", 0) + 1)
            out_all["num_batches_tracked"] = count
    return out_all


# (name, N, T, C, channel_axis, lengths): the mask is mask[n, t] = t < lengths[n]
_LAYOUTS: list[tuple[str, int, int, int, int, list[int]]] = [
    ("uneven-empty_seq", 4, 5, 3, -1, [5, 3, 0, 2]),
    ("full", 3, 4, 2, -1, [4, 4, 4]),
    ("ncl-uneven", 5, 6, 2, 1, [6, 1, 3, 5, 2]),
    ("single_tail", 2, 7, 3, -1, [7, 1]),          # frames 1..6 hold one valid element
    ("batch1", 1, 13, 2, -1, [13]),                # frame-wise: one value per statistic
    ("empty_frames", 3, 8, 2, 1, [5, 2, 3]),       # frames 5..7 hold no valid element
    ("sparse", 6, 3, 4, -1, [3, 0, 0, 2, 1, 3]),
    ("large", 37, 30, 2, -1, []),                  # lengths drawn: sequence k over 500
]
_DISTS = ["normal", "offset_1e3", "offset_1e8", "tiny", "huge", "constant", "pad_nan",
          "pad_huge"]
_MODES = ["train", "track_biased", "track_unbiased", "cumulative_first", "cumulative_k4", "eval"]
_LOC_SCALE = {"normal": (0.0, 1.0), "offset_1e3": (1e3, 1.0), "offset_1e8": (-1e8, 1.0),
              "tiny": (0.0, 1e-150), "huge": (0.0, 1e100), "constant": (12345.678, 0.0),
              "pad_nan": (0.5, 2.0), "pad_huge": (-3.0, 0.5)}


def mask_of(lengths: list[int], steps: int) -> np.ndarray:
    return np.arange(steps)[None, :] < np.asarray(lengths)[:, None]


def _draw(rng: np.random.Generator, shape: tuple[int, ...], c_axis: int, mask: np.ndarray,
          dist: str) -> np.ndarray:
    loc, scale = _LOC_SCALE[dist]
    x = loc + scale * rng.standard_normal(shape)
    if dist == "constant":
        x = np.full(shape, loc)
    padded = ~mask
    if c_axis % 3 == 1:
        padded_x = np.broadcast_to(padded[:, None, :], shape)
    else:
        padded_x = np.broadcast_to(padded[:, :, None], shape)
    if dist == "pad_nan":
        junk = rng.choice(np.array([np.nan, np.inf, -np.inf]), size=shape)
        x = np.where(padded_x, junk, x)
    elif dist == "pad_huge":
        x = np.where(padded_x, 1e300 * np.sign(rng.standard_normal(shape)), x)
    return x


def _counts(mask: np.ndarray, frame: bool) -> list[int]:
    return [int(mask.sum())] if not frame else mask.sum(axis=0).astype(int).tolist()


def _mode_hyper(mode: str, rng: np.random.Generator, stat_shape: tuple[int, ...], dist: str,
                counts: list[int]) -> tuple[str, dict[str, Any]]:
    if mode == "track_unbiased" and 1 in counts:
        mode = "track_biased"  # the unbiased estimate is undefined (and rejected) at k = 1
    if mode.startswith("cumulative") and 0 in counts:
        mode = "track_biased"  # cumulative mode rejects a row without valid frames
    if mode == "train":
        return mode, {"training": True}
    loc, scale = _LOC_SCALE[dist]
    scale = scale or 1.0
    stats = {"running_mean": loc + scale * rng.standard_normal(stat_shape),
             "running_var": scale**2 * rng.uniform(0.5, 2.0, stat_shape)}
    if mode == "eval":
        return mode, {"training": False, **stats}
    hyper: dict[str, Any] = {"training": True, **stats}
    hyper.update({
        "track_biased": {"batch_stat_weight": 0.1, "running_var_estimator": "biased"},
        "track_unbiased": {"batch_stat_weight": 1 - 0.99, "running_var_estimator": "unbiased"},
        "cumulative_first": {"batch_stat_weight": "cumulative", "num_batches_tracked": 0,
                             "running_var_estimator": "unbiased" if 1 not in counts
                             else "biased"},
        "cumulative_k4": {"batch_stat_weight": "cumulative", "num_batches_tracked": 4,
                          "running_var_estimator": "biased"},
    }[mode])
    return mode, hyper


def proof_cases() -> list[ProofCase]:
    cases = []
    for i, (lname, n_, t_, c_, c_axis, lengths) in enumerate(_LAYOUTS):
        layout_rng = seeded(5000 + i)
        if not lengths:
            lengths = layout_rng.integers(0, t_ + 1, n_).tolist()
        mask = mask_of(lengths, t_)
        shape = (n_, t_, c_) if c_axis % 3 == 2 else (n_, c_, t_)
        for j, dist in enumerate(_DISTS):
            seed = 5100 + 100 * i + j
            rng = seeded(seed)
            frame = (i + j) % 2 == 0
            statistics = "frame" if frame else "sequence"
            x = _draw(rng, shape, c_axis, mask, dist)
            stat_shape = shape[1:] if frame else (c_,)
            counts = _counts(mask, frame)
            mode, hyper = _mode_hyper(_MODES[(i + j) % len(_MODES)], rng, stat_shape, dist,
                                      counts)
            affine = (i + 2 * j) % 3
            weight = rng.normal(1.0, 0.5, c_) if affine >= 1 else None
            bias = rng.normal(0.0, 0.5, c_) if affine == 2 else None
            eps = [1e-5, 0.0, 0.1, 1e-3][(i + j) % 4]
            degenerate = dist == "constant" or 1 in counts
            if eps == 0.0 and degenerate and hyper["training"]:
                eps = 1e-5
            hyper.update(eps=eps, channel_axis=c_axis, mask=mask, statistics=statistics)
            # Rows of at most two frames saturate (y = 0 or about +-1): their second order is
            # O(eps), below what a difference quotient resolves at |x| = 1e3.
            saturated = dist == "offset_1e3" and max(counts) <= 2
            smooth = dist in ("normal", "offset_1e3", "pad_nan") and x.size <= 64 and not saturated
            cases.append(ProofCase(
                name=f"{dist}-{lname}-{'x'.join(map(str, shape))}-{statistics}-{mode}-"
                     f"affine={affine}",
                primals={"x": x, "weight": weight, "bias": bias},
                hyper=hyper, fd=smooth, fd_step=1e-3,
                tags=frozenset({mode, dist, lname, statistics})))
    return cases
