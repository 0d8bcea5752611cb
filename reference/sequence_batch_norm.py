"""Sequence batch normalization: batch norm of padded, variable-length sequences under a mask.

``x`` has shape ``(N, T, C)`` (``channel_axis=-1``, the canonical layout) or ``(N, C, T)``
(``channel_axis=1``); ``mask`` is a bool array of shape ``(N, T)``, True where ``x[n, t]`` is a
valid frame and False where it is padding. A *row* is a set of valid frames ``V`` sharing one
statistic per channel ``c``; ``statistics`` says which:

* ``"sequence"``: one row, every valid ``(n, t)``; statistics have shape ``(C,)``.
* ``"frame"``: one row per time step ``t``, the valid ``n`` at that ``t``; statistics have
  the shape of one sample ``x[n]``, ``(T, C)`` (or ``(C, T)`` for ``channel_axis=1``).

**Training** (``training=True``), for a row ``V`` of ``k = |V| >= 1`` valid frames::

    mean[c] = (1/k) sum_{(n,t) in V} x[n, t, c]
    var[c]  = (1/k) sum_{(n,t) in V} (x[n, t, c] - mean[c])^2      (biased)
    rstd[c] = 1 / sqrt(var[c] + eps)
    y[n, t, c] = (x[n, t, c] - mean[c]) * rstd[c] * weight[c] + bias[c]    ((n, t) in V)

A row with no valid frame (``k = 0``) has NaN statistics. Padded positions never enter a
statistic, their output is ``y = 0``, and no gradient flows to or from them (the value of ``x``
there is never read: NaN or Inf padding changes nothing). Running statistics (shape of the
statistics), given both or neither, are updated per row as in batch_norm, with ``n = k``::

    running_mean' = (1 - f) * running_mean + f * mean
    running_var'  = (1 - f) * running_var  + f * v,    v = var * k/(k-1) ("unbiased") or var
    f = batch_stat_weight, or 1 / (num_batches_tracked + 1) for "cumulative"
    num_batches_tracked' = num_batches_tracked + 1

An empty row keeps its running statistics. ``"cumulative"`` with an empty row and
``"unbiased"`` with a row of one frame raise ValueError. **Evaluation** (``training=False``)::

    y = (x - running_mean) / sqrt(running_var + eps) * weight + bias      (valid), 0 (padded)

>>> import numpy as np
>>> x = np.array([[[1.0], [5.0]], [[3.0], [np.nan]]])        # (N, T, C) = (2, 2, 1)
>>> mask = np.array([[True, True], [True, False]])
>>> out = forward(x, mask=mask, statistics="sequence", training=True, eps=0.0)
>>> out["mean"].tolist(), out["var"].tolist(), out["y"][:, :, 0].tolist()
([3.0], [2.6666666666666665], [[-1.224744871391589, 1.224744871391589], [0.0, 0.0]])
>>> forward(x, mask=mask, statistics="frame", training=True, eps=0.0)["mean"].tolist()
[[2.0], [5.0]]
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from ._checks import (
    FloatArray,
    _to_array,
    as_float64,
    check_axis,
    check_choice,
    check_eps,
    check_int,
    check_shape,
    cotangent_like,
    directions,
    ieee,
    optional_float64,
)
from ._layout import Layout, sum_over
from ._standardize import AffineNorm
from .batch_norm import RUNNING_VAR_ESTIMATORS, _blend, _check_factor

PRIMALS = ("x", "weight", "bias")
"""Differentiable inputs, in call order; ``weight`` and ``bias`` (shape ``(C,)``) may be None."""
STATS = ("mean", "var", "rstd", "running_mean", "running_var", "num_batches_tracked")
"""Statistics :func:`forward` may return beside ``y`` (training; the running state only when
given): shape ``(C,)`` for ``"sequence"``, ``x.shape[1:]`` for ``"frame"``."""
STATE = ("running_mean", "running_var")
"""State inputs, passed by keyword and returned updated (with ``num_batches_tracked``)."""
CONSTANTS: dict[str, str] = {"mask": "bool"}
"""Non-differentiable inputs: the padding mask, True at valid frames."""
NO_NCHW_EXAMPLE = ("the input is a sequence (N, T, C) under a padding mask: which values share "
                   "a statistic depends on the mask, not only on the axes of an (N, C, H, W) "
                   "activation")
"""Why the module defines no ``layout()`` and ``NCHW_EXAMPLE`` (the docs print this)."""
STATISTICS = ("frame", "sequence")
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class _Call:
    """A validated call in the canonical layout ``(N, T, C)``."""

    x: FloatArray
    mask: BoolArray
    weight: FloatArray | None
    bias: FloatArray | None
    eps: float
    frame: bool
    channels_first: bool
    training: bool
    running_mean: FloatArray | None
    running_var: FloatArray | None
    """Canonical: ``(C,)`` sequence-wise, ``(T, C)`` frame-wise."""
    num_batches_tracked: int
    factor: Fraction | None
    """The update factor ``f``; None unless training with running statistics."""
    unbiased: bool

    def rows(self) -> Iterator[tuple[Any, BoolArray, int]]:
        """``(index into the canonical statistics, selector over (N, T), valid count)``."""
        if not self.frame:
            yield ..., self.mask, int(self.mask.sum())
            return
        for t in range(self.mask.shape[1]):
            sel = np.zeros_like(self.mask)
            sel[:, t] = self.mask[:, t]
            yield t, sel, int(sel.sum())

    @property
    def stat_shape(self) -> tuple[int, ...]:
        return self.x.shape[1:] if self.frame else self.x.shape[2:]

    def user(self, a: FloatArray) -> FloatArray:
        """A canonical array (``x``-shaped or frame statistics) in the caller's layout."""
        return np.moveaxis(a, -1, -2) if self.channels_first and a.ndim >= 2 else a

    def valid_sum(self, a: FloatArray) -> FloatArray:
        """Correctly rounded sum over the valid frames of an ``(N, T, C)`` array: ``(C,)``."""
        return sum_over(a[self.mask], (0,))

    def broadcast(self, stat: FloatArray) -> FloatArray:
        """A canonical statistic broadcast against ``(N, T, C)``."""
        return stat[None] if self.frame else stat


def _norm(count: int, channels: int, eps: float) -> AffineNorm:
    """Batch norm of ``count`` gathered frames ``(count, C)``: the shared moment core."""
    lay = Layout(shape=(count, channels), perm=(1, 0), stat_shape=(channels,), n=count,
                 param_axes=(1,))
    return AffineNorm(layout=lay, eps=eps, center=True)


def _check_mask(value: object, shape: tuple[int, int]) -> BoolArray:
    if value is None:
        raise ValueError(f"argument 'mask': got None, expected a bool array of shape {shape} "
                         "(True at valid frames)")
    arr = _to_array("mask", value)
    if arr.dtype != np.bool_:
        raise TypeError(f"argument 'mask': got dtype {arr.dtype}, expected a bool array (True "
                        "at valid frames); integer lengths are not converted silently")
    if arr.shape != shape:
        raise ValueError(f"argument 'mask': got shape {arr.shape}, expected shape {shape} "
                         "(batch, time) of x")
    return np.array(arr, dtype=np.bool_)


def _check_running(name: str, value: object, call_shape: tuple[int, ...],
                   channels_first: bool) -> FloatArray | None:
    arr = optional_float64(name, value)
    check_shape(name, arr, call_shape)
    if arr is None:
        return None
    if name == "running_var" and bool(np.any(arr < 0)):
        raise ValueError(f"argument 'running_var': got negative entries {arr[arr < 0].tolist()}, "
                         "expected a variance >= 0 (or NaN)")
    return np.moveaxis(arr, 0, 1) if channels_first and arr.ndim == 2 else arr


def _setup(x: object, weight: object, bias: object, *, mask: object, statistics: object,
           training: object, eps: object, channel_axis: object, running_mean: object,
           running_var: object, num_batches_tracked: object, batch_stat_weight: object,
           running_var_estimator: object) -> _Call:
    xa = as_float64("x", x)
    if xa.ndim != 3:
        raise ValueError(f"argument 'x': got an array of shape {xa.shape} ({xa.ndim}-d), "
                         "expected 3 dimensions (N, T, C) or (N, C, T)")
    c = check_axis("channel_axis", channel_axis, 3)
    if c == 0:
        raise ValueError(f"argument 'channel_axis': got {channel_axis}, expected 1 (N, C, T) or "
                         "2 / -1 (N, T, C); axis 0 is the batch")
    first = c == 1
    xc = np.moveaxis(xa, 1, 2) if first else xa
    m = _check_mask(mask, xc.shape[:2])
    frame = check_choice("statistics", statistics, STATISTICS) == "frame"
    e = check_eps(eps)
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"argument 'training': got {training!r}, expected True or False")
    channels = xc.shape[2]
    w, b = optional_float64("weight", weight), optional_float64("bias", bias)
    check_shape("weight", w, (channels,))
    check_shape("bias", b, (channels,))
    stat_shape = xa.shape[1:] if frame else (channels,)
    rm = _check_running("running_mean", running_mean, stat_shape, first)
    rv = _check_running("running_var", running_var, stat_shape, first)
    if (rm is None) != (rv is None):
        given, missing = ("running_mean", "running_var") if rv is None else (
            "running_var", "running_mean")
        raise ValueError(f"argument {missing!r}: got None while {given!r} was given, expected "
                         "both running statistics or neither")
    k = check_int("num_batches_tracked", num_batches_tracked, minimum=0)
    factor = None if batch_stat_weight is None else _check_factor(batch_stat_weight, k)
    estimator = None if running_var_estimator is None else check_choice(
        "running_var_estimator", running_var_estimator, RUNNING_VAR_ESTIMATORS)
    call = _Call(x=xc, mask=m, weight=w, bias=b, eps=e, frame=frame, channels_first=first,
                 training=bool(training), running_mean=rm, running_var=rv,
                 num_batches_tracked=k, factor=None, unbiased=estimator == "unbiased")
    if not training and rm is None:
        raise ValueError("argument 'running_mean': got None with training=False, expected the "
                         "running statistics (running_mean and running_var) for evaluation")
    if not (training and rm is not None):
        return call
    if factor is None:
        raise ValueError("argument 'batch_stat_weight': got None while updating running "
                         "statistics, expected a number in [0, 1] or 'cumulative'")
    if estimator is None:
        raise ValueError("argument 'running_var_estimator': got None while updating running "
                         f"statistics, expected one of {list(RUNNING_VAR_ESTIMATORS)}")
    counts = [count for _, _, count in call.rows()]
    where = "a time step" if frame else "the batch"
    if batch_stat_weight == "cumulative" and 0 in counts:
        raise ValueError(f"argument 'mask': got {where} with no valid frame, expected at least "
                         "one per statistic for batch_stat_weight='cumulative' (the counter "
                         "would count a batch that row never saw)")
    if call.unbiased and 1 in counts:
        raise ValueError(f"argument 'mask': got {where} with one valid frame, expected 0 or >= 2 "
                         "for running_var_estimator='unbiased' (var * k / (k - 1) is undefined)")
    return replace(call, factor=factor)


def _eval_parts(call: _Call) -> tuple[FloatArray, FloatArray]:
    """``(x - running_mean, sqrt(running_var + eps))`` against ``(N, T, C)``."""
    assert call.running_mean is not None
    assert call.running_var is not None
    return (call.x - call.broadcast(call.running_mean),
            np.sqrt(call.broadcast(call.running_var) + call.eps))


def _w(call: _Call) -> FloatArray | float:
    return 1.0 if call.weight is None else call.weight


def _valid(call: _Call, a: FloatArray) -> FloatArray:
    """``a`` at valid frames, 0 at padded ones (NaN computed from padding never escapes)."""
    return np.where(call.mask[:, :, None], a, 0.0)


_HYPER = ("mask", "statistics", "training", "eps", "channel_axis", "running_mean",
          "running_var", "num_batches_tracked", "batch_stat_weight", "running_var_estimator")


def _call(x: object, weight: object, bias: object, kw: Mapping[str, Any]) -> _Call:
    return _setup(x, weight, bias, **{k: kw[k] for k in _HYPER})


@ieee
def _forward(call: _Call) -> dict[str, FloatArray]:
    if not call.training:
        centered, denom = _eval_parts(call)
        y = centered / denom * _w(call)
        if call.bias is not None:
            y = y + call.bias
        return {"y": call.user(_valid(call, y))}
    channels = call.x.shape[2]
    y = np.zeros_like(call.x)
    stats = {k: np.full(call.stat_shape, np.nan) for k in ("mean", "var", "rstd")}
    rm = None if call.running_mean is None else call.running_mean.copy()
    rv = None if call.running_var is None else call.running_var.copy()
    for idx, sel, count in call.rows():
        if count == 0:
            continue
        yg, m = _norm(count, channels, call.eps).forward(call.x[sel], call.weight, call.bias)
        y[sel] = yg
        stats["mean"][idx], stats["var"][idx], stats["rstd"][idx] = m.mean, m.var, m.rstd
        if call.factor is not None and rm is not None and rv is not None:
            scale = Fraction(count, count - 1) if call.unbiased else Fraction(1)
            rm[idx] = _blend(rm[idx], m.mean, call.factor, Fraction(1))
            rv[idx] = _blend(rv[idx], m.var, call.factor, scale)
    out = {"y": call.user(y), **{k: call.user(v) for k, v in stats.items()}}
    if call.factor is not None and rm is not None and rv is not None:
        out["running_mean"], out["running_var"] = call.user(rm), call.user(rv)
        out["num_batches_tracked"] = np.array(float(call.num_batches_tracked + 1))
    return out


def forward(x: object, weight: object = None, bias: object = None, *, mask: object,
            statistics: str, training: bool, eps: float, channel_axis: int = -1,
            running_mean: object = None, running_var: object = None,
            num_batches_tracked: int = 0, batch_stat_weight: float | str | None = None,
            running_var_estimator: str | None = None) -> dict[str, FloatArray]:
    """Return ``y`` and the statistics; see the module docstring for the definition.

    Training returns ``mean``, ``var``, ``rstd`` (NaN for a row without valid frames), plus
    ``running_mean``, ``running_var`` and ``num_batches_tracked`` when running statistics are
    given. Evaluation returns ``y`` only.
    """
    return _forward(_call(x, weight, bias, locals()))


def _x_user(call: _Call, g: FloatArray) -> FloatArray:
    """A cotangent or tangent of ``x`` in the canonical layout."""
    return np.moveaxis(g, 1, 2) if call.channels_first else g


@ieee
def _vjp(call: _Call, g: FloatArray) -> dict[str, FloatArray]:
    channels = call.x.shape[2]
    if call.training:
        dx, z = np.zeros_like(call.x), np.zeros_like(call.x)
        for _, sel, count in call.rows():
            if count == 0:
                continue
            norm = _norm(count, channels, call.eps)
            dx[sel] = norm.vjp(call.x[sel], call.weight, None, g[sel])["x"]
            z[sel] = norm.forward(call.x[sel], None, None)[0]
    else:
        centered, denom = _eval_parts(call)
        dx, z = _valid(call, g * _w(call) / denom), centered / denom
    grads = {"x": call.user(dx)}
    if call.weight is not None:
        grads["weight"] = call.valid_sum(g * z)
    if call.bias is not None:
        grads["bias"] = call.valid_sum(g)
    return grads


def vjp(x: object, weight: object = None, bias: object = None, *, cotangent: object,
        mask: object, statistics: str, training: bool, eps: float, channel_axis: int = -1,
        running_mean: object = None, running_var: object = None,
        num_batches_tracked: int = 0, batch_stat_weight: float | str | None = None,
        running_var_estimator: str | None = None) -> dict[str, FloatArray]:
    """Gradients of ``sum(cotangent * y)`` for each primal that is not None.

    Per row, the VJP of batch_norm over its valid frames; 0 for padded ``x``; the parameter
    gradients sum over valid frames only. Evaluation: ``dx = g * weight * rstd``.
    """
    call = _call(x, weight, bias, locals())
    return _vjp(call, _x_user(call, cotangent_like(cotangent, call.user(call.x).shape)))


@ieee
def _jvp(call: _Call, t: dict[str, FloatArray | None]) -> FloatArray:
    tx, tw, tb = t["x"], t.get("weight"), t.get("bias")
    assert tx is not None
    txc = _x_user(call, tx)
    if not call.training:
        centered, denom = _eval_parts(call)
        out = txc * _w(call) / denom
        if tw is not None:
            out = out + centered / denom * tw
        if tb is not None:
            out = out + tb
        return call.user(_valid(call, out))
    out = np.zeros_like(call.x)
    for _, sel, count in call.rows():
        if count:
            tg = {"x": txc[sel], "weight": tw, "bias": tb}
            out[sel] = _norm(count, call.x.shape[2], call.eps).jvp(
                call.x[sel], call.weight, call.bias, tg)
    return call.user(out)


def jvp(x: object, weight: object = None, bias: object = None, *,
        tangent: Mapping[str, object], mask: object, statistics: str, training: bool,
        eps: float, channel_axis: int = -1, running_mean: object = None,
        running_var: object = None, num_batches_tracked: int = 0,
        batch_stat_weight: float | str | None = None,
        running_var_estimator: str | None = None) -> FloatArray:
    """Directional derivative of ``y`` (0 at padded positions); missing tangent keys are zero."""
    call = _call(x, weight, bias, locals())
    return _jvp(call, directions("tangent", tangent,
                                 {"x": call.user(call.x), "weight": call.weight,
                                  "bias": call.bias}))


@ieee
def _second_order(call: _Call, g: FloatArray, t: dict[str, FloatArray | None]
                  ) -> dict[str, FloatArray]:
    tx, tw = t["x"], t.get("weight")
    assert tx is not None
    txc = _x_user(call, tx)
    if call.training:
        dx, z_dot = np.zeros_like(call.x), np.zeros_like(call.x)
        for _, sel, count in call.rows():
            if count == 0:
                continue
            norm = _norm(count, call.x.shape[2], call.eps)
            xg, tg = call.x[sel], {"x": txc[sel], "weight": tw}
            dx[sel] = norm.second_order(xg, call.weight, None, g[sel], tg)["x"]
            z_dot[sel] = norm.jvp(xg, None, None, {"x": txc[sel]})
    else:
        _, denom = _eval_parts(call)
        dx = _valid(call, g * tw / denom) if tw is not None else np.zeros_like(call.x)
        z_dot = txc / denom
    out = {"x": call.user(dx)}
    if call.weight is not None:
        out["weight"] = call.valid_sum(g * z_dot)
    if call.bias is not None:
        out["bias"] = np.zeros_like(call.bias)
    return out


def second_order(x: object, weight: object = None, bias: object = None, *, cotangent: object,
                 tangent: Mapping[str, object], mask: object, statistics: str, training: bool,
                 eps: float, channel_axis: int = -1, running_mean: object = None,
                 running_var: object = None, num_batches_tracked: int = 0,
                 batch_stat_weight: float | str | None = None,
                 running_var_estimator: str | None = None) -> dict[str, FloatArray]:
    """Derivative of :func:`vjp` (``cotangent`` held fixed) along ``tangent``."""
    call = _call(x, weight, bias, locals())
    g = _x_user(call, cotangent_like(cotangent, call.user(call.x).shape))
    t = directions("tangent", tangent, {"x": call.user(call.x), "weight": call.weight,
                                        "bias": call.bias})
    return _second_order(call, g, t)


def input_shapes(shape: tuple[int, ...], hyper: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Shapes of every input other than ``x`` for an ``x`` of ``shape`` (the catalog's hook).

    >>> input_shapes((4, 6, 3), {"statistics": "frame"})
    {'weight': (3,), 'bias': (3,), 'mask': (4, 6), 'running_mean': (6, 3), 'running_var': (6, 3)}
    """
    c = check_axis("channel_axis", hyper.get("channel_axis", -1), len(shape))
    time = 3 - c
    stat = tuple(shape[1:]) if hyper.get("statistics") == "frame" else (shape[c],)
    return {"weight": (shape[c],), "bias": (shape[c],), "mask": (shape[0], shape[time]),
            "running_mean": stat, "running_var": stat}
