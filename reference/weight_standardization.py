"""Weight standardization (Qiao et al. 2019): each output channel of a weight standardized.

The input is a weight tensor, not an activation: ``x`` is the weight (a conv weight
``(O, I, kh, kw)``, a linear weight ``(O, I)``, or a Flax/Keras kernel ``(..., in, out)``).
``kept_axis`` is its output-channel axis; each output channel is standardized over all the
other axes, with the shared moment core (``_standardize.moments``)::

    mean[o] = (1/n) sum_j x[o, j]                 (j over the n values of the other axes)
    var[o]  = (1/n) sum_j (x[o, j] - mean[o])^2   (biased: divided by n, not n - 1)
    rstd[o] = 1 / sqrt(var[o] + eps)              (eps inside the square root)
    y[o, j] = (x[o, j] - mean[o]) * rstd[o]

This is timm's ``StdConv2d`` and Big Transfer's ``StdConv2d`` (biased variance, eps inside the
root; eps 1e-6 and 1e-10 there). The paper's own code divides by the *unbiased* standard
deviation plus 1e-5 (``w.std(dim=1) + 1e-5``): the spec page records the difference; it is not
this method. A constant channel has ``var = 0``: ``y = 0`` with ``eps > 0``, ``0 / 0 = NaN``
with ``eps = 0``. There is no affine and no state.

>>> import numpy as np
>>> w = np.array([[1.0, 3.0], [4.0, 8.0]])                # (O, I)
>>> out = forward(w, kept_axis=0, eps=0.0)
>>> out["y"].tolist(), out["mean"].tolist(), out["var"].tolist()
([[-1.0, 1.0], [-1.0, 1.0]], [2.0, 6.0], [1.0, 4.0])
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
    cotangent_like,
    directions,
)
from ._layout import Layout
from ._standardize import AffineNorm

PRIMALS = ("x",)
"""Differentiable inputs: the weight being standardized (named ``x``, the suite's name of the
tensor a method normalizes)."""
STATS = ("mean", "var", "rstd")
"""Statistics returned by :func:`forward` beside ``y``, each of shape ``(O,)``: one per index of
``kept_axis``."""
NCHW_EXAMPLE: dict[str, int] = {"kept_axis": 0}
"""Hyperparameters of the canonical ``(N, C, H, W)`` example, read as a conv weight
``(O, I, kh, kw)``: one set per output channel over ``(I, kh, kw)``."""


def _setup(x: object, kept_axis: int, eps: float) -> tuple[FloatArray, AffineNorm]:
    xa = as_float64("x", x)
    check_ndim("x", xa, 1)
    k = check_axis("kept_axis", kept_axis, xa.ndim)
    e = check_eps(eps)
    others = tuple(i for i in range(xa.ndim) if i != k)
    check_nonempty_reduction("x", xa.shape, (k,))
    layout = Layout(shape=xa.shape, perm=(k, *others), stat_shape=(xa.shape[k],),
                    n=math.prod(xa.shape[i] for i in others), param_axes=(k,))
    return xa, AffineNorm(layout=layout, eps=e, center=True)


def layout(shape: tuple[int, ...], *, kept_axis: int) -> Layout:
    """The reduction layout :func:`forward` uses for a weight of ``shape`` (no computation).

    >>> layout((8, 3, 3, 3), kept_axis=0).stat_shape, layout((8, 3, 3, 3), kept_axis=0).n
    ((8,), 27)
    """
    return _setup(np.zeros(shape), kept_axis, 0.0)[1].layout


def forward(x: object, *, kept_axis: int, eps: float) -> dict[str, FloatArray]:
    """Return ``{"y", "mean", "var", "rstd"}``; see the module docstring for the definition."""
    xa, norm = _setup(x, kept_axis, eps)
    return norm.outputs(xa, None, None)


def vjp(x: object, *, cotangent: object, kept_axis: int, eps: float) -> dict[str, FloatArray]:
    """Gradient of ``sum(cotangent * y)``: ``rstd (g - mean(g) - z mean(z g))`` per channel."""
    xa, norm = _setup(x, kept_axis, eps)
    return norm.vjp(xa, None, None, cotangent_like(cotangent, xa.shape))


def jvp(x: object, *, tangent: Mapping[str, object], kept_axis: int, eps: float) -> FloatArray:
    """Directional derivative of ``y``; a missing tangent is zero."""
    xa, norm = _setup(x, kept_axis, eps)
    return norm.jvp(xa, None, None, directions("tangent", tangent, {"x": xa}))


def second_order(x: object, *, cotangent: object, tangent: Mapping[str, object],
                 kept_axis: int, eps: float) -> dict[str, FloatArray]:
    """Derivative of :func:`vjp` (``cotangent`` held fixed) along ``tangent``."""
    xa, norm = _setup(x, kept_axis, eps)
    t = directions("tangent", tangent, {"x": xa})
    return norm.second_order(xa, None, None, cotangent_like(cotangent, xa.shape), t)
