"""ScaleNorm (Nguyen and Salazar 2019): L2 normalization times one scalar g' shared by M modules.

``x`` stacks the inputs of the ``M = x.shape[0]`` ScaleNorm modules of a model, one per index of
the leading **module axis**: ``x[m]`` is what module ``m`` normalizes, of shape
``(..., D)``, each vector along the last axis. One scalar ``weight`` (the paper's ``g'``, shape
``()``) serves every module::

    norm[m, i] = sqrt(sum_d x[m, i, d]^2)
    y[m, i, d] = weight * x[m, i, d] / max(norm[m, i], eps)

This is :mod:`fix_norm` along the last axis (itself lp_norm with ``p = 2``); the module axis
states the sharing: the gradient of ``weight`` is the sum over the modules of each module's
``sum(g[m] * x[m] / max(norm, eps))``, as autograd sums the uses of one parameter. The eps rule
is the paper code's: the norm clamped at ``eps`` (``norm.clamp(min=eps)``), the unclamped branch
at ``norm == eps``; a zero vector gives ``y = 0`` with ``eps > 0`` and NaN with ``eps = 0``.

>>> import numpy as np
>>> x = np.array([[[3.0, 4.0]], [[0.0, 2.0]]])          # M = 2 modules, one vector each
>>> out = forward(x, np.float64(2.0), eps=1e-5)
>>> out["y"].tolist(), out["norm"].tolist()
([[[1.2, 1.6]], [[0.0, 2.0]]], [[5.0], [2.0]])
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from . import fix_norm as _fix
from ._checks import FloatArray, as_float64, check_ndim, cotangent_like
from ._layout import Layout, row_sum

PRIMALS = ("x", "weight")
"""Differentiable inputs, in call order; both are required (``weight`` has shape ``()``)."""
STATS = ("norm",)
"""Statistics returned by :func:`forward` beside ``y``: the unclamped L2 norm of every vector,
shape ``x.shape[:-1]`` (module axis first)."""
NCHW_EXAMPLE: dict[str, int] = {}
"""The canonical ``(N, C, H, W)`` example reads as ``N`` modules of ``(C, H)`` vectors of ``W``
values: one norm per (n, c, h)."""

AXIS = -1
"""The vectors lie along the last (hidden) axis, as in the paper's code."""


def input_shapes(shape: tuple[int, ...], hyper: Mapping[str, object]) -> dict[str, tuple[int, ...]]:
    """``weight`` is one scalar, shape ``()``, shared by every module."""
    return {"weight": ()}


def _x(x: object) -> FloatArray:
    xa = as_float64("x", x)
    # the module axis and the hidden axis: a module's input is at least one vector
    check_ndim("x", xa, 2)
    return xa


def layout(shape: tuple[int, ...]) -> Layout:
    """One row per vector along the last axis (no computation).

    >>> layout((3, 2, 4)).stat_shape
    (3, 2)
    """
    with np.errstate(all="ignore"):
        _x(np.ones(shape))
    return _fix.layout(shape, axis=AXIS)


def forward(x: object, weight: object, *, eps: float) -> dict[str, FloatArray]:
    """Return ``{"y", "norm"}``; see the module docstring for the definition."""
    return _fix.forward(_x(x), weight, axis=AXIS, eps=eps)


def module_weight_gradients(x: object, weight: object, *, cotangent: object, eps: float
                            ) -> FloatArray:
    """Each module's own contribution to the gradient of ``weight``, shape ``(M,)``.

    What a per-module parameter would receive; :func:`vjp` returns their correctly rounded sum.
    """
    xa = _x(x)
    unit = _fix.forward(xa, np.float64(1.0), axis=AXIS, eps=eps)["y"]
    g = cotangent_like(cotangent, xa.shape)
    _fix.forward(xa, weight, axis=AXIS, eps=eps)  # validates weight
    with np.errstate(all="ignore"):
        out: FloatArray = row_sum((g * unit).reshape(xa.shape[0], -1))
    return out


def vjp(x: object, weight: object, *, cotangent: object, eps: float) -> dict[str, FloatArray]:
    """``x``: fix_norm's; ``weight``: the sum over modules of ``sum(g[m] * u[m])``."""
    return _fix.vjp(_x(x), weight, cotangent=cotangent, axis=AXIS, eps=eps)


def jvp(x: object, weight: object, *, tangent: Mapping[str, object], eps: float) -> FloatArray:
    """``weight * lp_norm.jvp(t_x) + t_weight * u``: fix_norm's along the last axis."""
    return _fix.jvp(_x(x), weight, tangent=tangent, axis=AXIS, eps=eps)


def second_order(x: object, weight: object, *, cotangent: object, tangent: Mapping[str, object],
                 eps: float) -> dict[str, FloatArray]:
    """Derivative of :func:`vjp` (``cotangent`` held fixed) along ``tangent``: fix_norm's."""
    return _fix.second_order(_x(x), weight, cotangent=cotangent, tangent=tangent, axis=AXIS,
                             eps=eps)
