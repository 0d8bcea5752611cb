"""Sequence batch normalization: batch norm over the valid frames of a padding mask.

The input is viewed channels-last, ``(N, T, C)``, with ``mask[n, t]`` True at valid frames.
A *row* is what shares one statistic: every valid ``(n, t)`` (``statistics="sequence"``, axes
``(0, 1)``) or the valid ``n`` of one time step (``"frame"``, axis ``0``). With ``V`` the valid
positions of a row and ``k = |V|`` (masked sums: padding is replaced by 0 before it is added,
so NaN or Inf padding never reaches a sum)::

    mean = sum_V x / k,   var = sum_V (x - mean)^2 / k,   rstd = 1 / sqrt(var + eps)
    y    = (x - mean) rstd w + b  on V,   0 on padding

Derivatives are batch norm's with every mean taken over ``V`` (``<a> = sum_V a / k``)::

    J v  = rstd (v - <v> - z <z v>),   dx = J (g w) on V, 0 on padding
    dweight = sum_V g z,  dbias = sum_V g
    second order: rstd'/rstd = -rstd <z tx>,  z' = J tx,
        dx' = (rstd'/rstd) J(g w) - rstd (z' <z g w> + z <z' g w>) + J(g tw),  dweight' = sum_V g z'

A row with ``k = 0`` has NaN statistics (0/0) and keeps its running statistics. Evaluation
normalizes the valid frames with the running statistics (per time step when frame-wise).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._numerics import Numerics, hyper_value
from ._precision import Num, Precision, reduce_sum

_METHOD = "sequence_batch_norm"


@dataclass(frozen=True)
class _View:
    """One call in the channels-last view ``(N, T, C)``; statistics keep dims."""

    x: Num
    mask: Num
    """``(N, T, 1)`` bool: the valid frames (what the output keeps)."""
    axes: tuple[int, ...]
    channels_first: bool
    frame: bool

    def to_view(self, a: Num) -> Num:
        return np.swapaxes(a, 1, 2) if self.channels_first else a

    def stat_out(self, s: Num) -> Num:
        """A keep-dims statistic in the caller's shape: ``(C,)`` or one sample's shape."""
        if not self.frame:
            return s.reshape(-1)
        return np.swapaxes(s[0], 0, 1) if self.channels_first else s[0]

    def stat_in(self, s: Num) -> Num:
        """A running statistic in the caller's shape, as a keep-dims view statistic."""
        if not self.frame:
            return s.reshape(1, 1, -1)
        return (np.swapaxes(s, 0, 1) if self.channels_first else s)[None]


@dataclass(frozen=True)
class _Train:
    """Batch statistics of the rows and ``z = (x - mean) rstd`` (garbage on padding)."""

    stat_mask: Num
    count: Num
    mean: Num
    var: Num
    rstd: Num
    z: Num

    def mean_of(self, a: Num, axes: tuple[int, ...]) -> Num:
        """``<a>``: the mean over each row's counted positions, padding replaced by 0."""
        out: Num = reduce_sum(np.where(self.stat_mask, a, 0), axes) / self.count
        return out

    def jac(self, v: Num, axes: tuple[int, ...]) -> Num:
        """``J v = rstd (v - <v> - z <z v>)``, symmetric: the JVP and the VJP of ``z``."""
        out: Num = self.rstd * (v - self.mean_of(v, axes) - self.z * self.mean_of(self.z * v,
                                                                                  axes))
        return out


def _param(p: Num | None) -> Num | None:
    return None if p is None else p.reshape(1, 1, -1)


def _view(nx: Numerics, inputs: Mapping[str, Any], hyper: Mapping[str, Any]) -> _View:
    x = inputs["x"]
    assert x is not None
    if x.ndim != 3:
        raise ValueError(f"argument 'x': got shape {x.shape}, expected (N, T, C) or (N, C, T)")
    c = hyper.get("channel_axis", -1)
    if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c % 3 == 0 or not (
            -3 <= c < 3):
        raise ValueError(f"argument 'channel_axis': got {c!r}, expected 1, 2 or -1")
    first = c % 3 == 1
    xv = np.swapaxes(x, 1, 2) if first else x
    mask = inputs.get("mask", hyper.get("mask"))
    if mask is None:
        raise ValueError("argument 'inputs': got no 'mask', expected a bool array (N, T)")
    m = np.asarray(mask)
    if m.dtype != np.bool_ or m.shape != xv.shape[:2]:
        raise ValueError(f"argument 'inputs['mask']': got {m.dtype} {m.shape}, expected bool "
                         f"{xv.shape[:2]}")
    statistics = hyper_value(hyper, "statistics", _METHOD)
    if statistics not in ("frame", "sequence"):
        raise ValueError(f"argument 'statistics': got {statistics!r}, expected 'frame' or "
                         "'sequence'")
    frame = statistics == "frame"
    return _View(x=xv, mask=m[:, :, None], axes=(0,) if frame else (0, 1),
                 channels_first=first, frame=frame)


def _train(nx: Numerics, prec: Precision, v: _View, eps: Any) -> _Train:
    sm = nx.sequence_stat_mask(v.mask)
    count = nx.sequence_count(sm, v.axes).astype(prec.compute)
    # two passes over the counted positions; padding is replaced, never multiplied by 0
    mean = reduce_sum(np.where(sm, v.x, 0), v.axes) / count
    d = np.where(sm, v.x - mean, 0)
    var = reduce_sum(d * d, v.axes) / count
    rstd = nx.rstd(var, eps)
    return _Train(stat_mask=sm, count=count, mean=mean, var=var, rstd=rstd,
                  z=(v.x - mean) * rstd)


@dataclass(frozen=True)
class SequenceBatchNorm:
    """The sequence_batch_norm method (see the module docstring)."""

    primals: tuple[str, ...] = ("x", "weight", "bias")
    state: tuple[str, ...] = ("running_mean", "running_var")
    constants: tuple[str, ...] = ("mask",)

    def _prepare(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Any],
                 hyper: Mapping[str, Any]) -> tuple[_View, Any, _Train | tuple[Num, Num]]:
        v = _view(nx, inputs, hyper)
        eps = prec.scalar(float(hyper_value(hyper, "eps", _METHOD)))
        if bool(hyper_value(hyper, "training", _METHOD)):
            return v, eps, _train(nx, prec, v, eps)
        rm, rv = inputs.get("running_mean"), inputs.get("running_var")
        if rm is None or rv is None:
            raise ValueError("argument 'inputs': got no running_mean/running_var, expected both "
                             "when training=False")
        rmv = v.stat_in(rm)
        rstd = nx.rstd(v.stat_in(rv), eps)
        return v, eps, ((v.x - rmv) * rstd, rstd)

    def forward(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Any],
                hyper: Mapping[str, Any]) -> dict[str, Num]:
        v, _, st = self._prepare(nx, prec, inputs, hyper)
        w, b = _param(inputs.get("weight")), _param(inputs.get("bias"))
        z = st.z if isinstance(st, _Train) else st[0]
        y = z if w is None else z * w
        y = y if b is None else y + b
        out = {"y": v.to_view(np.where(v.mask, y, 0))}
        if not isinstance(st, _Train):
            return out
        out.update(mean=v.stat_out(st.mean), var=v.stat_out(st.var), rstd=v.stat_out(st.rstd))
        rm, rv = inputs.get("running_mean"), inputs.get("running_var")
        if rm is None and rv is None:
            return out
        if rm is None or rv is None:
            raise ValueError("argument 'inputs': got only one of running_mean/running_var")
        out.update(self._update(nx, prec, v, st, rm, rv, hyper))
        return out

    def _update(self, nx: Numerics, prec: Precision, v: _View, st: _Train, rm: Num, rv: Num,
                hyper: Mapping[str, Any]) -> dict[str, Num]:
        tracked = int(hyper_value(hyper, "num_batches_tracked", _METHOD, 0))
        weight = hyper_value(hyper, "batch_stat_weight", _METHOD)
        estimator = hyper_value(hyper, "running_var_estimator", _METHOD)
        if estimator not in ("biased", "unbiased"):
            raise ValueError(f"argument 'running_var_estimator': got {estimator!r}, expected "
                             "'biased' or 'unbiased'")
        counts = nx.sequence_count(v.mask, v.axes).reshape(-1)
        if weight == "cumulative" and np.any(counts == 0):
            raise ValueError("argument 'inputs['mask']': a row without valid frames, expected "
                             "one per statistic for batch_stat_weight='cumulative'")
        if estimator == "unbiased" and np.any(counts == 1):
            raise ValueError("argument 'inputs['mask']': a row with one valid frame, expected 0 "
                             "or >= 2 for running_var_estimator='unbiased'")
        f = prec.scalar(nx.batch_stat_factor(weight, tracked))
        keep = prec.scalar(1.0) - f
        mean, var = st.mean.reshape(-1, st.mean.shape[-1]), st.var.reshape(-1, st.var.shape[-1])
        # one update per row, with that row's own count (the unbiased factor k/(k-1) varies)
        sample = np.stack([nx.running_var_sample(var[i], max(int(k), 2), estimator)
                           for i, k in enumerate(nx.sequence_count(st.stat_mask, v.axes)
                                                 .reshape(-1))])
        old_m, old_v = v.stat_in(rm).reshape(mean.shape), v.stat_in(rv).reshape(var.shape)
        seen = (counts > 0)[:, None]
        new_m = np.where(seen, keep * old_m + f * mean, old_m)
        new_v = np.where(seen, keep * old_v + f * sample, old_v)
        shape = st.mean.shape
        return {"running_mean": v.stat_out(new_m.reshape(shape)),
                "running_var": v.stat_out(new_v.reshape(shape)),
                "num_batches_tracked": np.asarray(tracked + 1, dtype=np.float64)}

    def vjp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Any],
            hyper: Mapping[str, Any], g: Num) -> dict[str, Num]:
        v, _, st = self._prepare(nx, prec, inputs, hyper)
        w, b = _param(inputs.get("weight")), _param(inputs.get("bias"))
        gv = v.to_view(g)
        gw = gv if w is None else gv * w
        gm = nx.sequence_grad_mask(v.mask)
        if isinstance(st, _Train):
            dx, z = st.jac(gw, v.axes), st.z
        else:
            z, rstd = st
            dx = gw * rstd
        out = {"x": v.to_view(np.where(gm, dx, 0))}
        if w is not None:
            out["weight"] = reduce_sum(np.where(gm, gv * z, 0), (0, 1)).reshape(-1)
        if b is not None:
            out["bias"] = reduce_sum(np.where(gm, gv, 0), (0, 1)).reshape(-1)
        return out

    def jvp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Any],
            hyper: Mapping[str, Any], t: Mapping[str, Num]) -> Num:
        v, _, st = self._prepare(nx, prec, inputs, hyper)
        w = _param(inputs.get("weight"))
        z = st.z if isinstance(st, _Train) else st[0]
        dy = np.zeros_like(v.x)
        if "x" in t:
            tx = v.to_view(t["x"])
            dz = st.jac(tx, v.axes) if isinstance(st, _Train) else tx * st[1]
            dy = dy + (dz if w is None else dz * w)
        if "weight" in t:
            dy = dy + z * _param(t["weight"])
        if "bias" in t:
            dy = dy + _param(t["bias"])
        return v.to_view(np.where(v.mask, dy, 0))

    def second_order(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Any],
                     hyper: Mapping[str, Any], g: Num, t: Mapping[str, Num]) -> dict[str, Num]:
        v, _, st = self._prepare(nx, prec, inputs, hyper)
        w, b = _param(inputs.get("weight")), inputs.get("bias")
        gv = v.to_view(g)
        gw = gv if w is None else gv * w
        gm = nx.sequence_grad_mask(v.mask)
        tx = v.to_view(t["x"]) if "x" in t else np.zeros_like(v.x)
        tw = _param(t.get("weight"))
        if isinstance(st, _Train):
            a = v.axes
            z_dot = st.jac(tx, a)
            ratio = -st.rstd * st.mean_of(st.z * tx, a)
            dx = ratio * st.jac(gw, a) - st.rstd * (z_dot * st.mean_of(st.z * gw, a)
                                                    + st.z * st.mean_of(z_dot * gw, a))
            if tw is not None:
                dx = dx + st.jac(gv * tw, a)
        else:
            # evaluation is affine in x: only the cross terms between x and weight remain
            rstd = st[1]
            z_dot = tx * rstd
            dx = gv * tw * rstd if tw is not None else np.zeros_like(v.x)
        out = {"x": v.to_view(np.where(gm, dx, 0))}
        if w is not None:
            out["weight"] = reduce_sum(np.where(gm, gv * z_dot, 0), (0, 1)).reshape(-1)
        if b is not None:
            out["bias"] = np.zeros(b.shape, dtype=gv.dtype)
        return out


SEQUENCE_BATCH_NORM = SequenceBatchNorm()
