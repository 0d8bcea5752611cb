"""RMS normalization: divide by the root mean square over the trailing axes ``axis, ..., ndim-1``.

For every index ``i`` of the leading axes ``x.shape[:axis]``, over the ``n = prod(x.shape[axis:])``
values ``x[i, ...]``::

    mean_square[i] = (1/n) sum x[i, ...]^2
    rrms[i]        = 1 / sqrt(mean_square[i] + eps)
    y[i, ...]      = x[i, ...] * rrms[i] * weight + bias

There is no mean subtraction. ``weight`` and ``bias`` have shape ``x.shape[axis:]`` and are
optional (absent: 1 and 0); the bias is added after the scale, as in the RMSNorm paper's
``gamma * xhat + beta``. ``eps`` sits inside the square root (PyTorch, Flax, Keras, Llama and
T5 agree; the RMSNorm paper's ``x / (rms + eps)`` is a different method).

>>> import numpy as np
>>> out = forward(np.array([[3.0, -4.0]]), axis=-1, eps=0.0)
>>> out["y"].tolist(), out["mean_square"].tolist()
([[0.848528137423857, -1.131370849898476]], [12.5])
>>> out["rrms"].round(9).tolist()
[0.282842712]
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
STATS = ("mean_square", "rrms")
"""Statistics returned by :func:`forward` beside ``y``, each of shape ``x.shape[:axis]``."""
NCHW_EXAMPLE: dict[str, int] = {"axis": 1}
"""Hyperparameters of the canonical ``(N, C, H, W)`` example: the docs draw
``layout((N, C, H, W), **NCHW_EXAMPLE)`` as the figure of the reduced set."""


def _setup(x: object, weight: object, bias: object, axis: int, eps: float
           ) -> tuple[FloatArray, FloatArray | None, FloatArray | None, AffineNorm]:
    xa = as_float64("x", x)
    check_ndim("x", xa, 1)
    a = check_axis("axis", axis, xa.ndim)
    e = check_eps(eps)
    reduced = tuple(range(a, xa.ndim))
    check_nonempty_reduction("x", xa.shape, reduced)
    w = optional_float64("weight", weight)
    check_shape("weight", w, xa.shape[a:])
    b = optional_float64("bias", bias)
    check_shape("bias", b, xa.shape[a:])
    layout = Layout(shape=xa.shape, perm=tuple(range(xa.ndim)), stat_shape=xa.shape[:a],
                    n=math.prod(xa.shape[a:]), param_axes=reduced)
    # Uncentered moments: AffineNorm's "var" is then the mean square and its rstd the rrms.
    return xa, w, b, AffineNorm(layout=layout, eps=e, center=False)


def layout(shape: tuple[int, ...], *, axis: int) -> Layout:
    """The reduction layout :func:`forward` uses for an input of ``shape`` (no computation).

    >>> layout((2, 3, 4), axis=1).stat_shape, layout((2, 3, 4), axis=1).n
    ((2,), 12)
    """
    return _setup(np.zeros(shape), None, None, axis, 0.0)[3].layout


def forward(x: object, weight: object = None, bias: object = None, *, axis: int, eps: float
            ) -> dict[str, FloatArray]:
    """Return ``{"y", "mean_square", "rrms"}``; see the module docstring for the definition."""
    xa, w, b, norm = _setup(x, weight, bias, axis, eps)
    return norm.outputs(xa, w, b)


def vjp(x: object, weight: object = None, bias: object = None, *, cotangent: object, axis: int,
        eps: float) -> dict[str, FloatArray]:
    """Gradients of ``sum(cotangent * y)`` for each primal that is not None."""
    xa, w, b, norm = _setup(x, weight, bias, axis, eps)
    return norm.vjp(xa, w, b, cotangent_like(cotangent, xa.shape))


def jvp(x: object, weight: object = None, bias: object = None, *,
        tangent: Mapping[str, object], axis: int, eps: float) -> FloatArray:
    """Directional derivative of ``y``; missing tangent keys are zero."""
    xa, w, b, norm = _setup(x, weight, bias, axis, eps)
    return norm.jvp(xa, w, b, directions("tangent", tangent, {"x": xa, "weight": w, "bias": b}))


def second_order(x: object, weight: object = None, bias: object = None, *, cotangent: object,
                 tangent: Mapping[str, object], axis: int, eps: float) -> dict[str, FloatArray]:
    """Derivative of :func:`vjp` (``cotangent`` held fixed) along ``tangent``."""
    xa, w, b, norm = _setup(x, weight, bias, axis, eps)
    t = directions("tangent", tangent, {"x": xa, "weight": w, "bias": b})
    return norm.second_order(xa, w, b, cotangent_like(cotangent, xa.shape), t)
