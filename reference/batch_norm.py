"""Batch normalization: standardize each channel over every other axis, with running statistics.

``C = x.shape[channel_axis]``; for each channel ``c`` the reduction set is every element of
``x`` on that channel, ``n = x.size / C`` values. **Training** (``training=True``)::

    mean[c] = (1/n) sum x[..., c, ...]
    var[c]  = (1/n) sum (x[..., c, ...] - mean[c])^2          (biased)
    rstd[c] = 1 / sqrt(var[c] + eps)
    y[..., c, ...] = (x[..., c, ...] - mean[c]) * rstd[c] * weight[c] + bias[c]

When ``running_mean`` and ``running_var`` are given in training (both or neither), they are
updated with the factor ``f`` (``batch_stat_weight``, the weight of the *new* batch)::

    f = batch_stat_weight                  (a number in [0, 1])
    f = 1 / (num_batches_tracked + 1)      (batch_stat_weight == "cumulative")
    running_mean' = (1 - f) * running_mean + f * mean
    running_var'  = (1 - f) * running_var  + f * v
    v = var * n / (n - 1)   if running_var_estimator == "unbiased"   else   v = var
    num_batches_tracked' = num_batches_tracked + 1

Framework momentum ``m`` translates as: PyTorch ``momentum=m`` -> ``batch_stat_weight=m``;
Keras/Flax/ONNX ``momentum=m`` -> ``batch_stat_weight=1 - m``; PyTorch ``momentum=None`` ->
``"cumulative"`` (so the first tracked batch replaces the initial statistics). PyTorch stores
the ``"unbiased"`` running variance, Flax, Keras and ONNX the ``"biased"`` one.

**Evaluation** (``training=False``) uses the running statistics, which are then required::

    y = (x - running_mean) * rsqrt(running_var + eps) * weight + bias

Only ``y`` is differentiated; in evaluation the running statistics are constants, and in
training the updated running statistics are outputs, never differentiated.

>>> import numpy as np
>>> x = np.array([[1.0, 10.0], [3.0, 30.0]])
>>> out = forward(x, training=True, eps=0.0, running_mean=np.zeros(2), running_var=np.ones(2),
...               batch_stat_weight=0.1, running_var_estimator="unbiased")
>>> out["y"].tolist(), out["mean"].tolist(), out["var"].tolist()
([[-1.0, -1.0], [1.0, 1.0]], [2.0, 20.0], [1.0, 100.0])
>>> out["running_mean"].tolist(), out["running_var"].tolist(), float(out["num_batches_tracked"])
([0.2, 2.0], [1.1, 20.9], 1.0)
>>> forward(x, training=False, eps=0.0, running_mean=np.array([2.0, 20.0]),
...         running_var=np.array([4.0, 100.0]))["y"].tolist()
[[-0.5, -1.0], [0.5, 1.0]]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ._checks import (
    FloatArray,
    as_float64,
    check_axis,
    check_choice,
    check_eps,
    check_int,
    check_ndim,
    check_nonempty_reduction,
    check_shape,
    cotangent_like,
    directions,
    optional_float64,
)
from ._layout import Layout
from ._standardize import AffineNorm

PRIMALS = ("x", "weight", "bias")
"""Differentiable inputs, in call order; ``weight`` and ``bias`` may be None."""
STATS = ("mean", "var", "rstd", "running_mean", "running_var", "num_batches_tracked")
"""Statistics :func:`forward` may return beside ``y``: the batch ``mean``, ``var``, ``rstd``
(training, shape ``(C,)``) and the updated running state (training with running statistics;
``num_batches_tracked`` is a 0-d float64 array)."""
STATE = ("running_mean", "running_var")
"""State taken by keyword and returned updated in training, next to the step counter
``num_batches_tracked`` (an integer, returned as a 0-d float64 array)."""
NCHW_EXAMPLE: dict[str, int] = {"channel_axis": 1}
"""Hyperparameters of the canonical ``(N, C, H, W)`` example: the docs draw
``layout((N, C, H, W), **NCHW_EXAMPLE)`` as the figure of the reduced set."""
RUNNING_VAR_ESTIMATORS = ("biased", "unbiased")


@dataclass(frozen=True)
class _Call:
    """A validated call: float64 inputs, the channel layout and the update rule."""

    x: FloatArray
    weight: FloatArray | None
    bias: FloatArray | None
    norm: AffineNorm
    training: bool
    running_mean: FloatArray | None
    running_var: FloatArray | None
    num_batches_tracked: int
    factor: Fraction | None
    """The update factor ``f`` (exact); None unless training with running statistics."""
    unbiased: bool


def _check_factor(value: object, num_batches_tracked: int) -> Fraction:
    expected = "a number in [0, 1] or 'cumulative'"
    if isinstance(value, str):
        if value != "cumulative":
            raise ValueError(f"argument 'batch_stat_weight': got {value!r}, expected {expected}")
        return Fraction(1, num_batches_tracked + 1)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"argument 'batch_stat_weight': got {value!r}, expected {expected}")
    f = float(value)
    if not 0.0 <= f <= 1.0:  # also rejects NaN
        raise ValueError(f"argument 'batch_stat_weight': got {f!r}, expected {expected}")
    return Fraction(f)


def _check_running(name: str, value: object | None, channels: int) -> FloatArray | None:
    arr = optional_float64(name, value)
    check_shape(name, arr, (channels,))
    if name == "running_var" and arr is not None and bool(np.any(arr < 0)):
        raise ValueError(f"argument 'running_var': got negative entries {arr[arr < 0].tolist()}, "
                         "expected a variance >= 0 (or NaN)")
    return arr


def _setup(x: object, weight: object, bias: object, *, training: object, eps: object,
           channel_axis: object, running_mean: object, running_var: object,
           num_batches_tracked: object, batch_stat_weight: object,
           running_var_estimator: object) -> _Call:
    xa = as_float64("x", x)
    check_ndim("x", xa, 2)
    c = check_axis("channel_axis", channel_axis, xa.ndim)
    e = check_eps(eps)
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"argument 'training': got {training!r}, expected True or False")
    others = tuple(i for i in range(xa.ndim) if i != c)
    channels = xa.shape[c]
    w, b = optional_float64("weight", weight), optional_float64("bias", bias)
    check_shape("weight", w, (channels,))
    check_shape("bias", b, (channels,))
    rm = _check_running("running_mean", running_mean, channels)
    rv = _check_running("running_var", running_var, channels)
    if (rm is None) != (rv is None):
        given, missing = ("running_mean", "running_var") if rv is None else (
            "running_var", "running_mean")
        raise ValueError(f"argument {missing!r}: got None while {given!r} was given, expected "
                         "both running statistics or neither")
    k = check_int("num_batches_tracked", num_batches_tracked, minimum=0)
    factor = None if batch_stat_weight is None else _check_factor(batch_stat_weight, k)
    estimator = None if running_var_estimator is None else check_choice(
        "running_var_estimator", running_var_estimator, RUNNING_VAR_ESTIMATORS)
    n = math.prod(xa.shape[i] for i in others)
    tracking = bool(training) and rm is not None
    if training:
        check_nonempty_reduction("x", xa.shape, others)
    elif rm is None:
        raise ValueError("argument 'running_mean': got None with training=False, expected the "
                         "running statistics (running_mean and running_var) for evaluation")
    if tracking:
        if factor is None:
            raise ValueError("argument 'batch_stat_weight': got None while updating running "
                             "statistics, expected a number in [0, 1] or 'cumulative'")
        if estimator is None:
            raise ValueError("argument 'running_var_estimator': got None while updating running "
                             f"statistics, expected one of {list(RUNNING_VAR_ESTIMATORS)}")
        if estimator == "unbiased" and n == 1:
            raise ValueError(
                f"argument 'x': got shape {xa.shape} with one value per channel (n=1), expected "
                "n >= 2 for running_var_estimator='unbiased' (var * n / (n - 1) is undefined)")
    layout = Layout(shape=xa.shape, perm=(c, *others), stat_shape=(channels,), n=n,
                    param_axes=(c,))
    return _Call(x=xa, weight=w, bias=b, norm=AffineNorm(layout=layout, eps=e, center=True),
                 training=bool(training), running_mean=rm, running_var=rv,
                 num_batches_tracked=k, factor=factor if tracking else None,
                 unbiased=estimator == "unbiased")


def _blend(old: FloatArray, new: FloatArray, f: Fraction, scale: Fraction) -> FloatArray:
    """``(1 - f) * old + f * scale * new``, correctly rounded where every input is finite.

    Exact rational arithmetic keeps the update at 0.5 ulp even when ``old`` and ``new``
    nearly cancel; non-finite inputs take the IEEE formula so NaN and Inf propagate.
    """
    out = np.empty_like(old)
    for i, (a, b) in enumerate(zip(old.tolist(), new.tolist(), strict=True)):
        if math.isfinite(a) and math.isfinite(b):
            exact = (1 - f) * Fraction(a) + f * scale * Fraction(b)
            try:
                out[i] = float(exact)
            except OverflowError:
                out[i] = math.inf if exact > 0 else -math.inf
        else:
            out[i] = float(1 - f) * a + float(f * scale) * b
    return out


def _eval_scale(call: _Call) -> tuple[FloatArray, FloatArray]:
    """``(x - running_mean, sqrt(running_var + eps))`` broadcast against ``x``."""
    assert call.running_mean is not None
    assert call.running_var is not None
    lay = call.norm.layout
    centered = call.x - lay.param_view(call.running_mean)
    return centered, np.sqrt(lay.param_view(call.running_var) + call.norm.eps)


def _w(call: _Call) -> FloatArray | float:
    return 1.0 if call.weight is None else call.norm.layout.param_view(call.weight)


def layout(shape: tuple[int, ...], *, channel_axis: int = 1) -> Layout:
    """The reduction layout of the batch statistics in training (no computation).

    >>> from normspec.reference._layout import reduction_sets
    >>> reduction_sets(layout((2, 3))).tolist()              # one set per channel
    [[0, 1, 2], [0, 1, 2]]
    """
    call = _setup(np.zeros(shape), None, None, training=True, eps=0.0,
                  channel_axis=channel_axis, running_mean=None, running_var=None,
                  num_batches_tracked=0, batch_stat_weight=None, running_var_estimator=None)
    return call.norm.layout


def forward(x: object, weight: object = None, bias: object = None, *, training: bool,
            eps: float, channel_axis: int = 1, running_mean: object = None,
            running_var: object = None, num_batches_tracked: int = 0,
            batch_stat_weight: float | str | None = None,
            running_var_estimator: str | None = None) -> dict[str, FloatArray]:
    """Return ``y`` and the statistics; see the module docstring for the definition.

    Training returns ``mean``, ``var`` and ``rstd`` (shape ``(C,)``), plus ``running_mean``,
    ``running_var`` and ``num_batches_tracked`` when running statistics are given.
    Evaluation returns ``y`` only.
    """
    call = _setup(x, weight, bias, training=training, eps=eps, channel_axis=channel_axis,
                  running_mean=running_mean, running_var=running_var,
                  num_batches_tracked=num_batches_tracked, batch_stat_weight=batch_stat_weight,
                  running_var_estimator=running_var_estimator)
    # NaN and Inf propagate as IEEE says; the warnings NumPy would raise on the way are noise.
    with np.errstate(all="ignore"):
        if not call.training:
            centered, denom = _eval_scale(call)
            y = centered / denom * _w(call)
            if call.bias is not None:
                y = y + call.norm.layout.param_view(call.bias)
            return {"y": y}
        y, m = call.norm.forward(call.x, call.weight, call.bias)
        out = {"y": y, "mean": m.mean, "var": m.var, "rstd": m.rstd}
        if call.factor is not None:
            assert call.running_mean is not None
            assert call.running_var is not None
            n = call.norm.layout.n
            scale = Fraction(n, n - 1) if call.unbiased else Fraction(1)
            out["running_mean"] = _blend(call.running_mean, m.mean, call.factor, Fraction(1))
            out["running_var"] = _blend(call.running_var, m.var, call.factor, scale)
            out["num_batches_tracked"] = np.array(float(call.num_batches_tracked + 1))
        return out


def vjp(x: object, weight: object = None, bias: object = None, *, cotangent: object,
        training: bool, eps: float, channel_axis: int = 1, running_mean: object = None,
        running_var: object = None, num_batches_tracked: int = 0,
        batch_stat_weight: float | str | None = None,
        running_var_estimator: str | None = None) -> dict[str, FloatArray]:
    """Gradients of ``sum(cotangent * y)`` for each primal that is not None.

    Evaluation: ``dx = g * weight * rstd``, ``dweight = sum(g * (x - running_mean) * rstd)``,
    ``dbias = sum(g)`` with ``rstd = rsqrt(running_var + eps)``; sums over all non-channel axes.
    """
    call = _setup(x, weight, bias, training=training, eps=eps, channel_axis=channel_axis,
                  running_mean=running_mean, running_var=running_var,
                  num_batches_tracked=num_batches_tracked, batch_stat_weight=batch_stat_weight,
                  running_var_estimator=running_var_estimator)
    g = cotangent_like(cotangent, call.x.shape)
    with np.errstate(all="ignore"):
        if call.training:
            return call.norm.vjp(call.x, call.weight, call.bias, g)
        lay = call.norm.layout
        centered, denom = _eval_scale(call)
        grads = {"x": g * _w(call) / denom}
        if call.weight is not None:
            grads["weight"] = lay.param_sum(g * (centered / denom))
        if call.bias is not None:
            grads["bias"] = lay.param_sum(g)
        return grads


def jvp(x: object, weight: object = None, bias: object = None, *,
        tangent: Mapping[str, object], training: bool, eps: float, channel_axis: int = 1,
        running_mean: object = None, running_var: object = None, num_batches_tracked: int = 0,
        batch_stat_weight: float | str | None = None,
        running_var_estimator: str | None = None) -> FloatArray:
    """Directional derivative of ``y``; missing tangent keys are zero.

    Evaluation: ``(t_x * weight + (x - running_mean) * t_weight) * rstd + t_bias``.
    """
    call = _setup(x, weight, bias, training=training, eps=eps, channel_axis=channel_axis,
                  running_mean=running_mean, running_var=running_var,
                  num_batches_tracked=num_batches_tracked, batch_stat_weight=batch_stat_weight,
                  running_var_estimator=running_var_estimator)
    t = directions("tangent", tangent, {"x": call.x, "weight": call.weight, "bias": call.bias})
    with np.errstate(all="ignore"):
        if call.training:
            return call.norm.jvp(call.x, call.weight, call.bias, t)
        lay = call.norm.layout
        centered, denom = _eval_scale(call)
        tx, tw, tb = t["x"], t.get("weight"), t.get("bias")
        assert tx is not None
        out = tx * _w(call) / denom
        if tw is not None:
            out = out + centered / denom * lay.param_view(tw)
        if tb is not None:
            out = out + lay.param_view(tb)
        return out


def second_order(x: object, weight: object = None, bias: object = None, *, cotangent: object,
                 tangent: Mapping[str, object], training: bool, eps: float,
                 channel_axis: int = 1, running_mean: object = None, running_var: object = None,
                 num_batches_tracked: int = 0, batch_stat_weight: float | str | None = None,
                 running_var_estimator: str | None = None) -> dict[str, FloatArray]:
    """Derivative of :func:`vjp` (``cotangent`` held fixed) along ``tangent``.

    Evaluation is bilinear in (x, weight), so only the cross terms remain:
    ``d(dx) = g * t_weight * rstd``, ``d(dweight) = sum(g * t_x * rstd)``, ``d(dbias) = 0``.
    """
    call = _setup(x, weight, bias, training=training, eps=eps, channel_axis=channel_axis,
                  running_mean=running_mean, running_var=running_var,
                  num_batches_tracked=num_batches_tracked, batch_stat_weight=batch_stat_weight,
                  running_var_estimator=running_var_estimator)
    g = cotangent_like(cotangent, call.x.shape)
    t = directions("tangent", tangent, {"x": call.x, "weight": call.weight, "bias": call.bias})
    with np.errstate(all="ignore"):
        if call.training:
            return call.norm.second_order(call.x, call.weight, call.bias, g, t)
        lay = call.norm.layout
        _, denom = _eval_scale(call)
        tx, tw = t["x"], t.get("weight")
        assert tx is not None
        out = {"x": g * lay.param_view(tw) / denom if tw is not None else np.zeros_like(call.x)}
        if call.weight is not None:
            out["weight"] = lay.param_sum(g * tx / denom)
        if call.bias is not None:
            out["bias"] = np.zeros_like(call.bias)
        return out
