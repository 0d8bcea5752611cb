"""mpmath oracle and proof cases for batch_norm, written from the spec's equations."""

from __future__ import annotations

from typing import Any

import mpmath
import numpy as np

from . import DPS, ProofCase, mp_array, rows, seeded


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
    reduce_axes = tuple(i for i in range(x.ndim) if i != c_axis)
    channels = x.shape[c_axis]
    with mpmath.workdps(DPS):
        eps = mpmath.mpf(hyper["eps"])
        xm = mp_array(x)
        w = primals.get("weight")
        b = primals.get("bias")
        wm = mp_array(w) if w is not None else None
        bm = mp_array(b) if b is not None else None
        rm = hyper.get("running_mean")
        rv = hyper.get("running_var")
        rmm = mp_array(rm) if rm is not None else None
        rvm = mp_array(rv) if rv is not None else None

        mean = np.empty((channels,), dtype=object)
        var = np.empty((channels,), dtype=object)
        count = x.size // channels
        if hyper["training"]:
            for (c,), vals in rows(xm, reduce_axes):
                mean[c] = mpmath.fsum(vals) / count
                var[c] = mpmath.fsum((u - mean[c]) ** 2 for u in vals) / count
            center, spread = mean, var
        else:
            assert rmm is not None
            assert rvm is not None
            center, spread = rmm, rvm
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
        if rmm is None:
            return out
        assert rvm is not None
        f = _factor(hyper)
        unbiased = hyper["running_var_estimator"] == "unbiased"
        stored = [v * count / (count - 1) if unbiased else v for v in var]
        out["running_mean"] = np.array(
            [(1 - f) * r + f * m for r, m in zip(rmm, mean, strict=True)], dtype=object)
        out["running_var"] = np.array(
            [(1 - f) * r + f * v for r, v in zip(rvm, stored, strict=True)], dtype=object)
        nbt = np.empty((), dtype=object)
        nbt[()] = mpmath.mpf(hyper.get("num_batches_tracked", 0) + 1)
        out["num_batches_tracked"] = nbt
    return out


# (name, shape, channel_axis); n is the reduction size per channel.
_LAYOUTS = [
    ("1d", (5, 3), 1),                  # n = 5
    ("1d-n7", (7, 2), 1),               # n = 7
    ("1d-n13", (13, 3), 1),             # n = 13
    ("1d-n1", (1, 3), 1),               # n = 1
    ("2d", (2, 3, 2, 3), 1),            # n = 12
    ("2d-batch1", (1, 2, 3, 4), 1),     # batch of one, spatial > 1
    ("2d-n1", (1, 2, 1, 1), 1),         # n = 1
    ("3d", (2, 2, 2, 2, 3), 1),         # n = 24
    ("2d-last", (2, 3, 2, 4), -1),      # NHWC, n = 12
    ("1d-last", (2, 7, 3), -1),         # NLC, n = 14
    ("large", (1031, 2), 1),            # n = 1031
    ("large-2d", (2, 2, 25, 25), 1),    # n = 1250
]
# NaN/Inf propagation is proven in tests/test_reference_batch_norm.py: the generic ulp check
# cannot read a NaN oracle value without a RuntimeWarning (an error under filterwarnings).
_DISTS = ["normal", "offset_1e3", "offset_1e8", "tiny", "huge", "constant", "const_channel"]
_MODES = ["train", "track_biased", "track_unbiased", "cumulative_first", "cumulative_k4", "eval"]
# loc and scale of each distribution, so running statistics can be drawn on the same scale
_LOC_SCALE = {"normal": (0.0, 1.0), "offset_1e3": (1e3, 1.0), "offset_1e8": (-1e8, 1.0),
              "tiny": (0.0, 1e-150), "huge": (0.0, 1e100), "constant": (12345.678, 0.0),
              "const_channel": (0.5, 2.0)}


def _draw(rng: np.random.Generator, shape: tuple[int, ...], c_axis: int, dist: str) -> np.ndarray:
    loc, scale = _LOC_SCALE[dist]
    x = loc + scale * rng.standard_normal(shape)
    if dist == "constant":
        x = np.full(shape, loc)
    moved = np.moveaxis(x, c_axis, 0)  # a view: writes land in x
    if dist == "const_channel":
        moved[0] = -7.25
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
    for i, (lname, shape, c_axis) in enumerate(_LAYOUTS):
        channels = shape[c_axis]
        n = int(np.prod(shape)) // channels
        for j, dist in enumerate(_DISTS):
            seed = 2000 + 100 * i + j
            rng = seeded(seed)
            x = _draw(rng, shape, c_axis, dist)
            mode, hyper = _mode_hyper(_MODES[(i + j) % len(_MODES)], rng, channels, dist, n)
            affine = (i + 2 * j) % 3
            weight = rng.normal(1.0, 0.5, channels) if affine >= 1 else None
            bias = rng.normal(0.0, 0.5, channels) if affine == 2 else None
            eps = [1e-5, 0.0, 0.1, 1e-3][(i + j) % 4]
            # eps = 0 needs a nonzero spread in every channel (training) or running var (eval)
            degenerate = dist in ("constant", "const_channel") or n == 1
            if eps == 0.0 and degenerate and hyper["training"]:
                eps = 1e-5
            hyper.update(eps=eps, channel_axis=c_axis)
            smooth = dist in ("normal", "offset_1e3") and x.size <= 64
            cases.append(ProofCase(
                name=f"{dist}-{lname}-{'x'.join(map(str, shape))}-{mode}-affine={affine}",
                primals={"x": x, "weight": weight, "bias": bias},
                hyper=hyper, fd=smooth, fd_step=1e-3,
                tags=frozenset({mode, dist, lname})))
    cases.append(_cancelling_update())
    return cases


def _cancelling_update() -> ProofCase:
    """A running-mean update that nearly cancels: (1 - f) * running_mean ~ -f * mean.

    The batch mean is exact (multiples of 1/8 near 1e8, n = 4), so the update's only rounding
    is its own; a naive (1 - f) * r + f * m rounds at the scale of 1e7, far from the result.
    """
    rng = seeded(2999)
    x = 1e8 + rng.integers(-16, 16, (4, 2)) / 8
    mean = x.mean(axis=0)
    f = 0.1
    running_mean = -mean * f / (1 - f) + rng.normal(0.0, 1e-3, 2)
    hyper = {"training": True, "eps": 1e-5, "channel_axis": 1, "running_mean": running_mean,
             "running_var": np.array([1.0, 2.0]), "batch_stat_weight": f,
             "running_var_estimator": "unbiased"}
    return ProofCase(name="cancelling_update-1d-4x2-track_unbiased-affine=0",
                     primals={"x": x, "weight": None, "bias": None}, hyper=hyper, fd=False,
                     tags=frozenset({"track_unbiased", "cancelling_update"}))
