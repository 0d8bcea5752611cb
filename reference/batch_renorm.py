"""Batch renormalization (Ioffe, 2017): batch norm corrected towards the running statistics.

``C = x.shape[channel_axis]``; each channel's reduction set is every other axis, ``n = x.size / C``
values, as in :mod:`.batch_norm`. **Training** (``training=True``) needs the running statistics
*before* this step, ``running_mean`` and ``running_var``::

    mean[c]  = (1/n) sum x[..., c, ...]
    var[c]   = (1/n) sum (x[..., c, ...] - mean[c])^2              (biased)
    sigma[c] = sqrt(var[c] + eps)                    rstd[c] = 1 / sigma[c]
    sigma_running[c] = sqrt(running_var[c] + eps)    (eps added once, inside the square root)
    r[c] = clip(sigma[c] / sigma_running[c], 1/rmax, rmax)
    d[c] = clip((mean[c] - running_mean[c]) / sigma_running[c], -dmax, dmax)
    y[..., c, ...] = ((x[..., c, ...] - mean[c]) / sigma[c] * r[c] + d[c]) * weight[c] + bias[c]

with ``clip(v, lo, hi) = min(max(v, lo), hi)`` (NaN stays NaN). ``rmax >= 1`` and ``dmax >= 0``
(``+inf`` allowed: no clipping) are the caller's values for *this* step; the schedule that
relaxes them during training is the caller's. ``rmax = 1, dmax = 0`` gives ``r = 1, d = 0``:
plain batch norm.

**r and d are constants for the derivatives** (the paper's stop_gradient), so the VJP, JVP and
second order are batch norm's in training with the normalized value scaled by ``r`` and
shifted by ``d`` (see :func:`vjp`, :func:`jvp`, :func:`second_order`).

**State.** Every training call updates the running statistics exactly as :mod:`.batch_norm`
does (``batch_stat_weight`` the weight of the new batch or ``"cumulative"``,
``running_var_estimator`` ``"biased"`` or ``"unbiased"``, ``num_batches_tracked + 1``); the
returned ``r`` and ``d`` come from the statistics passed in, never from the updated ones.

**Evaluation** (``training=False``) is :mod:`.batch_norm`'s evaluation with the running
statistics: ``y = (x - running_mean) / sqrt(running_var + eps) * weight + bias``; ``rmax`` and
``dmax`` are not used.

>>> import numpy as np
>>> x = np.array([[1.0, 10.0], [3.0, 30.0]])
>>> out = forward(x, training=True, eps=0.0, running_mean=np.array([0.0, 20.0]),
...               running_var=np.array([4.0, 100.0]), batch_stat_weight=0.5,
...               running_var_estimator="biased", rmax=3.0, dmax=0.5)
>>> out["r"].tolist(), out["d"].tolist()      # sigma = [1, 10], sigma_running = [2, 10]
([0.5, 1.0], [0.5, 0.0])
>>> out["y"].tolist()                         # z * r + d with z = -1, +1
[[0.0, -1.0], [1.0, 1.0]]
>>> out["running_mean"].tolist(), out["running_var"].tolist()
([1.0, 20.0], [2.5, 100.0])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import batch_norm as _bn
from ._checks import (
    FloatArray,
    as_float64,
    check_shape,
    cotangent_like,
    directions,
    optional_float64,
)
from ._layout import Layout

PRIMALS = ("x", "weight", "bias")
"""Differentiable inputs, in call order; ``weight`` and ``bias`` may be None."""
STATE = ("running_mean", "running_var")
"""Float state taken by keyword and returned updated by a training call; the step counter
``num_batches_tracked`` is state too (returned incremented, a 0-d float64 array)."""
STATS = ("mean", "var", "rstd", "r", "d", "running_mean", "running_var", "num_batches_tracked")
"""What a training call returns beside ``y``: the batch ``mean``, ``var``, ``rstd``, the
corrections ``r`` and ``d`` (all shape ``(C,)``) and the updated state. Evaluation returns
``y`` only."""
NCHW_EXAMPLE: dict[str, int] = {"channel_axis": 1}
"""Hyperparameters of the canonical ``(N, C, H, W)`` example (the reduced set of the figure)."""


def _check_bound(name: str, value: object, minimum: float) -> float | None:
    """``rmax`` (>= 1) or ``dmax`` (>= 0): a real number, ``+inf`` meaning no clipping."""
    if value is None:
        return None
    expected = f"a number >= {minimum:g} (+inf: no clipping)"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"argument {name!r}: got {value!r}, expected {expected}")
    out = float(value)
    if not out >= minimum:  # also rejects NaN
        raise ValueError(f"argument {name!r}: got {out!r}, expected {expected}")
    return out


def _check_renorm(training: object, running_mean: object, rmax: object, dmax: object
                  ) -> tuple[float, float] | None:
    """The validated ``(rmax, dmax)`` in training, None in evaluation.

    Batch norm's own checks (shapes, eps, the update rule) run in :func:`.batch_norm.forward`;
    these are the ones renormalization adds.
    """
    r_max = _check_bound("rmax", rmax, 1.0)
    d_max = _check_bound("dmax", dmax, 0.0)
    if training is not True and training is not np.True_:
        return None
    if running_mean is None:
        raise ValueError("argument 'running_mean': got None with training=True, expected the "
                         "running statistics before this step (r and d are computed from them)")
    if r_max is None:
        raise ValueError("argument 'rmax': got None with training=True, expected a number >= 1 "
                         "(the caller's value for this step; 1 clips r to 1)")
    if d_max is None:
        raise ValueError("argument 'dmax': got None with training=True, expected a number >= 0 "
                         "(the caller's value for this step; 0 clips d to 0)")
    return r_max, d_max


def _mean_offset(rows: FloatArray, center: FloatArray) -> FloatArray:
    """``mean(row) - center`` per row, from one correctly rounded sum.

    ``sum(x) - n * center`` is formed exactly (``math.fsum``), so the offset keeps full
    precision when the batch mean and the running mean agree in many leading digits (an input
    offset of 1e8 with a spread of 1); the difference of two rounded means would not.
    """
    n = rows.shape[1]
    out = np.empty(rows.shape[0])
    for i, (row, c) in enumerate(zip(rows, center.tolist(), strict=True)):
        if math.isfinite(c) and bool(np.isfinite(row).all()):
            try:
                out[i] = math.fsum([*row.tolist(), *([-c] * n)]) / n
                continue
            except OverflowError:
                pass
        out[i] = float(np.mean(row)) - c  # non-finite values (or an overflow): IEEE as is
    return out


def _corrections(lay: Layout, x: FloatArray, var: FloatArray, running_mean: FloatArray,
                 running_var: FloatArray, eps: float, rmax: float, dmax: float
                 ) -> tuple[FloatArray, FloatArray]:
    """``r`` and ``d`` (shape ``(C,)``) from the batch and the *given* running statistics."""
    with np.errstate(all="ignore"):
        # sigma / sigma_running under one square root: sqrt((var + eps) / (running_var + eps))
        ratio = np.sqrt((var + eps) / (running_var + eps))
        offset = _mean_offset(lay.to_rows(x), running_mean) / np.sqrt(running_var + eps)
        r = np.minimum(np.maximum(ratio, 1.0 / rmax), rmax)
        d = np.minimum(np.maximum(offset, -dmax), dmax)
    return r, d


def _bn_hyper(training: bool, eps: float, channel_axis: int, running_mean: object,
              running_var: object, num_batches_tracked: int, batch_stat_weight: float | str | None,
              running_var_estimator: str | None) -> dict[str, Any]:
    return {"training": training, "eps": eps, "channel_axis": channel_axis,
            "running_mean": running_mean, "running_var": running_var,
            "num_batches_tracked": num_batches_tracked, "batch_stat_weight": batch_stat_weight,
            "running_var_estimator": running_var_estimator}


@dataclass(frozen=True)
class _Train:
    """A validated training call: the layout, the inputs, ``z`` and the statistics."""

    lay: Layout
    x: FloatArray
    weight: FloatArray | None
    bias: FloatArray | None
    z: FloatArray
    stats: dict[str, FloatArray]
    """batch norm's ``mean``, ``var``, ``rstd`` and updated state, plus ``r`` and ``d``."""

    def view(self, name: str) -> FloatArray:
        return self.lay.param_view(self.stats[name])


def _train(x: object, weight: object, bias: object, hyper: Mapping[str, Any],
           bounds: tuple[float, float]) -> _Train:
    """Batch norm's training call without affine (its ``y`` is then ``z``), plus r and d."""
    out = _bn.forward(x, **hyper)
    xa = as_float64("x", x)
    lay = _bn.layout(xa.shape, channel_axis=hyper["channel_axis"])
    w, b = optional_float64("weight", weight), optional_float64("bias", bias)
    check_shape("weight", w, lay.param_shape)
    check_shape("bias", b, lay.param_shape)
    rm = as_float64("running_mean", hyper["running_mean"])
    rv = as_float64("running_var", hyper["running_var"])
    out["r"], out["d"] = _corrections(lay, xa, out["var"], rm, rv,
                                      float(hyper["eps"]), *bounds)
    z = out.pop("y")
    return _Train(lay=lay, x=xa, weight=w, bias=b, z=z, stats=out)


def layout(shape: tuple[int, ...], *, channel_axis: int = 1) -> Layout:
    """The reduction layout of the batch statistics (batch norm's; no computation)."""
    return _bn.layout(shape, channel_axis=channel_axis)


def input_shapes(shape: tuple[int, ...], hyper: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Shapes of ``weight``, ``bias`` and the running statistics for an ``x`` of ``shape``."""
    lay = layout(tuple(shape), channel_axis=hyper.get("channel_axis", 1))
    channels = lay.param_shape
    return dict.fromkeys(("weight", "bias", "running_mean", "running_var"), channels)


def forward(x: object, weight: object = None, bias: object = None, *, training: bool,
            eps: float, channel_axis: int = 1, running_mean: object = None,
            running_var: object = None, num_batches_tracked: int = 0,
            batch_stat_weight: float | str | None = None,
            running_var_estimator: str | None = None, rmax: float | None = None,
            dmax: float | None = None) -> dict[str, FloatArray]:
    """Return ``y`` and, in training, the statistics of :data:`STATS` (module docstring)."""
    bounds = _check_renorm(training, running_mean, rmax, dmax)
    hyper = _bn_hyper(training, eps, channel_axis, running_mean, running_var,
                      num_batches_tracked, batch_stat_weight, running_var_estimator)
    if bounds is None:
        return _bn.forward(x, weight, bias, **hyper)
    tr = _train(x, weight, bias, hyper, bounds)
    with np.errstate(all="ignore"):
        y = tr.z * tr.view("r") + tr.view("d")
        if tr.weight is not None:
            y = y * tr.lay.param_view(tr.weight)
        if tr.bias is not None:
            y = y + tr.lay.param_view(tr.bias)
    return {"y": y, **tr.stats}


def vjp(x: object, weight: object = None, bias: object = None, *, cotangent: object,
        training: bool, eps: float, channel_axis: int = 1, running_mean: object = None,
        running_var: object = None, num_batches_tracked: int = 0,
        batch_stat_weight: float | str | None = None,
        running_var_estimator: str | None = None, rmax: float | None = None,
        dmax: float | None = None) -> dict[str, FloatArray]:
    """Gradients of ``sum(cotangent * y)`` with ``r`` and ``d`` held constant.

    Training, with batch norm's Jacobian ``J`` of ``z`` and ``ĝ = g * weight``::

        dx      = r * J ĝ = r * rstd * (ĝ - mean(ĝ) - z mean(z ĝ))
        dweight = sum(g * (z r + d)) = r * sum(g z) + d * sum(g)
        dbias   = sum(g)

    Evaluation: batch norm's evaluation gradients.
    """
    bounds = _check_renorm(training, running_mean, rmax, dmax)
    hyper = _bn_hyper(training, eps, channel_axis, running_mean, running_var,
                      num_batches_tracked, batch_stat_weight, running_var_estimator)
    if bounds is None:
        return _bn.vjp(x, weight, bias, cotangent=cotangent, **hyper)
    tr = _train(x, weight, bias, hyper, bounds)
    g = cotangent_like(cotangent, tr.x.shape)
    # batch norm's training gradients (no running statistics: nothing to update)
    grads = _bn.vjp(tr.x, tr.weight, tr.bias, cotangent=g, training=True, eps=eps,
                    channel_axis=channel_axis)
    with np.errstate(all="ignore"):
        grads["x"] = grads["x"] * tr.view("r")
        if "weight" in grads:
            grads["weight"] = tr.stats["r"] * grads["weight"] + tr.stats["d"] * tr.lay.param_sum(g)
    return grads


def jvp(x: object, weight: object = None, bias: object = None, *,
        tangent: Mapping[str, object], training: bool, eps: float, channel_axis: int = 1,
        running_mean: object = None, running_var: object = None, num_batches_tracked: int = 0,
        batch_stat_weight: float | str | None = None,
        running_var_estimator: str | None = None, rmax: float | None = None,
        dmax: float | None = None) -> FloatArray:
    """Directional derivative of ``y`` with ``r`` and ``d`` constant; missing keys are zero.

    Training: ``r * weight * J t_x + (z r + d) * t_weight + t_bias``.
    """
    bounds = _check_renorm(training, running_mean, rmax, dmax)
    hyper = _bn_hyper(training, eps, channel_axis, running_mean, running_var,
                      num_batches_tracked, batch_stat_weight, running_var_estimator)
    if bounds is None:
        return _bn.jvp(x, weight, bias, tangent=tangent, **hyper)
    tr = _train(x, weight, bias, hyper, bounds)
    t = directions("tangent", tangent, {"x": tr.x, "weight": tr.weight, "bias": tr.bias})
    r, d = tr.view("r"), tr.view("d")
    # batch norm's JVP along t_x alone is weight * J t_x
    dy = _bn.jvp(tr.x, tr.weight, tr.bias, tangent={"x": t["x"]}, training=True, eps=eps,
                 channel_axis=channel_axis)
    tw, tb = t["weight"], t["bias"]
    with np.errstate(all="ignore"):
        dy = dy * r
        if tw is not None:
            dy = dy + (tr.z * r + d) * tr.lay.param_view(tw)
        if tb is not None:
            dy = dy + tr.lay.param_view(tb)
    return dy


def second_order(x: object, weight: object = None, bias: object = None, *, cotangent: object,
                 tangent: Mapping[str, object], training: bool, eps: float,
                 channel_axis: int = 1, running_mean: object = None, running_var: object = None,
                 num_batches_tracked: int = 0, batch_stat_weight: float | str | None = None,
                 running_var_estimator: str | None = None, rmax: float | None = None,
                 dmax: float | None = None) -> dict[str, FloatArray]:
    """Derivative of :func:`vjp` (``cotangent`` fixed) along ``tangent``, r and d constant.

    Training: batch norm's second order with its ``x`` and ``weight`` entries scaled by ``r``
    (``d(dx) = r * d(J ĝ)``, ``d(dweight) = r * sum(g J t_x)``; ``d`` enters the VJP only
    through ``sum(g)``, which does not move), and ``d(dbias) = 0``.
    """
    bounds = _check_renorm(training, running_mean, rmax, dmax)
    hyper = _bn_hyper(training, eps, channel_axis, running_mean, running_var,
                      num_batches_tracked, batch_stat_weight, running_var_estimator)
    if bounds is None:
        return _bn.second_order(x, weight, bias, cotangent=cotangent,
                                tangent=tangent, **hyper)
    tr = _train(x, weight, bias, hyper, bounds)
    grads = _bn.second_order(tr.x, tr.weight, tr.bias, cotangent=cotangent, tangent=tangent,
                             training=True, eps=eps, channel_axis=channel_axis)
    with np.errstate(all="ignore"):
        grads["x"] = grads["x"] * tr.view("r")
        if "weight" in grads:
            grads["weight"] = tr.stats["r"] * grads["weight"]
    return grads
