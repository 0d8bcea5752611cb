"""mpmath oracle and proof cases for ghost_batch_norm, written from the spec's equations.

Ghost batch ``g`` is the slice ``x[g*B:(g+1)*B]`` of ``B = ghost_batch_size`` consecutive
samples; each is normalized with its own per-channel mean and biased variance. The running
statistics move once per call, towards the average over the ghost batches of their means and
of their variances (unbiased: times n/(n-1) with n the count of one ghost batch's channel).
"""

from __future__ import annotations

from typing import Any

import mpmath
import numpy as np

from . import DPS, ProofCase, mp_array, seeded


def _factor(hyper: dict[str, Any]) -> Any:
    f = hyper["batch_stat_weight"]
    if f == "cumulative":
        return 1 / mpmath.mpf(hyper.get("num_batches_tracked", 0) + 1)
    return mpmath.mpf(f)


def _channel_values(slab: np.ndarray, c_axis: int, c: int) -> list[Any]:
    """Every value of channel ``c`` in ``slab`` (an object array of mpf), in any order."""
    return list(np.take(slab, c, axis=c_axis).ravel())


def mp_forward(primals: dict[str, np.ndarray | None], hyper: dict[str, Any]
               ) -> dict[str, np.ndarray]:
    x = primals["x"]
    assert x is not None
    c_axis = hyper.get("channel_axis", 1) % x.ndim
    channels = x.shape[c_axis]
    size = hyper["ghost_batch_size"]
    with mpmath.workdps(DPS):
        eps = mpmath.mpf(hyper["eps"])
        xm = mp_array(x)
        w, b = primals.get("weight"), primals.get("bias")
        wm = mp_array(w) if w is not None else None
        bm = mp_array(b) if b is not None else None
        rm, rv = hyper.get("running_mean"), hyper.get("running_var")
        rmm = mp_array(rm) if rm is not None else None
        rvm = mp_array(rv) if rv is not None else None

        y = np.empty(x.shape, dtype=object)
        if not hyper["training"]:
            # evaluation: the running statistics normalize every sample; no split
            assert rmm is not None
            assert rvm is not None
            for idx in np.ndindex(*x.shape):
                c = idx[c_axis]
                v = (xm[idx] - rmm[c]) / mpmath.sqrt(rvm[c] + eps)
                v = v * wm[c] if wm is not None else v
                y[idx] = v + bm[c] if bm is not None else v
            return {"y": y}

        ghosts = x.shape[0] // size
        mean = np.empty((ghosts, channels), dtype=object)
        var = np.empty((ghosts, channels), dtype=object)
        rstd = np.empty((ghosts, channels), dtype=object)
        for g in range(ghosts):
            slab = xm[g * size:(g + 1) * size]
            for c in range(channels):
                vals = _channel_values(slab, c_axis, c)
                mean[g, c] = mpmath.fsum(vals) / len(vals)
                var[g, c] = mpmath.fsum((u - mean[g, c]) ** 2 for u in vals) / len(vals)
                rstd[g, c] = 1 / mpmath.sqrt(var[g, c] + eps)
        for idx in np.ndindex(*x.shape):
            g, c = idx[0] // size, idx[c_axis]
            v = (xm[idx] - mean[g, c]) * rstd[g, c]
            v = v * wm[c] if wm is not None else v
            y[idx] = v + bm[c] if bm is not None else v
        out = {"y": y, "mean": mean, "var": var, "rstd": rstd}
        if rmm is None:
            return out
        assert rvm is not None
        count = x.size // channels // ghosts  # values of one channel in one ghost batch
        f = _factor(hyper)
        unbiased = hyper["running_var_estimator"] == "unbiased"
        out["running_mean"] = np.array(
            [(1 - f) * rmm[c] + f * mpmath.fsum(mean[:, c]) / ghosts for c in range(channels)],
            dtype=object)
        stored = [mpmath.fsum(var[:, c]) / ghosts for c in range(channels)]
        if unbiased:
            stored = [v * count / (count - 1) for v in stored]
        out["running_var"] = np.array(
            [(1 - f) * rvm[c] + f * stored[c] for c in range(channels)], dtype=object)
        nbt = np.empty((), dtype=object)
        nbt[()] = mpmath.mpf(hyper.get("num_batches_tracked", 0) + 1)
        out["num_batches_tracked"] = nbt
    return out


# (name, shape, channel_axis, ghost_batch_size); n = ghost_batch_size * prod(spatial).
_LAYOUTS = [
    ("1d-G2", (6, 3), 1, 3),              # n = 3
    ("1d-G3", (6, 2), 1, 2),              # n = 2
    ("1d-G1", (5, 3), 1, 5),              # one ghost batch: batch norm, n = 5
    ("1d-n1", (4, 3), 1, 1),              # one sample per ghost batch, n = 1
    ("1d-n13", (26, 2), 1, 13),           # odd ghost batches, n = 13
    ("2d-G2", (4, 3, 2, 3), 1, 2),        # n = 12
    ("2d-B1", (3, 2, 2, 2), 1, 1),        # ghost batches of one sample, spatial > 1: n = 4
    ("3d-G2", (4, 2, 2, 2, 3), 1, 2),     # n = 24
    ("2d-last", (4, 3, 2, 2), -1, 2),     # NHWC, n = 12
    ("1d-last-G3", (6, 7, 3), -1, 2),     # NLC, n = 14
    ("2d-mid", (4, 2, 3, 2), 2, 2),       # channel axis 2 of 4, n = 8
    ("large-G2", (1032, 2), 1, 516),      # n = 516
    ("large-2d-G2", (4, 2, 25, 25), 1, 2),  # n = 1250
]
# NaN/Inf propagation is proven in tests/test_reference_ghost_batch_norm.py: the generic ulp
# check cannot read a NaN oracle value without a RuntimeWarning (an error under -W error).
_DISTS = ["normal", "ghost_offsets", "offset_1e3", "offset_1e8", "tiny", "huge", "constant",
          "const_channel", "const_ghost"]
_MODES = ["train", "track_biased", "track_unbiased", "cumulative_first", "cumulative_k4", "eval"]
# loc and scale of each distribution, so running statistics can be drawn on the same scale
_LOC_SCALE = {"normal": (0.0, 1.0), "ghost_offsets": (0.0, 1.0), "offset_1e3": (1e3, 1.0),
              "offset_1e8": (-1e8, 1.0), "tiny": (0.0, 1e-150), "huge": (0.0, 1e100),
              "constant": (12345.678, 0.0), "const_channel": (0.5, 2.0),
              "const_ghost": (0.0, 1.0)}


def _draw(rng: np.random.Generator, shape: tuple[int, ...], c_axis: int, size: int,
          dist: str) -> np.ndarray:
    loc, scale = _LOC_SCALE[dist]
    x = loc + scale * rng.standard_normal(shape)
    if dist == "constant":
        x = np.full(shape, loc)
    if dist == "const_channel":
        np.moveaxis(x, c_axis, 0)[0] = -7.25  # a view: writes land in x
    if dist == "ghost_offsets":
        # each ghost batch sits at its own level, so within-ghost and whole-batch statistics
        # differ by far more than rounding
        ghosts = shape[0] // size
        levels = np.repeat(rng.normal(0.0, 10.0, ghosts), size)
        x = x + levels.reshape((-1,) + (1,) * (len(shape) - 1))
    if dist == "const_ghost":
        x[:size] = 3.5  # the first ghost batch has zero variance in every channel
    return x


def _mode_hyper(mode: str, rng: np.random.Generator, channels: int, dist: str, n: int
                ) -> tuple[str, dict[str, Any]]:
    if mode == "track_unbiased" and n == 1:
        mode = "track_biased"  # the unbiased estimate is undefined (and rejected) at n = 1
    if mode == "train":
        return mode, {"training": True}
    loc, scale = _LOC_SCALE[dist]
    scale = scale or 1.0
    stats = {"running_mean": loc + scale * rng.standard_normal(channels),
             "running_var": scale**2 * rng.uniform(0.5, 2.0, channels)}
    if mode == "eval":
        return mode, {"training": False, **stats}
    hyper: dict[str, Any] = {"training": True, **stats}
    hyper.update({
        "track_biased": {"batch_stat_weight": 0.1, "running_var_estimator": "biased"},
        "track_unbiased": {"batch_stat_weight": 1 - 0.99, "running_var_estimator": "unbiased"},
        "cumulative_first": {"batch_stat_weight": "cumulative", "num_batches_tracked": 0,
                             "running_var_estimator": "unbiased" if n > 1 else "biased"},
        "cumulative_k4": {"batch_stat_weight": "cumulative", "num_batches_tracked": 4,
                          "running_var_estimator": "biased"},
    }[mode])
    return mode, hyper


def proof_cases() -> list[ProofCase]:
    cases = []
    for i, (lname, shape, c_axis, size) in enumerate(_LAYOUTS):
        channels = shape[c_axis]
        ghosts = shape[0] // size
        n = int(np.prod(shape)) // channels // ghosts
        for j, dist in enumerate(_DISTS):
            seed = 7000 + 100 * i + j
            rng = seeded(seed)
            x = _draw(rng, shape, c_axis, size, dist)
            mode, hyper = _mode_hyper(_MODES[(i + j) % len(_MODES)], rng, channels, dist, n)
            affine = (i + 2 * j) % 3
            weight = rng.normal(1.0, 0.5, channels) if affine >= 1 else None
            bias = rng.normal(0.0, 0.5, channels) if affine == 2 else None
            eps = [1e-5, 0.0, 0.1, 1e-3][(i + j) % 4]
            # eps = 0 needs a nonzero spread in every ghost batch's channel (training)
            degenerate = dist in ("constant", "const_channel", "const_ghost") or n == 1
            if eps == 0.0 and degenerate and hyper["training"]:
                eps = 1e-5
            hyper.update(eps=eps, channel_axis=c_axis, ghost_batch_size=size)
            # n = 2 gives z = +-1 whatever x is: y is flat in x, the differences are noise
            smooth = dist in ("normal", "ghost_offsets", "offset_1e3") and x.size <= 64 and n > 2
            cases.append(ProofCase(
                name=f"{dist}-{lname}-{'x'.join(map(str, shape))}-B={size}-{mode}-"
                     f"affine={affine}",
                primals={"x": x, "weight": weight, "bias": bias},
                hyper=hyper, fd=smooth, fd_step=1e-3,
                tags=frozenset({mode, dist, lname})))
    cases.append(_eval_indivisible())
    return cases


def _eval_indivisible() -> ProofCase:
    """Evaluation does not split the batch: N = 5 with ghost batches of 2 is fine there."""
    rng = seeded(7999)
    x = rng.standard_normal((5, 3))
    hyper = {"training": False, "eps": 1e-5, "channel_axis": 1, "ghost_batch_size": 2,
             "running_mean": rng.standard_normal(3), "running_var": rng.uniform(0.5, 2.0, 3)}
    return ProofCase(name="eval-indivisible-1d-5x3-B=2", primals={
        "x": x, "weight": rng.normal(1.0, 0.5, 3), "bias": rng.normal(0.0, 0.5, 3)},
        hyper=hyper, fd=True, tags=frozenset({"eval"}))
