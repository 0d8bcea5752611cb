"""Batch-instance normalization (Nam & Kim, 2018): a per-channel blend of batch and instance norm.

Axis 0 is the batch axis and ``channel_axis`` (default 1; -1 for channels-last) the channel axis;
the other axes are spatial (at least one). With ``z_bn`` batch_norm's normalized input (batch
statistics in training, running statistics in evaluation, exactly as :mod:`.batch_norm`) and
``z_in`` instance_norm's (always the statistics of each (sample, channel))::

    r[c] = clip(rho[c], 0, 1) = min(max(rho[c], 0), 1)
    y[..., c, ...] = (r[c] * z_bn + (1 - r[c]) * z_in) * weight[c] + bias[c]

``rho`` is a differentiable primal of shape ``(C,)``; the paper keeps it in ``[0, 1]`` by
clamping it after every optimizer step, and the forward clips it so that a value outside
``[0, 1]`` still gives a convex blend. The derivative of the clip is taken as
``clip'(rho) = 1`` for ``0 <= rho <= 1`` (both ends included, PyTorch's ``clamp``) and 0
outside (NaN for NaN): a gate clamped exactly to 0 or 1 keeps its full gradient and can move
back inside, as in the paper's training loop.

The batch part carries batch_norm's state: with ``training=True`` and running statistics, they
are updated from the batch statistics (``batch_stat_weight``, ``running_var_estimator``,
``num_batches_tracked``, exactly batch_norm's rule); evaluation (``training=False``) needs them.

>>> import numpy as np
>>> x = np.array([[[-7.0, -1.0]], [[1.0, 7.0]]])         # N=2, C=1, L=2
>>> forward(x, np.array([0.0]), training=True, eps=0.0)["y"].tolist()   # instance norm
[[[-1.0, 1.0]], [[-1.0, 1.0]]]
>>> forward(x, np.array([7.0]), training=True, eps=0.0)["y"].round(12).tolist()   # clip: BN
[[[-1.4, -0.2]], [[0.2, 1.4]]]
>>> forward(x, np.array([0.5]), training=True, eps=0.0)["y"].round(12).tolist()
[[[-1.2, 0.4]], [[-0.4, 1.2]]]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import batch_norm, instance_norm
from ._checks import (
    FloatArray,
    as_float64,
    check_axis,
    check_shape,
    cotangent_like,
    directions,
    ieee,
    optional_float64,
)
from ._layout import Layout

PRIMALS = ("x", "rho", "weight", "bias")
"""Differentiable inputs, in call order; ``rho`` is required (no default), ``weight`` and
``bias`` may be None (1 and 0)."""
STATE = ("running_mean", "running_var")
"""Float state inputs of the batch part, passed by keyword and returned updated in training."""
STATS = ("mean", "var", "rstd", "instance_mean", "instance_var", "instance_rstd",
         "running_mean", "running_var", "num_batches_tracked")
"""Statistics :func:`forward` may return beside ``y``: the batch ``mean``, ``var``, ``rstd``
(training, shape ``(C,)``), the instance statistics (shape ``(N, C)``, always) and the
updated running state (training with running statistics)."""
NCHW_EXAMPLE: dict[str, int] = {"channel_axis": 1}
"""Hyperparameters of the canonical ``(N, C, H, W)`` example; :func:`layout` is the batch part's
reduction (the instance part's is :func:`instance_layout`)."""


def input_shapes(shape: tuple[int, ...], hyper: Mapping[str, object]
                 ) -> dict[str, tuple[int, ...]]:
    """``(C,)`` for rho, weight, bias and both running statistics."""
    c = check_axis("channel_axis", hyper.get("channel_axis", 1), len(shape))
    return dict.fromkeys(("rho", "weight", "bias", *STATE), (shape[c],))


@dataclass(frozen=True)
class _Call:
    """A validated call: the clipped gate, the two branches' weights and everything else."""

    x: FloatArray
    rho: FloatArray
    weight: FloatArray | None
    bias: FloatArray | None
    r: FloatArray
    """``clip(rho, 0, 1)``."""
    slope: FloatArray
    """``clip'(rho)``: 1 on ``[0, 1]``, 0 outside, NaN for NaN."""
    w: FloatArray
    """``weight`` (ones when None)."""
    bn: dict[str, Any]
    """batch_norm's keyword arguments (training, eps, channel_axis, state, update rule)."""
    inorm: dict[str, Any]
    """instance_norm's keyword arguments."""
    layout: Layout


def _setup(x: object, rho: object, weight: object, bias: object, *, training: object,
           eps: object, channel_axis: object, running_mean: object, running_var: object,
           num_batches_tracked: object, batch_stat_weight: object,
           running_var_estimator: object) -> _Call:
    xa = as_float64("x", x)
    bn = {"training": training, "eps": eps, "channel_axis": channel_axis,
          "running_mean": running_mean, "running_var": running_var,
          "num_batches_tracked": num_batches_tracked, "batch_stat_weight": batch_stat_weight,
          "running_var_estimator": running_var_estimator}
    inorm = {"eps": eps, "channel_axis": channel_axis}
    # The two parts validate their own arguments (axes, eps, state, spatial size) with the
    # messages of their own pages; the layouts cost no computation.
    lay = batch_norm.layout(xa.shape, channel_axis=channel_axis)  # type: ignore[arg-type]
    instance_norm.layout(xa.shape, channel_axis=channel_axis)  # type: ignore[arg-type]
    channels = lay.param_shape[0]
    if rho is None:
        raise ValueError(f"argument 'rho': got None, expected an array of shape ({channels},) "
                         "(the batch/instance gate)")
    ra = as_float64("rho", rho)
    check_shape("rho", ra, (channels,))
    w, b = optional_float64("weight", weight), optional_float64("bias", bias)
    check_shape("weight", w, (channels,))
    check_shape("bias", b, (channels,))
    with np.errstate(invalid="ignore"):
        inside = (ra >= 0.0) & (ra <= 1.0)
    slope = np.where(np.isnan(ra), np.nan, inside.astype(np.float64))
    return _Call(x=xa, rho=ra, weight=w, bias=b, r=np.clip(ra, 0.0, 1.0), slope=slope,
                 w=np.ones(channels) if w is None else w, bn=bn, inorm=inorm, layout=lay)


def layout(shape: tuple[int, ...], *, channel_axis: int = 1) -> Layout:
    """The reduction layout of the batch part (no computation).

    >>> from normspec.reference._layout import reduction_sets
    >>> reduction_sets(layout((2, 2, 3))).tolist()           # one set per channel
    [[[0, 0, 0], [1, 1, 1]], [[0, 0, 0], [1, 1, 1]]]
    """
    instance_norm.layout(shape, channel_axis=channel_axis)  # x must have spatial axes
    return batch_norm.layout(shape, channel_axis=channel_axis)


def instance_layout(shape: tuple[int, ...], *, channel_axis: int = 1) -> Layout:
    """The reduction layout of the instance part: one set per (sample, channel)."""
    return instance_norm.layout(shape, channel_axis=channel_axis)


def forward(x: object, rho: object, weight: object = None, bias: object = None, *,
            training: bool, eps: float, channel_axis: int = 1, running_mean: object = None,
            running_var: object = None, num_batches_tracked: int = 0,
            batch_stat_weight: float | str | None = None,
            running_var_estimator: str | None = None) -> dict[str, FloatArray]:
    """Return ``y`` and the statistics; see the module docstring for the definition.

    Training returns batch_norm's ``mean``, ``var``, ``rstd`` (and the updated running state
    when it is given); both modes return ``instance_mean``, ``instance_var``,
    ``instance_rstd`` of shape ``(N, C)``.
    """
    call = _setup(x, rho, weight, bias, training=training, eps=eps, channel_axis=channel_axis,
                  running_mean=running_mean, running_var=running_var,
                  num_batches_tracked=num_batches_tracked, batch_stat_weight=batch_stat_weight,
                  running_var_estimator=running_var_estimator)
    with np.errstate(all="ignore"):
        out = batch_norm.forward(call.x, call.r * call.w, None, **call.bn)
        ins = instance_norm.forward(call.x, (1.0 - call.r) * call.w, None, **call.inorm)
        y = out.pop("y") + ins["y"]
        if call.bias is not None:
            y = y + call.layout.param_view(call.bias)
    return {"y": y, **out, "instance_mean": ins["mean"], "instance_var": ins["var"],
            "instance_rstd": ins["rstd"]}


def _branch_weights(call: _Call, t_rho: FloatArray, t_w: FloatArray | None
                    ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Tangents of the two branches' effective weights ``r w`` and ``(1 - r) w``, and ``r'``."""
    r_dot = call.slope * t_rho
    tw = np.zeros_like(call.w) if t_w is None else t_w
    return tw * call.r + call.w * r_dot, tw * (1.0 - call.r) - call.w * r_dot, r_dot


@ieee
def vjp(x: object, rho: object, weight: object = None, bias: object = None, *,
        cotangent: object, training: bool, eps: float, channel_axis: int = 1,
        running_mean: object = None, running_var: object = None, num_batches_tracked: int = 0,
        batch_stat_weight: float | str | None = None,
        running_var_estimator: str | None = None) -> dict[str, FloatArray]:
    """Gradients of ``sum(cotangent * y)`` for each primal that is not None.

    With ``S_bn = sum(g z_bn)`` and ``S_in = sum(g z_in)`` per channel:
    ``dx = J_bn(g r w) + J_in(g (1 - r) w)``, ``drho = clip'(rho) w (S_bn - S_in)``,
    ``dweight = r S_bn + (1 - r) S_in``, ``dbias = sum(g)``.
    """
    call = _setup(x, rho, weight, bias, training=training, eps=eps, channel_axis=channel_axis,
                  running_mean=running_mean, running_var=running_var,
                  num_batches_tracked=num_batches_tracked, batch_stat_weight=batch_stat_weight,
                  running_var_estimator=running_var_estimator)
    g = cotangent_like(cotangent, call.x.shape)
    gb = batch_norm.vjp(call.x, call.r * call.w, None, cotangent=g, **call.bn)
    gi = instance_norm.vjp(call.x, (1.0 - call.r) * call.w, None, cotangent=g, **call.inorm)
    s_bn, s_in = gb["weight"], gi["weight"]
    grads = {"x": gb["x"] + gi["x"], "rho": call.slope * call.w * (s_bn - s_in)}
    if call.weight is not None:
        grads["weight"] = call.r * s_bn + (1.0 - call.r) * s_in
    if call.bias is not None:
        grads["bias"] = call.layout.param_sum(g)
    return grads


@ieee
def jvp(x: object, rho: object, weight: object = None, bias: object = None, *,
        tangent: Mapping[str, object], training: bool, eps: float, channel_axis: int = 1,
        running_mean: object = None, running_var: object = None, num_batches_tracked: int = 0,
        batch_stat_weight: float | str | None = None,
        running_var_estimator: str | None = None) -> FloatArray:
    """Directional derivative of ``y``; missing tangent keys are zero.

    ``r w J_bn t_x + (1 - r) w J_in t_x + z_bn (t_w r + w r') + z_in (t_w (1 - r) - w r')
    + t_bias`` with ``r' = clip'(rho) t_rho``.
    """
    call = _setup(x, rho, weight, bias, training=training, eps=eps, channel_axis=channel_axis,
                  running_mean=running_mean, running_var=running_var,
                  num_batches_tracked=num_batches_tracked, batch_stat_weight=batch_stat_weight,
                  running_var_estimator=running_var_estimator)
    t = directions("tangent", tangent, {"x": call.x, "rho": call.rho, "weight": call.weight,
                                        "bias": call.bias})
    t_rho = t["rho"]
    assert t_rho is not None
    tw_bn, tw_in, _ = _branch_weights(call, t_rho, t.get("weight"))
    out = (batch_norm.jvp(call.x, call.r * call.w, None, tangent={"x": t["x"], "weight": tw_bn},
                          **call.bn)
           + instance_norm.jvp(call.x, (1.0 - call.r) * call.w, None,
                               tangent={"x": t["x"], "weight": tw_in}, **call.inorm))
    tb = t.get("bias")
    if tb is not None:
        out = out + call.layout.param_view(tb)
    return out


@ieee
def second_order(x: object, rho: object, weight: object = None, bias: object = None, *,
                 cotangent: object, tangent: Mapping[str, object], training: bool, eps: float,
                 channel_axis: int = 1, running_mean: object = None, running_var: object = None,
                 num_batches_tracked: int = 0, batch_stat_weight: float | str | None = None,
                 running_var_estimator: str | None = None) -> dict[str, FloatArray]:
    """Derivative of :func:`vjp` (``cotangent`` held fixed) along ``tangent``.

    Each branch is batch_norm's or instance_norm's second order with the branch weight's
    tangent; ``S' = sum(g z')`` per branch, and ``clip'' = 0``:
    ``d(drho) = clip'(rho) (t_w (S_bn - S_in) + w (S_bn' - S_in'))``,
    ``d(dweight) = r' (S_bn - S_in) + r S_bn' + (1 - r) S_in'``, ``d(dbias) = 0``.
    """
    call = _setup(x, rho, weight, bias, training=training, eps=eps, channel_axis=channel_axis,
                  running_mean=running_mean, running_var=running_var,
                  num_batches_tracked=num_batches_tracked, batch_stat_weight=batch_stat_weight,
                  running_var_estimator=running_var_estimator)
    g = cotangent_like(cotangent, call.x.shape)
    t = directions("tangent", tangent, {"x": call.x, "rho": call.rho, "weight": call.weight,
                                        "bias": call.bias})
    t_rho, t_w = t["rho"], t.get("weight")
    assert t_rho is not None
    tw_bn, tw_in, r_dot = _branch_weights(call, t_rho, t_w)
    w_bn, w_in = call.r * call.w, (1.0 - call.r) * call.w
    first_bn = batch_norm.vjp(call.x, w_bn, None, cotangent=g, **call.bn)["weight"]
    first_in = instance_norm.vjp(call.x, w_in, None, cotangent=g, **call.inorm)["weight"]
    so_bn = batch_norm.second_order(call.x, w_bn, None, cotangent=g,
                                    tangent={"x": t["x"], "weight": tw_bn}, **call.bn)
    so_in = instance_norm.second_order(call.x, w_in, None, cotangent=g,
                                       tangent={"x": t["x"], "weight": tw_in}, **call.inorm)
    diff, diff_dot = first_bn - first_in, so_bn["weight"] - so_in["weight"]
    tw = np.zeros_like(call.w) if t_w is None else t_w
    out = {"x": so_bn["x"] + so_in["x"],
           "rho": call.slope * (tw * diff + call.w * diff_dot)}
    if call.weight is not None:
        out["weight"] = (r_dot * diff + call.r * so_bn["weight"]
                         + (1.0 - call.r) * so_in["weight"])
    if call.bias is not None:
        out["bias"] = np.zeros_like(call.bias)
    return out
