"""Group normalization: standardize each sample over contiguous groups of channels.

Axis 0 is the batch axis and ``channel_axis`` (default 1; -1 for channels-last) the channel axis;
every other axis is spatial. The ``C`` channels are split into ``groups`` contiguous groups of
``C/groups`` channels: group ``g`` holds channels ``[g*C/groups, (g+1)*C/groups)`` (the channel
axis is read as ``(groups, C/groups)`` with the group index outer). For every sample ``n`` and
group ``g``, over the ``m = (C/groups) * prod(spatial sizes)`` values of that group::

    mean[n, g] = (1/m) sum x[n, group g, ...]
    var[n, g]  = (1/m) sum (x[n, group g, ...] - mean[n, g])^2        (biased)
    rstd[n, g] = 1 / sqrt(var[n, g] + eps)
    y[n, c, ...] = (x[n, c, ...] - mean[n, g(c)]) * rstd[n, g(c)] * weight[c] + bias[c]

with ``g(c) = c // (C/groups)``. ``weight`` and ``bias`` are per channel, shape ``(C,)``, and
optional. Statistics have shape ``(N, groups)``. ``groups=1`` is layer normalization over every
non-batch axis; ``groups=C`` is instance normalization.

>>> import numpy as np
>>> x = np.array([[1.0, 3.0, 10.0, 30.0]])             # N=1, C=4, no spatial axes
>>> out = forward(x, groups=2, eps=0.0)
>>> out["y"].tolist(), out["mean"].tolist(), out["var"].tolist()
([[-1.0, 1.0, -1.0, 1.0]], [[2.0, 20.0]], [[1.0, 100.0]])
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
STATS = ("mean", "var", "rstd")
"""Statistics returned by :func:`forward` beside ``y``, each of shape ``(N, groups)``."""
NCHW_EXAMPLE: dict[str, int] = {"groups": 3, "channel_axis": 1}
"""Hyperparameters of the canonical ``(N, C, H, W)`` example: the docs draw
``layout((N, C, H, W), **NCHW_EXAMPLE)`` as the figure of the reduced set."""


def _setup(x: object, weight: object, bias: object, groups: int, channel_axis: int, eps: float
           ) -> tuple[FloatArray, FloatArray | None, FloatArray | None, AffineNorm]:
    xa = as_float64("x", x)
    check_ndim("x", xa, 2)
    c = check_axis("channel_axis", channel_axis, xa.ndim)
    if c == 0:
        raise ValueError(
            f"argument 'channel_axis': got {channel_axis}, expected an axis other than the "
            f"batch axis 0 (in [1, {xa.ndim - 1}] or [{-xa.ndim + 1}, -1])"
        )
    g = check_int("groups", groups, minimum=1)
    channels = xa.shape[c]
    if channels % g:
        raise ValueError(
            f"argument 'groups': got {g}, expected a divisor of the channel count "
            f"{channels} (x.shape[{c}])"
        )
    e = check_eps(eps)
    spatial = tuple(i for i in range(1, xa.ndim) if i != c)
    check_nonempty_reduction("x", xa.shape, (c, *spatial))
    w, b = optional_float64("weight", weight), optional_float64("bias", bias)
    check_shape("weight", w, (channels,))
    check_shape("bias", b, (channels,))
    # With the axes ordered (n, c, spatial...), a C-order reshape to (N*groups, m) splits the
    # channel axis as (groups, C/groups), group index outer: exactly the contiguous grouping.
    layout = Layout(shape=xa.shape, perm=(0, c, *spatial), stat_shape=(xa.shape[0], g),
                    n=(channels // g) * math.prod(xa.shape[i] for i in spatial),
                    param_axes=(c,))
    return xa, w, b, AffineNorm(layout=layout, eps=e, center=True)


def layout(shape: tuple[int, ...], *, groups: int, channel_axis: int = 1) -> Layout:
    """The reduction layout :func:`forward` uses for an input of ``shape`` (no computation).

    >>> from normspec.reference._layout import reduction_sets
    >>> reduction_sets(layout((1, 4), groups=2)).tolist()   # contiguous groups of channels
    [[0, 0, 1, 1]]
    """
    return _setup(np.zeros(shape), None, None, groups, channel_axis, 0.0)[3].layout


def forward(x: object, weight: object = None, bias: object = None, *, groups: int,
            channel_axis: int = 1, eps: float) -> dict[str, FloatArray]:
    """Return ``{"y", "mean", "var", "rstd"}``; see the module docstring for the definition."""
    xa, w, b, norm = _setup(x, weight, bias, groups, channel_axis, eps)
    return norm.outputs(xa, w, b)


def vjp(x: object, weight: object = None, bias: object = None, *, cotangent: object,
        groups: int, channel_axis: int = 1, eps: float) -> dict[str, FloatArray]:
    """Gradients of ``sum(cotangent * y)`` for each primal that is not None."""
    xa, w, b, norm = _setup(x, weight, bias, groups, channel_axis, eps)
    return norm.vjp(xa, w, b, cotangent_like(cotangent, xa.shape))


def jvp(x: object, weight: object = None, bias: object = None, *,
        tangent: Mapping[str, object], groups: int, channel_axis: int = 1, eps: float
        ) -> FloatArray:
    """Directional derivative of ``y``; missing tangent keys are zero."""
    xa, w, b, norm = _setup(x, weight, bias, groups, channel_axis, eps)
    return norm.jvp(xa, w, b, directions("tangent", tangent, {"x": xa, "weight": w, "bias": b}))


def second_order(x: object, weight: object = None, bias: object = None, *, cotangent: object,
                 tangent: Mapping[str, object], groups: int, channel_axis: int = 1, eps: float
                 ) -> dict[str, FloatArray]:
    """Derivative of :func:`vjp` (``cotangent`` held fixed) along ``tangent``."""
    xa, w, b, norm = _setup(x, weight, bias, groups, channel_axis, eps)
    t = directions("tangent", tangent, {"x": xa, "weight": w, "bias": b})
    return norm.second_order(xa, w, b, cotangent_like(cotangent, xa.shape), t)
