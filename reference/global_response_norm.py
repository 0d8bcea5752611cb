"""Global response normalization (GRN, ConvNeXt V2): channels compete through their spatial norms.

Axis 0 is the batch axis and ``channel_axis`` the channel axis (required: the ConvNeXt-V2 code
is channels-last, ``-1``; timm's module takes either layout); every other axis is spatial. For
every sample ``n`` and channel ``c`` over the ``m = prod(spatial sizes)`` values
``x[n, ..., c]``::

    gx[n, c] = sqrt(sum_s x[n, s, c]^2)                       (the L2 norm over space)
    nx[n, c] = gx[n, c] / (mean_c' gx[n, c'] + eps)           (eps added to the mean, no root)
    y[n, s, c] = weight[c] * (x[n, s, c] * nx[n, c]) + bias[c] + x[n, s, c]

``weight`` (gamma) and ``bias`` (beta) have shape ``(C,)`` and are required: the official code
and timm initialise both to zero, so a freshly built layer is the identity ``y = x`` (its
gradient with respect to ``weight``, ``sum g x nx``, is not zero, so training moves it). The
final ``+ x`` is the layer's own residual, part of the definition. Statistics have shape
``(N, C)`` whatever ``channel_axis`` is. There is no state.

Derivative convention at a zero norm: ``d gx / d x = x / gx`` is taken as 0 where ``gx == 0``
(the subgradient PyTorch's autograd of ``torch.norm`` returns there, and the minimum-norm
element of the subdifferential of the norm at 0); its derivative is 0 there too.
``eps = 0`` with every channel of a sample zero gives ``0 / 0 = NaN``, as IEEE arithmetic says.

>>> import numpy as np
>>> x = np.array([[[3.0, 0.0], [4.0, 2.0]]])          # N=1, L=2, C=2 (channels-last)
>>> out = forward(x, np.ones(2), np.zeros(2), channel_axis=-1, eps=0.0)
>>> out["gx"].tolist(), out["nx"].tolist()
([[5.0, 2.0]], [[1.4285714285714286, 0.5714285714285714]])
>>> out["y"][0, :, 1].tolist()
[0.0, 3.142857142857143]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

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
)
from ._layout import Layout, row_mean, row_sum

PRIMALS = ("x", "weight", "bias")
"""Differentiable inputs, in call order; all three are required."""
STATS = ("gx", "nx")
"""Statistics returned by :func:`forward` beside ``y``, each of shape ``(N, C)``: the spatial
L2 norm and the normalized response (the norm over the channel mean of the norms plus eps)."""
NCHW_EXAMPLE: dict[str, int] = {"channel_axis": 1}
"""Hyperparameters of the canonical ``(N, C, H, W)`` example: the docs draw
``layout((N, C, H, W), **NCHW_EXAMPLE)`` as the figure of the reduced set (one norm per
(n, c)); the channel mean then couples the sets of one sample."""


def input_shapes(shape: tuple[int, ...], hyper: Mapping[str, object]) -> dict[str, tuple[int, ...]]:
    """``weight`` and ``bias`` are ``(C,)`` with ``C = shape[channel_axis]``."""
    axis = hyper["channel_axis"]
    assert isinstance(axis, int)
    c = shape[axis]
    return {"weight": (c,), "bias": (c,)}


@dataclass(frozen=True)
class _Sample:
    """The input as ``(N, C, m)`` and everything the derivatives need."""

    layout: Layout
    x: FloatArray
    w: FloatArray
    b: FloatArray
    gx: FloatArray
    """(N, C): the spatial norms."""
    unit: FloatArray
    """(N, C, m): ``x / gx``, 0 where ``gx == 0`` (the chosen subgradient)."""
    d: FloatArray
    """(N, 1): ``mean_c gx + eps``."""
    nx: FloatArray
    """(N, C)."""


def _setup(x: object, weight: object, bias: object, channel_axis: int, eps: float) -> _Sample:
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
    check_nonempty_reduction("x", xa.shape, (c,))
    w, b = as_float64("weight", weight), as_float64("bias", bias)
    check_shape("weight", w, (xa.shape[c],))
    check_shape("bias", b, (xa.shape[c],))
    n_, c_ = xa.shape[0], xa.shape[c]
    layout = Layout(shape=xa.shape, perm=(0, c, *spatial), stat_shape=(n_, c_),
                    n=math.prod(xa.shape[i] for i in spatial), param_axes=(c,))
    rows = layout.to_rows(xa)
    # Each row scaled by a power of two (exact) so that its squares neither overflow nor
    # underflow on the way to the norm.
    big = np.max(np.abs(rows), axis=1)
    scalable = np.isfinite(big) & (big > 0)
    exp = np.where(scalable, np.frexp(np.where(scalable, big, 1.0))[1], 0).astype(np.int64)
    u = np.ldexp(rows, -exp[:, None])
    s = np.sqrt(row_sum(u * u))
    gx = np.ldexp(s, exp)
    unit = np.where((s > 0)[:, None], u / np.where(s > 0, s, 1.0)[:, None], 0.0)
    gx2 = gx.reshape(n_, c_)
    d = (row_mean(gx2) + e)[:, None]
    nx = gx2 / d
    # The same ratio from the scaled norms, each sample scaled by its largest exponent: exact
    # where gx itself would be subnormal (or overflow) but the ratio is an ordinary number.
    top = np.max(np.where(scalable, exp, np.iinfo(np.int64).min).reshape(n_, c_), axis=1)
    top = np.where(scalable.reshape(n_, c_).any(axis=1), top, 0)
    sc = np.ldexp(s.reshape(n_, c_), exp.reshape(n_, c_) - top[:, None])
    sd = (row_mean(sc) + np.ldexp(e, -top))[:, None]
    nx = np.where(np.isfinite(sd) & (sd > 0), sc / sd, nx)
    return _Sample(layout=layout, x=rows.reshape(n_, c_, -1), w=w, b=b, gx=gx2,
                   unit=unit.reshape(n_, c_, -1), d=d, nx=nx)


def _to_input(r: _Sample, a: FloatArray) -> FloatArray:
    return r.layout.from_rows(a.reshape(r.layout.rows, r.layout.n))


def _from_input(r: _Sample, a: FloatArray) -> FloatArray:
    return r.layout.to_rows(a).reshape(r.x.shape)


def _sum_last(a: FloatArray) -> FloatArray:
    """Correctly rounded sums over the last axis."""
    return row_sum(a.reshape(-1, a.shape[-1])).reshape(a.shape[:-1])


def _param_sum(a: FloatArray) -> FloatArray:
    """``(N, C, m)`` summed to ``(C,)``."""
    return row_sum(np.moveaxis(a, 1, 0).reshape(a.shape[1], -1))


def layout(shape: tuple[int, ...], *, channel_axis: int) -> Layout:
    """The layout of the norms :func:`forward` takes (no computation).

    >>> layout((2, 3, 5), channel_axis=-1).stat_shape, layout((2, 3, 5), channel_axis=-1).n
    ((2, 5), 3)
    """
    c = shape[channel_axis]
    with np.errstate(all="ignore"):
        return _setup(np.ones(shape), np.ones(c), np.ones(c), channel_axis, 0.0).layout


def _y(r: _Sample) -> FloatArray:
    w, b = r.w[None, :, None], r.b[None, :, None]
    return w * (r.x * r.nx[:, :, None]) + b + r.x


def forward(x: object, weight: object, bias: object, *, channel_axis: int, eps: float
            ) -> dict[str, FloatArray]:
    """Return ``{"y", "gx", "nx"}``; see the module docstring for the definition."""
    with np.errstate(all="ignore"):
        r = _setup(x, weight, bias, channel_axis, eps)
        return {"y": _to_input(r, _y(r)), "gx": r.gx, "nx": r.nx}


def _dgx(r: _Sample, tx: FloatArray) -> FloatArray:
    """``d gx`` along ``tx``: ``<x / gx, tx>`` per (n, c) (0 where ``gx == 0``)."""
    return _sum_last(r.unit * tx)


def _dnx(r: _Sample, dgx: FloatArray) -> FloatArray:
    """``d nx = (d gx - nx * mean_c d gx) / d``."""
    dm = row_mean(dgx)[:, None]
    out: FloatArray = (dgx - r.nx * dm) / r.d
    return out


def _jvp(r: _Sample, tx: FloatArray, tw: FloatArray, tb: FloatArray) -> FloatArray:
    w = r.w[None, :, None]
    dnx = _dnx(r, _dgx(r, tx))
    return (tx + w * (tx * r.nx[:, :, None] + r.x * dnx[:, :, None])
            + tw[None, :, None] * (r.x * r.nx[:, :, None]) + tb[None, :, None])


def _gx_cotangent(r: _Sample, a: FloatArray) -> FloatArray:
    """The cotangent of ``gx`` from ``a``, the cotangent of ``nx``: ``(a - mean_c(a nx)) / d``."""
    out: FloatArray = (a - row_mean(a * r.nx)[:, None]) / r.d
    return out


def _vjp(r: _Sample, g: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    w = r.w[None, :, None]
    a = r.w[None, :] * _sum_last(g * r.x)  # cotangent of nx
    gx_bar = _gx_cotangent(r, a)
    dx = g * (1.0 + w * r.nx[:, :, None]) + gx_bar[:, :, None] * r.unit
    return dx, _param_sum(g * r.x * r.nx[:, :, None]), _param_sum(g)


def vjp(x: object, weight: object, bias: object, *, cotangent: object, channel_axis: int,
        eps: float) -> dict[str, FloatArray]:
    """Gradients of ``sum(cotangent * y)`` for ``x``, ``weight`` and ``bias``."""
    with np.errstate(all="ignore"):
        r = _setup(x, weight, bias, channel_axis, eps)
        g = _from_input(r, cotangent_like(cotangent, r.layout.shape))
        dx, dw, db = _vjp(r, g)
        return {"x": _to_input(r, dx), "weight": dw, "bias": db}


def _tangents(r: _Sample, tangent: Mapping[str, object]
              ) -> tuple[FloatArray, FloatArray, FloatArray]:
    t = directions("tangent", tangent, {"x": _to_input(r, r.x), "weight": r.w, "bias": r.b})
    tx, tw, tb = t["x"], t["weight"], t["bias"]
    return (np.zeros_like(r.x) if tx is None else _from_input(r, tx),
            np.zeros_like(r.w) if tw is None else tw,
            np.zeros_like(r.b) if tb is None else tb)


def jvp(x: object, weight: object, bias: object, *, tangent: Mapping[str, object],
        channel_axis: int, eps: float) -> FloatArray:
    """Directional derivative of ``y``; missing tangent keys are zero."""
    with np.errstate(all="ignore"):
        r = _setup(x, weight, bias, channel_axis, eps)
        return _to_input(r, _jvp(r, *_tangents(r, tangent)))


def second_order(x: object, weight: object, bias: object, *, cotangent: object,
                 tangent: Mapping[str, object], channel_axis: int, eps: float
                 ) -> dict[str, FloatArray]:
    """Derivative of :func:`vjp` (``cotangent`` held fixed) along ``tangent``.

    The ``bias`` part is zero (its gradient ``sum g`` does not depend on the primals).
    """
    with np.errstate(all="ignore"):
        r = _setup(x, weight, bias, channel_axis, eps)
        g = _from_input(r, cotangent_like(cotangent, r.layout.shape))
        tx, tw, _ = _tangents(r, tangent)
        w = r.w[None, :, None]
        nx3 = r.nx[:, :, None]
        dgx = _dgx(r, tx)
        dnx = _dnx(r, dgx)
        dm = row_mean(dgx)[:, None]
        gdotx = _sum_last(g * r.x)
        a = r.w[None, :] * gdotx
        da = tw[None, :] * gdotx + r.w[None, :] * _sum_last(g * tx)
        gx_bar = _gx_cotangent(r, a)
        # d[(a - mean(a nx)) / d] = (da - mean(da nx + a dnx)) / d - gx_bar dm / d
        dgx_bar = (da - row_mean(da * r.nx + a * dnx)[:, None]) / r.d - gx_bar * dm / r.d
        # d unit = (tx - unit d gx) / gx on nonzero norms, 0 on zero norms
        safe = np.where(r.gx > 0, r.gx, 1.0)[:, :, None]
        dunit = np.where((r.gx > 0)[:, :, None], (tx - r.unit * dgx[:, :, None]) / safe, 0.0)
        dx = (g * (tw[None, :, None] * nx3 + w * dnx[:, :, None])
              + dgx_bar[:, :, None] * r.unit + gx_bar[:, :, None] * dunit)
        dw = _param_sum(g * (tx * nx3 + r.x * dnx[:, :, None]))
        return {"x": _to_input(r, dx), "weight": dw, "bias": np.zeros_like(r.b)}
