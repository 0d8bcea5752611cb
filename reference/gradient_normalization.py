"""Gradient normalization: the identity forward, the incoming gradient rescaled to unit L2 norm.

The method is defined by its backward pass (Cabana and Lago-Fernández 2021, "Backward Gradient
Normalization in Deep Neural Networks": normalization nodes that leave the forward activity
unchanged and rescale the gradient that flows back through them). For an input ``x`` and the
incoming gradient (cotangent) ``g`` of ``y``, with ``axis`` the normalized axes::

    y = x                                                         (exactly, every element)
    norm[i] = sqrt(sum_j g[i, j]^2)       over the axes ``axis``, for each index i of the others
    grad_x[i, j] = g[i, j] / max(norm[i], eps)

``grad_x`` is lp_norm (p = 2) applied to ``g`` over ``axis``, whose core this module reuses:
at ``norm >= eps`` it has unit norm over ``axis``, below ``eps`` it is ``g / eps``, so a zero
gradient stays zero; ``eps = 0`` with a zero gradient gives ``0 / 0 = NaN``. NaN propagates
through its row; an infinite component gives ``inf / inf = NaN`` there and zeros elsewhere in
its row, as IEEE arithmetic says.

``grad_x`` is not the transpose of a linear map of the forward (it is a nonlinear function of
``g``), so the JVP and the second order of this method are not defined: the module declares
them in ``NOT_APPLICABLE``, the vectors hold neither, and a run reports them as not applicable.
Finite differences of ``forward`` give the identity, not this VJP, so they prove nothing here.

>>> import numpy as np
>>> vjp(np.zeros((1, 2)), cotangent=np.array([[3.0, 4.0]]), axis=[1], eps=1e-12)["x"].tolist()
[[0.6, 0.8]]
>>> vjp(np.zeros(2), cotangent=np.zeros(2), axis=[0], eps=1e-12)["x"].tolist()
[0.0, 0.0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from . import lp_norm
from ._checks import (
    FloatArray,
    as_float64,
    check_eps,
    check_ndim,
    check_nonempty_reduction,
    cotangent_like,
    directions,
)
from ._layout import Layout
from .standardize import check_axes, layout_for

PRIMALS = ("x",)
"""Differentiable inputs, in call order."""
STATS: tuple[str, ...] = ()
"""The forward pass is the identity: no statistics."""
NCHW_EXAMPLE: dict[str, list[int]] = {"axis": [1, 2, 3]}
"""Hyperparameters of the canonical ``(N, C, H, W)`` example: one norm per sample."""
NOT_APPLICABLE: dict[str, str] = {
    "jvp": "gradient_normalization is defined by its backward pass: the forward is the "
           "identity, whose JVP (the tangent itself) is not what the method specifies, and "
           "the normalized gradient is not the transpose of any tangent map",
    "second_order": "the VJP g / max(||g||, eps) is a nonlinear function of the cotangent g, "
                    "not the derivative of the forward, so its derivative along a tangent of x "
                    "is no Hessian-vector product; and the frameworks' second-order machinery "
                    "cannot take it (a once_differentiable backward refuses double backward, "
                    "jax.jvp of a custom_vjp function raises)",
}
"""Checks this method has no quantity for (see the module docstring); the runner reports them
as not applicable with these reasons."""

Axes = int | str | Sequence[int]


def _setup(x: object, axis: object, eps: object) -> tuple[FloatArray, Layout, float]:
    xa = as_float64("x", x)
    check_ndim("x", xa, 1)
    axes = check_axes("axis", axis, xa.ndim)
    e = check_eps(eps)
    check_nonempty_reduction("x", xa.shape, axes)
    return xa, layout_for(xa.shape, axes), e


def layout(shape: tuple[int, ...], *, axis: Axes) -> Layout:
    """The layout of the gradient's rows: one row per index of the axes not in ``axis``.

    >>> layout((2, 3, 4), axis=[1, 2]).n
    12
    """
    return layout_for(tuple(shape), check_axes("axis", axis, len(shape)))


def forward(x: object, *, axis: Axes, eps: float) -> dict[str, FloatArray]:
    """Return ``{"y": x}`` (a float64 copy); ``axis`` and ``eps`` are validated."""
    xa, _, _ = _setup(x, axis, eps)
    return {"y": xa.copy()}


def normalized(g: FloatArray, lay: Layout, eps: float) -> FloatArray:
    """``g / max(||g||, eps)`` over the rows of ``lay``, by lp_norm's p = 2 core."""
    rows = lay.to_rows(g)
    return lay.from_rows(lp_norm.forward(rows, p=2.0, axis=1, eps=eps)["y"])


def vjp(x: object, *, cotangent: object, axis: Axes, eps: float) -> dict[str, FloatArray]:
    """Return ``{"x": cotangent / max(||cotangent||, eps)}`` with the norm over ``axis``."""
    xa, lay, e = _setup(x, axis, eps)
    g = cotangent_like(cotangent, xa.shape)
    with np.errstate(all="ignore"):
        return {"x": normalized(g, lay, e)}


def jvp(x: object, *, tangent: Mapping[str, object], axis: Axes, eps: float) -> FloatArray:
    """Not defined for this method (``NOT_APPLICABLE["jvp"]``): raises NotImplementedError
    once the arguments are valid."""
    xa, _, _ = _setup(x, axis, eps)
    directions("tangent", tangent, {"x": xa})
    raise NotImplementedError(f"gradient_normalization.jvp: {NOT_APPLICABLE['jvp']}")


def second_order(x: object, *, cotangent: object, tangent: Mapping[str, object], axis: Axes,
                 eps: float) -> dict[str, FloatArray]:
    """Not defined for this method (``NOT_APPLICABLE["second_order"]``): raises
    NotImplementedError once the arguments are valid."""
    xa, _, _ = _setup(x, axis, eps)
    cotangent_like(cotangent, xa.shape)
    directions("tangent", tangent, {"x": xa})
    raise NotImplementedError(
        f"gradient_normalization.second_order: {NOT_APPLICABLE['second_order']}")


__all__ = ["NCHW_EXAMPLE", "NOT_APPLICABLE", "PRIMALS", "STATS", "forward", "jvp", "layout",
           "normalized", "second_order", "vjp"]
