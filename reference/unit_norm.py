"""nGPT's unit-norm rule (Loshchilov et al. 2024): vectors scaled to unit L2 norm along an axis.

nGPT keeps hidden states, the input and output embeddings and the rows or columns of every
weight matrix on the unit hypersphere. Each is :mod:`lp_norm` with ``p = 2`` along the tensor's
embedding axis; this method is exactly that call, with the axis of each tensor kind stated on
the spec page::

    norm[i] = sqrt(sum_j x[i, j]^2)
    y[i, j] = x[i, j] / max(norm[i], eps)

nGPT's code divides by the norm with no floor (``eps = 0``: a zero vector gives NaN);
``eps > 0`` is lp_norm's floor (``F.normalize``). At ``norm == eps`` the unclamped branch is
used.

>>> import numpy as np
>>> forward(np.array([[3.0, 0.0], [4.0, 1.0]]), axis=0, eps=0.0)["y"].tolist()
[[0.6, 0.0], [0.8, 1.0]]
"""

from __future__ import annotations

from collections.abc import Mapping

from . import lp_norm as _lp
from ._checks import FloatArray
from ._layout import Layout

PRIMALS = ("x",)
"""Differentiable inputs, in call order."""
STATS = ("norm",)
"""Statistics returned by :func:`forward` beside ``y``: lp_norm's unclamped L2 norm, shape
``x.shape`` without ``axis``."""
NCHW_EXAMPLE: dict[str, int] = {"axis": 1}
"""Hyperparameters of the canonical ``(N, C, H, W)`` example: one vector per (n, h, w)."""

P = 2.0
"""The norm's order: nGPT normalizes to unit L2 norm."""


def layout(shape: tuple[int, ...], *, axis: int) -> Layout:
    """lp_norm's layout: one row per vector along ``axis`` (no computation).

    >>> layout((6, 8), axis=0).stat_shape
    (8,)
    """
    return _lp.layout(shape, axis=axis)


def forward(x: object, *, axis: int, eps: float) -> dict[str, FloatArray]:
    """Return ``{"y", "norm"}``: ``lp_norm(x, p=2, axis=axis, eps=eps)``."""
    return _lp.forward(x, p=P, axis=axis, eps=eps)


def vjp(x: object, *, cotangent: object, axis: int, eps: float) -> dict[str, FloatArray]:
    """lp_norm's VJP with ``p = 2``: ``(g - y (g.y)) / norm``, or ``g / eps`` if clamped."""
    return _lp.vjp(x, cotangent=cotangent, p=P, axis=axis, eps=eps)


def jvp(x: object, *, tangent: Mapping[str, object], axis: int, eps: float) -> FloatArray:
    """lp_norm's JVP with ``p = 2``: ``(t - y (y.t)) / norm``, or ``t / eps`` if clamped."""
    return _lp.jvp(x, tangent=tangent, p=P, axis=axis, eps=eps)


def second_order(x: object, *, cotangent: object, tangent: Mapping[str, object], axis: int,
                 eps: float) -> dict[str, FloatArray]:
    """lp_norm's second order with ``p = 2`` (zero on clamped vectors)."""
    return _lp.second_order(x, cotangent=cotangent, tangent=tangent, p=P, axis=axis, eps=eps)
