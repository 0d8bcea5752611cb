"""Instance normalization: standardize each (sample, channel) over the spatial axes.

Axis 0 is the batch axis and ``channel_axis`` (default 1; -1 for channels-last) the channel axis;
every other axis is spatial. For every sample ``n`` and channel ``c``, over the
``m = prod(spatial sizes)`` values ``x[n, c, ...]``::

    mean[n, c] = (1/m) sum x[n, c, ...]
    var[n, c]  = (1/m) sum (x[n, c, ...] - mean[n, c])^2      (biased)
    rstd[n, c] = 1 / sqrt(var[n, c] + eps)
    y[n, c, ...] = (x[n, c, ...] - mean[n, c]) * rstd[n, c] * weight[c] + bias[c]

``weight`` and ``bias`` have shape ``(C,)`` and are optional. Statistics have shape ``(N, C)``
whatever ``channel_axis`` is. There is no running state: this is the per-instance
normalization that frameworks compute in training and, without tracked statistics, in eval.

>>> import numpy as np
>>> x = np.array([[[1.0, 3.0], [4.0, 8.0]]])         # N=1, C=2, L=2
>>> out = forward(x, eps=0.0)
>>> out["y"].tolist(), out["mean"].tolist(), out["var"].tolist()
([[[-1.0, 1.0], [-1.0, 1.0]]], [[2.0, 6.0]], [[1.0, 4.0]])
>>> forward(np.moveaxis(x, 1, -1), channel_axis=-1, eps=0.0)["y"].tolist()   # channels-last
[[[-1.0, -1.0], [1.0, 1.0]]]
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ._checks import (
    FloatArray,
    as_float64,
    check_axis,
    check_eps,
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
STATS = ("mean", "var", "rstd")
"""Statistics returned by :func:`forward` beside ``y``, each of shape ``(N, C)``."""
NCHW_EXAMPLE: dict[str, int] = {"channel_axis": 1}
"""Hyperparameters of the canonical ``(N, C, H, W)`` example: the docs draw
``layout((N, C, H, W), **NCHW_EXAMPLE)`` as the figure of the reduced set."""


def _setup(x: object, weight: object, bias: object, channel_axis: int, eps: float
           ) -> tuple[FloatArray, FloatArray | None, FloatArray | None, AffineNorm]:
    xa = as_float64("x", x)
    check_ndim("x", xa, 3)
    c = check_axis("channel_axis", channel_axis, xa.ndim)
    if c == 0:
        raise ValueError(
            f"argument 'channel_axis': got {channel_axis}, expected an axis other than the "
            f"batch axis 0 (in [1, {xa.ndim - 1}] or [{-xa.ndim + 1}, -1])"
        )
    e = check_eps(eps)
    spatial = tuple(i for i in range(1, xa.ndim) if i != c)
    check_nonempty_reduction("x", xa.shape, spatial)
    w, b = optional_float64("weight", weight), optional_float64("bias", bias)
    check_shape("weight", w, (xa.shape[c],))
    check_shape("bias", b, (xa.shape[c],))
    # Rows ordered (n, c): one reduction set per row, statistics reshape to (N, C).
    layout = Layout(shape=xa.shape, perm=(0, c, *spatial), stat_shape=(xa.shape[0], xa.shape[c]),
                    n=math.prod(xa.shape[i] for i in spatial), param_axes=(c,))
    return xa, w, b, AffineNorm(layout=layout, eps=e, center=True)


def layout(shape: tuple[int, ...], *, channel_axis: int = 1) -> Layout:
    """The reduction layout :func:`forward` uses for an input of ``shape`` (no computation).

    >>> layout((2, 3, 5)).stat_shape, layout((2, 3, 5)).n
    ((2, 3), 5)
    """
    return _setup(np.zeros(shape), None, None, channel_axis, 0.0)[3].layout


def forward(x: object, weight: object = None, bias: object = None, *, channel_axis: int = 1,
            eps: float) -> dict[str, FloatArray]:
    """Return ``{"y", "mean", "var", "rstd"}``; see the module docstring for the definition."""
    xa, w, b, norm = _setup(x, weight, bias, channel_axis, eps)
    return norm.outputs(xa, w, b)


def vjp(x: object, weight: object = None, bias: object = None, *, cotangent: object,
        channel_axis: int = 1, eps: float) -> dict[str, FloatArray]:
    """Gradients of ``sum(cotangent * y)`` for each primal that is not None."""
    xa, w, b, norm = _setup(x, weight, bias, channel_axis, eps)
    return norm.vjp(xa, w, b, cotangent_like(cotangent, xa.shape))


def jvp(x: object, weight: object = None, bias: object = None, *,
        tangent: Mapping[str, object], channel_axis: int = 1, eps: float) -> FloatArray:
    """Directional derivative of ``y``; missing tangent keys are zero."""
    xa, w, b, norm = _setup(x, weight, bias, channel_axis, eps)
    return norm.jvp(xa, w, b, directions("tangent", tangent, {"x": xa, "weight": w, "bias": b}))


def second_order(x: object, weight: object = None, bias: object = None, *, cotangent: object,
                 tangent: Mapping[str, object], channel_axis: int = 1, eps: float
                 ) -> dict[str, FloatArray]:
    """Derivative of :func:`vjp` (``cotangent`` held fixed) along ``tangent``."""
    xa, w, b, norm = _setup(x, weight, bias, channel_axis, eps)
    t = directions("tangent", tangent, {"x": xa, "weight": w, "bias": b})
    return norm.second_order(xa, w, b, cotangent_like(cotangent, xa.shape), t)
