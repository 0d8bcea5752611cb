"""FixNorm (Nguyen and Chiang 2018): L2-normalized output vectors times a learned scalar g.

A composition of :mod:`lp_norm` with ``p = 2`` and one scalar parameter ``weight`` (the paper's
``g``, shape ``()``). For every index ``i`` of the other axes, over ``x[i, :]`` along ``axis``::

    norm[i] = sqrt(sum_j x[i, j]^2)
    y[i, j] = weight * x[i, j] / max(norm[i], eps)

The eps rule is lp_norm's: the norm is floored at ``eps`` (not ``eps`` added); at
``norm == eps`` the unclamped branch is used. A zero vector with ``eps > 0`` gives ``y = 0``
and the gradient ``weight * g / eps``; with ``eps = 0`` it gives ``0 / 0 = NaN``.

``weight`` is one scalar for the whole tensor: its gradient is the sum over every vector,
``sum(g * x / max(norm, eps))``. The original FixNorm fixes the norms of both the context
(hidden) vectors and the output word embeddings to a radius ``r``: each is this map with
``weight = r`` held constant (no gradient); see the spec page.

>>> import numpy as np
>>> out = forward(np.array([[3.0, 4.0], [0.0, 0.0]]), np.float64(2.0), axis=-1, eps=1e-12)
>>> out["y"].tolist(), out["norm"].tolist()
([[1.2, 1.6], [0.0, 0.0]], [5.0, 0.0])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from . import lp_norm as _lp
from ._checks import FloatArray, as_float64, check_shape, cotangent_like, directions
from ._layout import Layout, row_sum

PRIMALS = ("x", "weight")
"""Differentiable inputs, in call order; both are required (``weight`` has shape ``()``)."""
STATS = ("norm",)
"""Statistics returned by :func:`forward` beside ``y``: lp_norm's unclamped L2 norm, shape
``x.shape`` without ``axis``."""
NCHW_EXAMPLE: dict[str, int] = {"axis": 1}
"""Hyperparameters of the canonical ``(N, C, H, W)`` example: one vector per (n, h, w)."""

P = 2.0
"""The norm's order: FixNorm is the L2 case of lp_norm."""


def input_shapes(shape: tuple[int, ...], hyper: Mapping[str, object]) -> dict[str, tuple[int, ...]]:
    """``weight`` is one scalar, shape ``()``, whatever ``x`` is."""
    return {"weight": ()}


def _weight(weight: object) -> FloatArray:
    w = as_float64("weight", weight)
    check_shape("weight", w, ())
    return w


def _total(a: FloatArray) -> FloatArray:
    """The correctly rounded sum of every element, as a 0-d array."""
    return np.asarray(row_sum(a.reshape(1, -1))[0])


def layout(shape: tuple[int, ...], *, axis: int) -> Layout:
    """lp_norm's layout: one row per vector along ``axis`` (no computation).

    >>> layout((2, 3, 4), axis=1).stat_shape
    (2, 4)
    """
    return _lp.layout(shape, axis=axis)


def forward(x: object, weight: object, *, axis: int, eps: float) -> dict[str, FloatArray]:
    """Return ``{"y", "norm"}``; see the module docstring for the definition."""
    w = _weight(weight)
    out = _lp.forward(x, p=P, axis=axis, eps=eps)
    with np.errstate(all="ignore"):
        return {"y": w * out["y"], "norm": out["norm"]}


def vjp(x: object, weight: object, *, cotangent: object, axis: int, eps: float
        ) -> dict[str, FloatArray]:
    """``x``: lp_norm's VJP of ``weight * g``; ``weight``: ``sum(g * x / max(norm, eps))``."""
    w = _weight(weight)
    unit = _lp.forward(x, p=P, axis=axis, eps=eps)["y"]
    g = cotangent_like(cotangent, unit.shape)
    with np.errstate(all="ignore"):
        dx = _lp.vjp(x, cotangent=w * g, p=P, axis=axis, eps=eps)["x"]
        return {"x": dx, "weight": _total(g * unit)}


def _tangents(x: object, w: FloatArray, tangent: Mapping[str, object]
              ) -> tuple[FloatArray, FloatArray]:
    xa = as_float64("x", x)
    t = directions("tangent", tangent, {"x": xa, "weight": w})
    tx, tw = t["x"], t["weight"]
    assert tx is not None
    assert tw is not None
    return tx, tw


def jvp(x: object, weight: object, *, tangent: Mapping[str, object], axis: int, eps: float
        ) -> FloatArray:
    """``weight * lp_norm.jvp(t_x) + t_weight * x / max(norm, eps)``."""
    w = _weight(weight)
    unit = _lp.forward(x, p=P, axis=axis, eps=eps)["y"]
    tx, tw = _tangents(x, w, tangent)
    with np.errstate(all="ignore"):
        out: FloatArray = w * _lp.jvp(x, tangent={"x": tx}, p=P, axis=axis, eps=eps) + tw * unit
        return out


def second_order(x: object, weight: object, *, cotangent: object, tangent: Mapping[str, object],
                 axis: int, eps: float) -> dict[str, FloatArray]:
    """Derivative of :func:`vjp` (``cotangent`` held fixed) along ``tangent``.

    ``x``: ``t_weight * lp_norm.vjp(g) + weight * lp_norm.second_order(g, t_x)``;
    ``weight``: ``sum(g * lp_norm.jvp(t_x))``.
    """
    w = _weight(weight)
    unit = _lp.forward(x, p=P, axis=axis, eps=eps)["y"]
    g = cotangent_like(cotangent, unit.shape)
    tx, tw = _tangents(x, w, tangent)
    hyper: dict[str, Any] = {"p": P, "axis": axis, "eps": eps}
    with np.errstate(all="ignore"):
        first = _lp.vjp(x, cotangent=g, **hyper)["x"]
        second = _lp.second_order(x, cotangent=g, tangent={"x": tx}, **hyper)["x"]
        dunit = _lp.jvp(x, tangent={"x": tx}, **hyper)
        return {"x": tw * first + w * second, "weight": _total(g * dunit)}
