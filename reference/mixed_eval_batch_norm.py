"""Batch normalization evaluated with alpha-mixed statistics (the train-test disparity fix).

``C = x.shape[channel_axis]``; for each channel ``c`` the batch statistics are taken over the
``n = x.size / C`` values of that channel, and mixed with the running statistics::

    batch_mean[c] = (1/n) sum x[..., c, ...]
    batch_var[c]  = (1/n) sum (x[..., c, ...] - batch_mean[c])^2                  (biased)
    mean[c] = alpha * batch_mean[c] + (1 - alpha) * running_mean[c]
    var[c]  = alpha * (batch_var[c] + batch_mean[c]^2)
              + (1 - alpha) * (running_var[c] + running_mean[c]^2) - mean[c]^2
            = alpha * batch_var[c] + (1 - alpha) * running_var[c]
              + alpha * (1 - alpha) * (batch_mean[c] - running_mean[c])^2
    rstd[c] = 1 / sqrt(var[c] + eps)
    y[..., c, ...] = (x[..., c, ...] - mean[c]) * rstd[c] * weight[c] + bias[c]

``var`` is the variance of the *mixture* of two distributions, the batch (weight ``alpha``) and
the running component (weight ``1 - alpha``), whose second moment is taken as
``running_var + running_mean^2``; it is not the mixture of the variances. The second form (the
law of total variance) is what is computed: three non-negative terms, no cancellation.
``running_var`` is used as given, as the running component's variance: the spec's ``biased``
estimator makes that component the population of the tracked batches; a PyTorch (``unbiased``)
``running_var`` is taken as is, exactly as PyTorch's own evaluation takes it, so ``alpha = 0`` is
``batch_norm`` evaluation whatever estimator filled it.

``alpha = 0`` is batch_norm's evaluation, ``alpha = 1`` batch_norm's training normalization
(the biased batch variance); ``running_mean`` and ``running_var`` are inputs only: nothing is
updated, nothing is differentiated with respect to them. The batch statistics depend on ``x``,
weighted by ``alpha``, so the gradient flows through them.

>>> import numpy as np
>>> x = np.array([[1.0, 10.0], [3.0, 30.0]])
>>> out = forward(x, alpha=0.5, eps=0.0, running_mean=np.array([0.0, 20.0]),
...               running_var=np.array([2.0, 100.0]))
>>> out["mean"].tolist(), out["var"].tolist()        # 0.5*1 + 0.5*2 + 0.25*(2-0)^2 = 2.5
([1.0, 20.0], [2.5, 100.0])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from . import batch_norm
from ._checks import (
    FloatArray,
    as_float64,
    check_axis,
    check_eps,
    check_ndim,
    check_shape,
    cotangent_like,
    directions,
    ieee,
    optional_float64,
)
from ._layout import Layout, row_mean
from ._standardize import Moments, _apply_jacobian, _second_order_rows, moments

PRIMALS = ("x", "weight", "bias")
"""Differentiable inputs, in call order; ``weight`` and ``bias`` may be None."""
STATE = ("running_mean", "running_var")
"""Float state inputs, passed by keyword; evaluation reads them and returns no update."""
STATS = ("mean", "var", "rstd", "batch_mean", "batch_var")
"""Statistics returned beside ``y``, each of shape ``(C,)``: the mixed ``mean``, ``var`` and
``rstd`` that normalize, and the batch's own ``batch_mean`` and ``batch_var``."""
NCHW_EXAMPLE: dict[str, int] = {"channel_axis": 1}
"""Hyperparameters of the canonical ``(N, C, H, W)`` example: the docs draw
``layout((N, C, H, W), **NCHW_EXAMPLE)`` as the figure of the batch statistics' sets."""


def input_shapes(shape: tuple[int, ...], hyper: Mapping[str, object]
                 ) -> dict[str, tuple[int, ...]]:
    """``(C,)`` for weight, bias and both running statistics."""
    axis = hyper.get("channel_axis", 1)
    c = check_axis("channel_axis", axis, len(shape))
    return dict.fromkeys(("weight", "bias", *STATE), (shape[c],))


@dataclass(frozen=True)
class _Call:
    """A validated call, with the mixed statistics of every channel (one row per channel)."""

    x: FloatArray
    weight: FloatArray | None
    bias: FloatArray | None
    layout: Layout
    alpha: float
    batch: Moments
    """The batch's own statistics (``z`` unused)."""
    mean: FloatArray
    var: FloatArray
    rstd: FloatArray
    z: FloatArray
    """``(x - mean) * rstd`` as rows ``(C, n)``."""


def _check_alpha(value: object) -> float:
    expected = "a number in [0, 1]"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"argument 'alpha': got {value!r}, expected {expected}")
    a = float(value)
    if not 0.0 <= a <= 1.0:  # also rejects NaN
        raise ValueError(f"argument 'alpha': got {a!r}, expected {expected}")
    return a


def _check_running(name: str, value: object, channels: int) -> FloatArray:
    """batch_norm's checks of a running statistic, which is required here."""
    arr = batch_norm._check_running(name, value, channels)
    if arr is None:
        raise ValueError(f"argument {name!r}: got None, expected an array of shape "
                         f"({channels},): evaluation with mixed statistics needs both running "
                         "statistics")
    return arr


def _exact_mean(row: FloatArray, rounded: float) -> Fraction | None:
    """The batch mean as an exact rational (to 2^-100 relative), None off the finite range.

    ``fsum`` gives the correctly rounded sum ``s1``; ``fsum(row, -s1)`` the rounded remainder,
    so ``s1 + s2`` is the sum to far below float64's resolution.
    """
    values = row.tolist()
    if not (math.isfinite(rounded) and all(math.isfinite(v) for v in values)):
        return None
    try:
        s1 = math.fsum(values)
        s2 = math.fsum([*values, -s1])
    except OverflowError:
        return None
    return (Fraction(s1) + Fraction(s2)) / len(values)


@ieee
def _mixed(x2: FloatArray, eps: float, a: float, rm: FloatArray, rv: FloatArray
           ) -> tuple[Moments, FloatArray, FloatArray, FloatArray, FloatArray]:
    """Batch moments, then ``mean``, ``var``, ``rstd`` and ``z`` of the mixture, per row.

    The mixed mean, its shift from the rounded batch mean ``mean0`` and the gap between the
    batch and running means are formed from the exact batch mean and rounded once, so a mean
    offset of 1e8 times the spread costs no accuracy in ``x - mean`` or in the gap term.
    """
    batch = moments(x2, eps, center=True)
    mean0 = batch.mean
    mean = np.empty_like(mean0)
    shift = np.empty_like(mean0)
    gap = np.empty_like(mean0)
    fa = Fraction(a)
    for c, (m0, r) in enumerate(zip(mean0.tolist(), rm.tolist(), strict=True)):
        exact = _exact_mean(x2[c], m0) if math.isfinite(r) else None
        if exact is None:  # NaN and Inf propagate as the IEEE formula says
            mean[c] = a * m0 + (1.0 - a) * r
            shift[c] = mean[c] - m0
            gap[c] = m0 - r
            continue
        mixed = fa * exact + (1 - fa) * Fraction(r)
        mean[c] = float(mixed)
        shift[c] = float(mixed - Fraction(m0))
        gap[c] = float(exact - Fraction(r))
    var = a * batch.var + (1.0 - a) * rv + (a * (1.0 - a)) * (gap * gap)
    rstd = 1.0 / np.sqrt(var + eps)
    z = ((x2 - mean0[:, None]) - shift[:, None]) * rstd[:, None]
    return batch, mean, var, rstd, z


def _setup(x: object, weight: object, bias: object, *, running_mean: object,
           running_var: object, alpha: object, eps: object, channel_axis: object) -> _Call:
    xa = as_float64("x", x)
    check_ndim("x", xa, 2)
    c = check_axis("channel_axis", channel_axis, xa.ndim)
    e = check_eps(eps)
    a = _check_alpha(alpha)
    channels = xa.shape[c]
    w, b = optional_float64("weight", weight), optional_float64("bias", bias)
    check_shape("weight", w, (channels,))
    check_shape("bias", b, (channels,))
    rm = _check_running("running_mean", running_mean, channels)
    rv = _check_running("running_var", running_var, channels)
    # The batch statistics enter for every alpha (0 * mean is still computed), so an empty
    # batch has no defined output: batch norm's training layout rejects it.
    lay = layout(xa.shape, channel_axis=c)
    batch, mean, var, rstd, z = _mixed(lay.to_rows(xa), e, a, rm, rv)
    return _Call(x=xa, weight=w, bias=b, layout=lay, alpha=a, batch=batch, mean=mean, var=var,
                 rstd=rstd, z=z)


def _jac(call: _Call, v2: FloatArray) -> FloatArray:
    """``J_alpha v = (1 - alpha) rstd v + alpha J_1 v`` on rows.

    ``J_1 = rstd (I - 11^T/n - z z^T/n)`` is batch normalization's training Jacobian, taken at
    the mixed ``z`` and ``rstd`` (the shared core's formula); the first term is the evaluation
    Jacobian. The mixed statistics move with ``x`` only through the alpha-weighted batch part.
    """
    m = Moments(z=call.z, mean=call.mean, var=call.var, rstd=call.rstd)
    a = call.alpha
    return (1.0 - a) * call.rstd[:, None] * v2 + a * _apply_jacobian(m, v2, True)


def _second(call: _Call, g2: FloatArray, t2: FloatArray) -> FloatArray:
    """Derivative of ``J_alpha g`` along ``t`` (``g`` fixed), on rows.

    ``alpha^2 S_1 - alpha (1 - alpha) rstd^2 (<z t> g + t <z g> + z <t g>)`` with ``S_1`` the
    shared core's second order at the mixed ``z`` and ``rstd``.
    """
    m = Moments(z=call.z, mean=call.mean, var=call.var, rstd=call.rstd)
    a = call.alpha
    z = call.z
    cross = (row_mean(z * t2)[:, None] * g2 + t2 * row_mean(z * g2)[:, None]
             + z * row_mean(t2 * g2)[:, None])
    return a * a * _second_order_rows(m, g2, t2, True) - (a * (1.0 - a)) * (
        call.rstd * call.rstd)[:, None] * cross


def _w(call: _Call) -> FloatArray | float:
    return 1.0 if call.weight is None else call.layout.param_view(call.weight)


def layout(shape: tuple[int, ...], *, channel_axis: int = 1) -> Layout:
    """The reduction layout of the batch statistics: batch norm's in training (no computation).

    >>> from normspec.reference._layout import reduction_sets
    >>> reduction_sets(layout((2, 3))).tolist()              # one set per channel
    [[0, 1, 2], [0, 1, 2]]
    """
    return batch_norm.layout(shape, channel_axis=channel_axis)


def forward(x: object, weight: object = None, bias: object = None, *, running_mean: object,
            running_var: object, alpha: float, eps: float, channel_axis: int = 1
            ) -> dict[str, FloatArray]:
    """Return ``y`` and the statistics; see the module docstring for the definition."""
    call = _setup(x, weight, bias, running_mean=running_mean, running_var=running_var,
                  alpha=alpha, eps=eps, channel_axis=channel_axis)
    lay = call.layout
    with np.errstate(all="ignore"):
        y = lay.from_rows(call.z) * _w(call)
        if call.bias is not None:
            y = y + lay.param_view(call.bias)
    return {"y": y, "mean": call.mean, "var": call.var, "rstd": call.rstd,
            "batch_mean": call.batch.mean, "batch_var": call.batch.var}


@ieee
def vjp(x: object, weight: object = None, bias: object = None, *, cotangent: object,
        running_mean: object, running_var: object, alpha: float, eps: float,
        channel_axis: int = 1) -> dict[str, FloatArray]:
    """Gradients of ``sum(cotangent * y)`` for each primal that is not None.

    ``dx = J_alpha (g * weight)`` with
    ``J_alpha = rstd (I - alpha 11^T/n - alpha z z^T/n)``; ``dweight = sum(g z)``,
    ``dbias = sum(g)`` over the non-channel axes.
    """
    call = _setup(x, weight, bias, running_mean=running_mean, running_var=running_var,
                  alpha=alpha, eps=eps, channel_axis=channel_axis)
    lay = call.layout
    g = cotangent_like(cotangent, call.x.shape)
    grads = {"x": lay.from_rows(_jac(call, lay.to_rows(g * _w(call))))}
    if call.weight is not None:
        grads["weight"] = lay.param_sum(g * lay.from_rows(call.z))
    if call.bias is not None:
        grads["bias"] = lay.param_sum(g)
    return grads


@ieee
def jvp(x: object, weight: object = None, bias: object = None, *,
        tangent: Mapping[str, object], running_mean: object, running_var: object,
        alpha: float, eps: float, channel_axis: int = 1) -> FloatArray:
    """Directional derivative of ``y``: ``weight J_alpha t_x + z t_weight + t_bias``."""
    call = _setup(x, weight, bias, running_mean=running_mean, running_var=running_var,
                  alpha=alpha, eps=eps, channel_axis=channel_axis)
    lay = call.layout
    t = directions("tangent", tangent, {"x": call.x, "weight": call.weight, "bias": call.bias})
    tx, tw, tb = t["x"], t.get("weight"), t.get("bias")
    assert tx is not None
    out = lay.from_rows(_jac(call, lay.to_rows(tx))) * _w(call)
    if tw is not None:
        out = out + lay.from_rows(call.z) * lay.param_view(tw)
    if tb is not None:
        out = out + lay.param_view(tb)
    return out


@ieee
def second_order(x: object, weight: object = None, bias: object = None, *, cotangent: object,
                 tangent: Mapping[str, object], running_mean: object, running_var: object,
                 alpha: float, eps: float, channel_axis: int = 1) -> dict[str, FloatArray]:
    """Derivative of :func:`vjp` (``cotangent`` held fixed) along ``tangent``.

    ``d(dx) = S_alpha(g weight, t_x) + J_alpha (g t_weight)``, ``d(dweight) = sum(g J_alpha t_x)``,
    ``d(dbias) = 0``.
    """
    call = _setup(x, weight, bias, running_mean=running_mean, running_var=running_var,
                  alpha=alpha, eps=eps, channel_axis=channel_axis)
    lay = call.layout
    g = cotangent_like(cotangent, call.x.shape)
    t = directions("tangent", tangent, {"x": call.x, "weight": call.weight, "bias": call.bias})
    tx, tw = t["x"], t.get("weight")
    assert tx is not None
    t2 = lay.to_rows(tx)
    dx = _second(call, lay.to_rows(g * _w(call)), t2)
    if tw is not None:
        dx = dx + _jac(call, lay.to_rows(g * lay.param_view(tw)))
    out = {"x": lay.from_rows(dx)}
    if call.weight is not None:
        out["weight"] = lay.param_sum(g * lay.from_rows(_jac(call, t2)))
    if call.bias is not None:
        out["bias"] = np.zeros_like(call.bias)
    return out
