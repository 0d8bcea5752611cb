"""Conditional instance normalization: instance norm with one (weight, bias) row per style.

Dumoulin, Shlens and Kudlur (2017), *A Learned Representation for Artistic Style*. ``x`` is
``(N, C, *spatial)`` (axis 0 the batch axis, ``channel_axis`` the channel axis, default 1);
``weight`` and ``bias`` are ``(S, C)`` tables, one row per style; the int64 input ``style`` of
shape ``(N,)`` selects each sample's row, ``0 <= style[k] < S``. For every sample ``k`` and
channel ``c``, over the ``n`` spatial values of ``x[k, c, ...]``::

    mean[k, c] = (1/n) sum x[k, c, ...]
    var[k, c]  = (1/n) sum (x[k, c, ...] - mean[k, c])^2        (biased, as instance_norm)
    rstd[k, c] = 1 / sqrt(var[k, c] + eps)
    y[k, c, ...] = (x[k, c, ...] - mean[k, c]) * rstd[k, c] * weight[style[k], c]
                   + bias[style[k], c]

This is :mod:`.instance_norm` with the per-(sample, channel) affine ``weight[style]``,
``bias[style]``; the module evaluates it through the shared core (instance norm's layout, the
affine spanning the batch and channel axes). The gradients of the tables are scatter-adds: row
``s`` receives the sum over the samples with ``style[k] = s`` (each sum correctly rounded over
all its terms); rows no sample selects get 0. ``style`` is not differentiated.

>>> import numpy as np
>>> x = np.array([[[1.0, 3.0]], [[0.0, 4.0]]])          # N=2, C=1, n=2
>>> w, b = np.array([[1.0], [10.0], [5.0]]), np.array([[0.0], [1.0], [2.0]])
>>> forward(x, w, b, style=[1, 1], eps=0.0)["y"].tolist()
[[[-9.0, 11.0]], [[-9.0, 11.0]]]
>>> vjp(x, w, b, style=[1, 1], cotangent=np.ones((2, 1, 2)), eps=0.0)["bias"].tolist()
[[0.0], [4.0], [0.0]]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from . import instance_norm
from ._checks import (
    FloatArray,
    _to_array,
    as_float64,
    check_axis,
    check_eps,
    check_ndim,
    check_nonempty_reduction,
    cotangent_like,
    directions,
)
from ._layout import Layout, sum_over
from ._standardize import AffineNorm

PRIMALS = ("x", "weight", "bias")
"""Differentiable inputs, in call order; ``weight`` and ``bias`` are required ``(S, C)`` tables."""
STATS = ("mean", "var", "rstd")
"""Statistics returned by :func:`forward` beside ``y``, each of shape ``(N, C)``."""
CONSTANTS: dict[str, str] = {"style": "int64"}
"""Non-differentiable integer input: each sample's style (row of the tables)."""
NCHW_EXAMPLE: dict[str, int] = {"channel_axis": 1}
"""Hyperparameters of the canonical ``(N, C, H, W)`` example (the figure of the reduced set)."""

IntArray = npt.NDArray[np.int64]


def input_shapes(shape: tuple[int, ...], hyper: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """A catalog case's tables have ``S = N + 2`` rows (so that some rows go unused).

    ``style`` is left out: a catalog gives it as a literal list.

    >>> input_shapes((3, 4, 5), {})
    {'weight': (5, 4), 'bias': (5, 4)}
    """
    c = int(hyper.get("channel_axis", 1)) % len(shape)
    table = (shape[0] + 2, shape[c])
    return {"weight": table, "bias": table}


def check_style(style: object, batch: int, styles: int) -> IntArray:
    """``style`` as a 1-d int64 array of ``batch`` entries in ``[0, styles)``."""
    arr = _to_array("style", style)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"argument 'style': got dtype {arr.dtype}, expected integers (one style "
                        "index per sample); floats and bools are rejected rather than silently "
                        "converted")
    if arr.shape != (batch,):
        raise ValueError(f"argument 'style': got shape {arr.shape}, expected ({batch},): one "
                         "style index per sample of x")
    out = arr.astype(np.int64)
    bad = (out < 0) | (out >= styles)
    if bool(np.any(bad)):
        raise ValueError(f"argument 'style': got {out.tolist()}, expected indices in "
                         f"[0, {styles}) (the tables have {styles} rows)")
    return out


def _setup(x: object, weight: object, bias: object, style: object, channel_axis: int,
           eps: float) -> tuple[FloatArray, FloatArray, FloatArray, IntArray, AffineNorm]:
    xa = as_float64("x", x)
    check_ndim("x", xa, 3)
    c = check_axis("channel_axis", channel_axis, xa.ndim)
    check_nonempty_reduction("x", xa.shape, tuple(i for i in range(1, xa.ndim) if i != c))
    base = instance_norm.layout(xa.shape, channel_axis=channel_axis)
    e = check_eps(eps)
    tables = []
    for name, value in (("weight", weight), ("bias", bias)):
        t = as_float64(name, value)
        if t.ndim != 2 or t.shape[1] != xa.shape[c] or t.shape[0] < 1:
            raise ValueError(f"argument {name!r}: got shape {t.shape}, expected (S, "
                             f"{xa.shape[c]}): one row of C = {xa.shape[c]} values per style")
        tables.append(t)
    w, b = tables
    if b.shape != w.shape:
        raise ValueError(f"argument 'bias': got shape {b.shape}, expected the weight's "
                         f"{w.shape} (one row per style in both tables)")
    s = check_style(style, xa.shape[0], w.shape[0])
    layout = dataclasses.replace(base, param_axes=(0, c))
    return xa, w, b, s, AffineNorm(layout=layout, eps=e, center=True)


def layout(shape: tuple[int, ...], *, channel_axis: int = 1) -> Layout:
    """The reduction layout (instance norm's) for an input of ``shape``.

    >>> layout((2, 3, 5)).stat_shape
    (2, 3)
    """
    return instance_norm.layout(shape, channel_axis=channel_axis)


def _scatter_sum(a: FloatArray, norm: AffineNorm, style: IntArray, styles: int) -> FloatArray:
    """Sum an input-shaped array to the ``(S, C)`` table: all of a row's terms in one sum.

    Row ``s`` is the correctly rounded sum over every element of the samples with style ``s``
    (not a sum of per-sample sums, which would round twice).
    """
    c = norm.layout.param_axes[1]
    out = np.zeros((styles, a.shape[c]))
    others = tuple(i for i in range(a.ndim) if i != c)
    for s in np.unique(style):
        out[s] = sum_over(a[style == s], others)
    return out


def forward(x: object, weight: object, bias: object, *, style: object, channel_axis: int = 1,
            eps: float) -> dict[str, FloatArray]:
    """Return ``{"y", "mean", "var", "rstd"}``; see the module docstring."""
    xa, w, b, s, norm = _setup(x, weight, bias, style, channel_axis, eps)
    return norm.outputs(xa, w[s], b[s])


def vjp(x: object, weight: object, bias: object, *, style: object, cotangent: object,
        channel_axis: int = 1, eps: float) -> dict[str, FloatArray]:
    """Gradients of ``sum(cotangent * y)`` for x and the two tables (scatter-added by style)."""
    xa, w, _b, s, norm = _setup(x, weight, bias, style, channel_axis, eps)
    g = cotangent_like(cotangent, xa.shape)
    gx = norm.vjp(xa, w[s], None, g)["x"]
    lay = norm.layout
    with np.errstate(all="ignore"):
        z = lay.from_rows(norm.forward(xa, None, None)[1].z)
        return {"x": gx, "weight": _scatter_sum(g * z, norm, s, w.shape[0]),
                "bias": _scatter_sum(g, norm, s, w.shape[0])}


def jvp(x: object, weight: object, bias: object, *, style: object,
        tangent: Mapping[str, object], channel_axis: int = 1, eps: float) -> FloatArray:
    """Directional derivative of ``y``; missing tangent keys are zero."""
    xa, w, b, s, norm = _setup(x, weight, bias, style, channel_axis, eps)
    t = directions("tangent", tangent, {"x": xa, "weight": w, "bias": b})
    tw, tb = t["weight"], t["bias"]
    assert tw is not None
    assert tb is not None
    return norm.jvp(xa, w[s], b[s], {"x": t["x"], "weight": tw[s], "bias": tb[s]})


def second_order(x: object, weight: object, bias: object, *, style: object, cotangent: object,
                 tangent: Mapping[str, object], channel_axis: int = 1, eps: float
                 ) -> dict[str, FloatArray]:
    """Derivative of :func:`vjp` (``cotangent`` held fixed) along ``tangent``."""
    xa, w, b, s, norm = _setup(x, weight, bias, style, channel_axis, eps)
    g = cotangent_like(cotangent, xa.shape)
    t = directions("tangent", tangent, {"x": xa, "weight": w, "bias": b})
    tw, tx = t["weight"], t["x"]
    assert tw is not None
    assert tx is not None
    so = norm.second_order(xa, w[s], b[s], g, {"x": tx, "weight": tw[s]})
    with np.errstate(all="ignore"):
        # d(sum g z) along tx: g times the core's JVP of z (the weight's second order)
        dz = norm.jvp(xa, None, None, {"x": tx})
        return {"x": so["x"], "weight": _scatter_sum(g * dz, norm, s, w.shape[0]),
                "bias": np.zeros_like(b)}
