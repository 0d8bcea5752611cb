"""Min-max scaling to ``[range_min, range_max]``, fitted on one data set and applied to another.

``axis`` lists the reduction axes (required; scikit-learn's MinMaxScaler is ``[0]`` on an
``(n_samples, n_features)`` matrix); every index of the kept axes is one feature. With
``a = range_min < b = range_max`` (scikit-learn's ``feature_range``, default ``(0, 1)``):

**Fit** (``training=True``) replaces the state with, per feature::

    data_min = min x,   data_max = max x
    y = apply(x, data_min, data_max)

**Apply** (``training=False``) with the given ``data_min``, ``data_max`` (required)::

    r = data_max - data_min,   r = 1 where r == 0   (scikit-learn: a constant feature maps to a)
    y = a + (b - a) * (x - data_min) / r
    y = clip(y, a, b)                                 when clip (scikit-learn's ``clip=True``)

Derivatives are with respect to ``x`` only. Apply: ``J = diag((b - a) / r * c)`` with ``c = 1``
where ``a <= y <= b``, at a NaN ``y`` (neither below ``a`` nor above ``b``: the unclipped
branch) or without clip, and ``c = 0`` where clip cuts (the slope is 1 at the ends, as
torch.clamp; torch.clamp's slope at NaN is 0, a deviation).
Fit, with ``s = (b - a) / r``, ``u = (x - data_min) / r`` and the
min/max subgradient ``w_min``, ``w_max`` (``1/k`` at each of the ``k`` tied extreme positions,
0 elsewhere: what torch.amin/amax and jnp.min/max autodiff give)::

    J t = s * (t - (1 - u) (w_min . t) - u (w_max . t))
    J^T g = s * g - s * w_min (g . (1 - u)) - s * w_max (g . u)

and along ``t``, with ``delta = w_max . t - w_min . t``::

    (J^T g)' = -(delta / r) J^T g + (s / r) (w_min - w_max) (g . (t - w_min . t - u delta))

A constant feature (``r = 0``) takes the branch derivative of ``y = a + (b - a)(x - min)``:
``J = (b - a) (I - 1 1^T / n)`` (every position is tied), second order 0.

>>> import numpy as np
>>> x = np.array([[1.0, 5.0], [3.0, 5.0], [2.0, 5.0]])
>>> out = forward(x, training=True, axis=[0], range_min=0.0, range_max=1.0, clip=False)
>>> out["y"].tolist(), out["data_min"].tolist(), out["data_max"].tolist()
([[0.0, 0.0], [1.0, 0.0], [0.5, 0.0]], [1.0, 5.0], [3.0, 5.0])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ._checks import (
    FloatArray,
    as_float64,
    check_ndim,
    check_nonempty_reduction,
    check_real,
    check_shape,
    cotangent_like,
    directions,
    ieee,
    optional_float64,
)
from ._layout import Layout
from .standardize import Axes, check_axes, layout_for

PRIMALS = ("x",)
"""The only differentiable input; the fitted extremes are state, never differentiated."""
STATS = ("data_min", "data_max")
"""What a fit returns beside ``y`` (shape: the kept axes of ``x``)."""
STATE = ("data_min", "data_max")
"""The fitted extremes: taken by keyword, required to apply, replaced by a fit."""
NCHW_EXAMPLE: dict[str, list[int]] = {"axis": [0, 2, 3]}
"""One feature per channel of ``(N, C, H, W)``."""


@dataclass(frozen=True)
class _Call:
    x: FloatArray
    layout: Layout
    training: bool
    a: float
    b: float
    clip: bool
    data_min: FloatArray | None
    data_max: FloatArray | None


def _setup(x: object, *, training: object, axis: object, range_min: object,
           range_max: object, clip: object, data_min: object, data_max: object) -> _Call:
    xa = as_float64("x", x)
    check_ndim("x", xa, 1)
    lay = layout_for(xa.shape, check_axes("axis", axis, xa.ndim))
    a, b = check_real("range_min", range_min), check_real("range_max", range_max)
    if not a < b:
        raise ValueError(f"argument 'range_max': got {b!r} with range_min={a!r}, expected "
                         "range_min < range_max")
    if not isinstance(clip, (bool, np.bool_)):
        raise TypeError(f"argument 'clip': got {clip!r}, expected True or False")
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"argument 'training': got {training!r}, expected True or False")
    lo, hi = optional_float64("data_min", data_min), optional_float64("data_max", data_max)
    check_shape("data_min", lo, lay.stat_shape)
    check_shape("data_max", hi, lay.stat_shape)
    if training:
        check_nonempty_reduction("x", xa.shape, tuple(i for i in range(xa.ndim)
                                                      if i not in lay.param_axes))
    elif lo is None or hi is None:
        missing = "data_min" if lo is None else "data_max"
        raise ValueError(f"argument {missing!r}: got None with training=False, expected the "
                         "fitted extremes (data_min and data_max) to apply")
    return _Call(x=xa, layout=lay, training=bool(training), a=a, b=b, clip=bool(clip),
                 data_min=lo, data_max=hi)


def input_shapes(shape: tuple[int, ...], hyper: Mapping[str, object]
                 ) -> dict[str, tuple[int, ...]]:
    """The state's shape: ``x.shape`` without the reduction axes."""
    stat = layout_for(tuple(shape), check_axes("axis", hyper.get("axis"), len(shape))).stat_shape
    return {"data_min": stat, "data_max": stat}


def layout(shape: tuple[int, ...], *, axis: Axes) -> Layout:
    """The reduction layout of a fit (no computation)."""
    return layout_for(tuple(shape), check_axes("axis", axis, len(shape)))


@dataclass(frozen=True)
class _Rows:
    """Per-feature rows: ``x``, the extremes, the divisor ``r`` and the tie weights."""

    x2: FloatArray
    lo: FloatArray
    hi: FloatArray
    r: FloatArray
    w_min: FloatArray
    w_max: FloatArray
    flat: npt.NDArray[np.bool_]


def _ties(x2: FloatArray, value: FloatArray) -> FloatArray:
    hit = (x2 == value[:, None]).astype(np.float64)
    count = hit.sum(axis=1)
    out: FloatArray = np.where(count[:, None] > 0, hit / np.maximum(count, 1.0)[:, None], 0.0)
    return out


def _rows(call: _Call) -> _Rows:
    lay = call.layout
    x2 = lay.to_rows(call.x)
    if call.training:
        # a NaN anywhere in the feature makes both extremes NaN (np.min/np.max propagate it)
        lo, hi = x2.min(axis=1), x2.max(axis=1)
    else:
        assert call.data_min is not None
        assert call.data_max is not None
        lo, hi = call.data_min.reshape(-1), call.data_max.reshape(-1)
    span = hi - lo
    flat = span == 0.0
    return _Rows(x2=x2, lo=lo, hi=hi, r=np.where(flat, 1.0, span), w_min=_ties(x2, lo),
                 w_max=_ties(x2, hi), flat=flat)


def _forward_rows(call: _Call, rw: _Rows) -> FloatArray:
    # (x - lo) / r first, then the affine map: x - lo is exact for x within a factor 2 of lo
    y: FloatArray = call.a + (call.b - call.a) * ((rw.x2 - rw.lo[:, None]) / rw.r[:, None])
    if call.clip:
        y = np.where(np.isnan(y), y, np.clip(y, call.a, call.b))
    return y


def _slope(call: _Call, rw: _Rows) -> FloatArray:
    """Apply mode: ``(b - a) / r``, 0 where clip cuts."""
    s = (call.b - call.a) / rw.r[:, None] * np.ones_like(rw.x2)
    if call.clip:
        raw = call.a + (call.b - call.a) * ((rw.x2 - rw.lo[:, None]) / rw.r[:, None])
        cut = (raw < call.a) | (raw > call.b)
        s = np.where(cut, 0.0, s)
    out: FloatArray = s
    return out


def _fit_jvp_rows(call: _Call, rw: _Rows, t2: FloatArray) -> FloatArray:
    s = ((call.b - call.a) / rw.r)[:, None]
    u = (rw.x2 - rw.lo[:, None]) / rw.r[:, None]
    dmin = (rw.w_min * t2).sum(axis=1)[:, None]
    dmax = (rw.w_max * t2).sum(axis=1)[:, None]
    out: FloatArray = s * (t2 - (1.0 - u) * dmin - u * dmax)
    return out


def _fit_vjp_rows(call: _Call, rw: _Rows, g2: FloatArray) -> FloatArray:
    s = ((call.b - call.a) / rw.r)[:, None]
    u = (rw.x2 - rw.lo[:, None]) / rw.r[:, None]
    gl = (g2 * (1.0 - u)).sum(axis=1)[:, None]
    gh = (g2 * u).sum(axis=1)[:, None]
    out: FloatArray = s * g2 - s * rw.w_min * gl - s * rw.w_max * gh
    return out


@ieee
def forward(x: object, *, training: bool, axis: Axes, range_min: float, range_max: float,
            clip: bool, data_min: object = None, data_max: object = None
            ) -> dict[str, FloatArray]:
    """Fit: ``{"y", "data_min", "data_max"}``; apply: ``{"y"}``."""
    call = _setup(x, training=training, axis=axis, range_min=range_min, range_max=range_max,
                  clip=clip, data_min=data_min, data_max=data_max)
    lay = call.layout
    rw = _rows(call)
    y = lay.from_rows(_forward_rows(call, rw))
    if not call.training:
        return {"y": y}
    return {"y": y, "data_min": lay.stats_from_rows(rw.lo),
            "data_max": lay.stats_from_rows(rw.hi)}


@ieee
def vjp(x: object, *, cotangent: object, training: bool, axis: Axes, range_min: float,
        range_max: float, clip: bool, data_min: object = None, data_max: object = None
        ) -> dict[str, FloatArray]:
    """``{"x": J^T g}`` (see the module docstring)."""
    call = _setup(x, training=training, axis=axis, range_min=range_min, range_max=range_max,
                  clip=clip, data_min=data_min, data_max=data_max)
    lay = call.layout
    g2 = lay.to_rows(cotangent_like(cotangent, call.x.shape))
    rw = _rows(call)
    if not call.training:
        return {"x": lay.from_rows(g2 * _slope(call, rw))}
    return {"x": lay.from_rows(_fit_vjp_rows(call, rw, g2))}


@ieee
def jvp(x: object, *, tangent: Mapping[str, object], training: bool, axis: Axes,
        range_min: float, range_max: float, clip: bool, data_min: object = None,
        data_max: object = None) -> FloatArray:
    """``J t`` (see the module docstring)."""
    call = _setup(x, training=training, axis=axis, range_min=range_min, range_max=range_max,
                  clip=clip, data_min=data_min, data_max=data_max)
    lay = call.layout
    tx = directions("tangent", tangent, {"x": call.x})["x"]
    assert tx is not None
    rw = _rows(call)
    t2 = lay.to_rows(tx)
    if not call.training:
        return lay.from_rows(t2 * _slope(call, rw))
    return lay.from_rows(_fit_jvp_rows(call, rw, t2))


@ieee
def second_order(x: object, *, cotangent: object, tangent: Mapping[str, object],
                 training: bool, axis: Axes, range_min: float, range_max: float, clip: bool,
                 data_min: object = None, data_max: object = None) -> dict[str, FloatArray]:
    """Derivative of :func:`vjp` along ``tangent`` (``cotangent`` fixed); apply: 0."""
    call = _setup(x, training=training, axis=axis, range_min=range_min, range_max=range_max,
                  clip=clip, data_min=data_min, data_max=data_max)
    lay = call.layout
    g2 = lay.to_rows(cotangent_like(cotangent, call.x.shape))
    tx = directions("tangent", tangent, {"x": call.x})["x"]
    assert tx is not None
    if not call.training:
        return {"x": np.zeros_like(call.x)}
    rw = _rows(call)
    t2 = lay.to_rows(tx)
    s = ((call.b - call.a) / rw.r)[:, None]
    u = (rw.x2 - rw.lo[:, None]) / rw.r[:, None]
    dmin = (rw.w_min * t2).sum(axis=1)[:, None]
    delta = (rw.w_max * t2).sum(axis=1)[:, None] - dmin
    r = rw.r[:, None]
    inner = (g2 * (t2 - dmin - u * delta)).sum(axis=1)[:, None]
    out = -(delta / r) * _fit_vjp_rows(call, rw, g2) + (s / r) * (rw.w_min - rw.w_max) * inner
    out = np.where(rw.flat[:, None], 0.0, out)
    return {"x": lay.from_rows(out)}

