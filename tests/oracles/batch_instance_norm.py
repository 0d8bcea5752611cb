"""mpmath oracle and proof cases for batch_instance_norm, written from the spec's equations."""

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


def _clip(v: Any) -> Any:
    return min(max(v, mpmath.mpf(0)), mpmath.mpf(1))


def mp_forward(primals: dict[str, np.ndarray | None], hyper: dict[str, Any]
               ) -> dict[str, np.ndarray]:
    x, rho = primals["x"], primals["rho"]
    assert x is not None
    assert rho is not None
    c_axis = hyper.get("channel_axis", 1) % x.ndim
    batch_axes = tuple(i for i in range(x.ndim) if i != c_axis)
    spatial = tuple(i for i in range(1, x.ndim) if i != c_axis)
    channels, samples = x.shape[c_axis], x.shape[0]
    with mpmath.workdps(DPS):
        eps = mpmath.mpf(hyper["eps"])
        xm = mp_array(x)
        r = [_clip(v) for v in mp_array(rho)]
        w, b = primals.get("weight"), primals.get("bias")
        wm = mp_array(w) if w is not None else None
        bm = mp_array(b) if b is not None else None
        count = x.size // channels
        mean = np.empty((channels,), dtype=object)
        var = np.empty((channels,), dtype=object)
        for (c,), vals in rows(xm, batch_axes):
            mean[c] = mpmath.fsum(vals) / count
            var[c] = mpmath.fsum((u - mean[c]) ** 2 for u in vals) / count
        if hyper["training"]:
            center, spread = mean, var
        else:
            center = mp_array(np.asarray(hyper["running_mean"], dtype=np.float64))
            spread = mp_array(np.asarray(hyper["running_var"], dtype=np.float64))
        scale = np.array([1 / mpmath.sqrt(s + eps) for s in spread], dtype=object)
        # instance statistics: rows over the spatial axes, indexed (n, c) after moving c to 1
        moved = np.moveaxis(xm, c_axis, 1)
        m = x.size // (samples * channels)
        i_mean = np.empty((samples, channels), dtype=object)
        i_var = np.empty((samples, channels), dtype=object)
        for idx, vals in rows(moved, tuple(range(2, x.ndim))):
            i_mean[idx] = mpmath.fsum(vals) / m
            i_var[idx] = mpmath.fsum((u - i_mean[idx]) ** 2 for u in vals) / m
        i_rstd = np.array([[1 / mpmath.sqrt(v + eps) for v in row] for row in i_var],
                          dtype=object).reshape(samples, channels)
        y = np.empty(x.shape, dtype=object)
        for idx in np.ndindex(*x.shape):
            c, n = idx[c_axis], idx[0]
            z_bn = (xm[idx] - center[c]) * scale[c]
            z_in = (xm[idx] - i_mean[n, c]) * i_rstd[n, c]
            v = r[c] * z_bn + (1 - r[c]) * z_in
            if wm is not None:
                v = v * wm[c]
            if bm is not None:
                v = v + bm[c]
            y[idx] = v
        out = {"y": y, "instance_mean": i_mean, "instance_var": i_var, "instance_rstd": i_rstd}
        assert spatial, "batch_instance_norm needs a spatial axis"
        if not hyper["training"]:
            return out
        out.update(mean=mean, var=var, rstd=scale)
        if hyper.get("running_mean") is None:
            return out
        rmm = mp_array(np.asarray(hyper["running_mean"], dtype=np.float64))
        rvm = mp_array(np.asarray(hyper["running_var"], dtype=np.float64))
        f = _factor(hyper)
        unbiased = hyper["running_var_estimator"] == "unbiased"
        stored = [v * count / (count - 1) if unbiased else v for v in var]
        out["running_mean"] = np.array(
            [(1 - f) * q + f * u for q, u in zip(rmm, mean, strict=True)], dtype=object)
        out["running_var"] = np.array(
            [(1 - f) * q + f * u for q, u in zip(rvm, stored, strict=True)], dtype=object)
        nbt = np.empty((), dtype=object)
        nbt[()] = mpmath.mpf(hyper.get("num_batches_tracked", 0) + 1)
        out["num_batches_tracked"] = nbt
    return out


# (name, shape, channel_axis): every layout has spatial axes (the instance part needs them)
_LAYOUTS = [
    ("1d", (3, 2, 5), 1),
    ("1d-l7", (2, 3, 7), 1),
    ("2d", (2, 3, 2, 3), 1),
    ("2d-batch1", (1, 2, 3, 4), 1),
    ("2d-last", (2, 3, 2, 4), -1),
    ("1d-last", (2, 13, 3), -1),
    ("3d", (2, 2, 2, 2, 3), 1),
    ("large", (4, 2, 300), 1),
]
_DISTS = ["normal", "offset_1e3", "offset_1e8", "tiny", "huge", "const_instance", "mixed"]
_MODES = ["train", "track_unbiased", "eval", "track_biased", "cumulative_k4", "eval", "train"]
# rho per case: inside (0, 1), both clip ends exactly, and outside (clipped)
_RHOS = ["inside", "ends", "outside", "inside", "mixed", "ends", "outside"]
_LOC_SCALE = {"normal": (0.0, 1.0), "offset_1e3": (1e3, 1.0), "offset_1e8": (-1e8, 1.0),
              "tiny": (0.0, 1e-150), "huge": (0.0, 1e100), "const_instance": (3.5, 2.0),
              "mixed": (0.5, 2.0)}


def _draw(rng: np.random.Generator, shape: tuple[int, ...], c_axis: int, dist: str
          ) -> np.ndarray:
    loc, scale = _LOC_SCALE[dist]
    x = loc + scale * rng.standard_normal(shape)
    moved = np.moveaxis(x, c_axis, 1)  # a view: writes land in x
    if dist == "const_instance":
        moved[0, 0] = -7.25  # one (sample, channel) constant: instance variance exactly 0
    if dist == "mixed":
        moved[-1] *= 1e-3  # one sample on a much smaller scale than the others
    return x


def _rho(rng: np.random.Generator, kind: str, channels: int) -> np.ndarray:
    inside = rng.uniform(0.05, 0.95, channels)
    if kind == "inside":
        return inside
    if kind == "ends":
        return np.array([(0.0, 1.0)[i % 2] for i in range(channels)])
    if kind == "outside":
        return np.where(np.arange(channels) % 2 == 0, -0.5, 1.75) + rng.uniform(0, 0.1,
                                                                                 channels)
    # every kind at once
    pool = [0.0, 1.0, -0.3, 1.4]
    return np.array([pool[i % 4] if i < 4 else inside[i] for i in range(channels)])


def _mode_hyper(mode: str, rng: np.random.Generator, channels: int, dist: str
                ) -> dict[str, Any]:
    if mode == "train":
        return {"training": True}
    loc, scale = _LOC_SCALE[dist]
    stats = {"running_mean": loc + scale * rng.standard_normal(channels),
             "running_var": scale**2 * rng.uniform(0.5, 2.0, channels)}
    if mode == "eval":
        return {"training": False, **stats}
    return {"training": True, **stats, **{
        "track_biased": {"batch_stat_weight": 0.1, "running_var_estimator": "biased"},
        "track_unbiased": {"batch_stat_weight": 0.1, "running_var_estimator": "unbiased",
                           "num_batches_tracked": 3},
        "cumulative_k4": {"batch_stat_weight": "cumulative", "num_batches_tracked": 4,
                          "running_var_estimator": "unbiased"},
    }[mode]}


def proof_cases() -> list[ProofCase]:
    cases = []
    for i, (lname, shape, c_axis) in enumerate(_LAYOUTS):
        channels = shape[c_axis]
        for j, dist in enumerate(_DISTS):
            rng = seeded(8000 + 100 * i + j)
            x = _draw(rng, shape, c_axis, dist)
            mode = _MODES[(i + j) % len(_MODES)]
            rho_kind = _RHOS[(2 * i + j) % len(_RHOS)]
            rho = _rho(rng, rho_kind, channels)
            hyper = _mode_hyper(mode, rng, channels, dist)
            affine = (i + 2 * j) % 3
            weight = rng.normal(1.0, 0.5, channels) if affine >= 1 else None
            bias = rng.normal(0.0, 0.5, channels) if affine == 2 else None
            eps = [1e-5, 0.0, 0.1, 1e-3][(i + j) % 4]
            if eps == 0.0 and dist == "const_instance":
                eps = 1e-5  # a constant instance with eps = 0 divides by zero
            hyper.update(eps=eps, channel_axis=c_axis)
            # finite differences must not straddle a clip end (they see a one-sided slope)
            # (the "mixed" sample's spread, 2e-3, is below the finite-difference step); a batch
            # of one in training has z_bn = z_in, so y does not depend on rho at all
            smooth = (dist in ("normal", "offset_1e3") and x.size <= 80
                      and rho_kind in ("inside", "outside")
                      and not (shape[0] == 1 and hyper["training"]))
            cases.append(ProofCase(
                name=f"{dist}-{lname}-{'x'.join(map(str, shape))}-{mode}-rho={rho_kind}"
                     f"-affine={affine}",
                primals={"x": x, "rho": rho, "weight": weight, "bias": bias}, hyper=hyper,
                fd=smooth, fd_step=1e-3, tags=frozenset({mode, dist, lname, rho_kind})))
    return cases
