"""Weight normalization (Salimans and Kingma 2016): a weight as magnitude g times a unit direction.

The input is a weight tensor, not an activation: ``x`` is the direction parameter ``v``
(PyTorch's ``weight_v`` / ``original1``, Flax's wrapped ``kernel``) and ``g`` is the magnitude.
``kept_axis`` says which axis keeps one norm per index; the norm is taken over all the others::

    kept_axis = k (an int):  one slice per index i of axis k, x[..., i, ...] (Python axis rules:
                             -1 is the last axis)
    kept_axis = "none":      one slice, the whole tensor

    norm[s] = sqrt(sum_{j in s} x_j^2)                        (the statistic: no eps in it)
    w_j     = g[s] * x_j / sqrt(norm[s]^2 + eps)              (j in slice s)

``g`` has the shape of ``x`` with every normalized axis set to 1 (PyTorch's ``weight_g``:
``(O, 1, 1, 1)`` for a conv weight with ``kept_axis=0``, all ones for ``"none"``). ``eps >= 0``
is added to the squared norm, inside the root (Flax's rule; PyTorch has no eps: ``eps = 0``).
At a zero slice with ``eps > 0``, ``w = 0`` and every derivative is finite; with ``eps = 0`` a
zero slice gives ``g * 0 / 0 = NaN`` in ``w`` and in every derivative, as IEEE arithmetic says
(and as PyTorch computes).

PyTorch's ``dim=-1`` is NOT the last axis: ``torch._weight_norm`` and ``norm_except_dim`` read
``-1`` as "no kept axis" (``dim=None`` is mapped to ``-1``), so PyTorch's ``dim=-1`` is
``kept_axis="none"`` and the last axis is ``kept_axis=-1`` = PyTorch's ``dim=x.ndim-1``.

>>> import numpy as np
>>> v = np.array([[3.0, 4.0], [0.0, 2.0]])
>>> out = forward(v, np.array([[2.0], [0.5]]), kept_axis=0, eps=0.0)
>>> out["y"].tolist(), out["norm"].tolist()
([[1.2, 1.6], [0.0, 0.5]], [[5.0], [2.0]])
>>> forward(v, np.ones((1, 1)), kept_axis="none", eps=0.0)["norm"].tolist()
[[5.385164807134504]]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ._checks import (
    FloatArray,
    as_float64,
    check_axis,
    check_eps,
    check_ndim,
    check_shape,
    cotangent_like,
    directions,
    ieee,
)
from ._layout import Layout, row_sum

PRIMALS = ("x", "g")
"""Differentiable inputs, in call order: the direction ``v`` (named ``x``, the weight being
reparametrized) and the magnitude ``g``; both are required."""
STATS = ("norm",)
"""Statistics returned by :func:`forward` beside ``y``: ``||x||`` per slice (without eps), in
``g``'s shape."""
NCHW_EXAMPLE: dict[str, object] = {"kept_axis": 0}
"""Hyperparameters of the canonical ``(N, C, H, W)`` example, read as a conv weight
``(O, I, kh, kw)``: one norm per output channel over ``(I, kh, kw)`` (PyTorch's default)."""
WHOLE = "none"
"""The ``kept_axis`` value for one norm over the whole tensor."""


def kept_axes(kept_axis: object, ndim: int) -> tuple[int, ...]:
    """The kept axes (empty for ``"none"``), validated and normalized."""
    if isinstance(kept_axis, str):
        if kept_axis != WHOLE:
            raise ValueError(f"argument 'kept_axis': got {kept_axis!r}, expected an integer "
                             f"axis or {WHOLE!r} (one norm over the whole tensor)")
        return ()
    return (check_axis("kept_axis", kept_axis, ndim),)


def g_shape(shape: tuple[int, ...], kept_axis: object) -> tuple[int, ...]:
    """``shape`` with every normalized axis set to 1."""
    kept = kept_axes(kept_axis, len(shape))
    return tuple(d if i in kept else 1 for i, d in enumerate(shape))


def input_shapes(shape: tuple[int, ...], hyper: Mapping[str, object]
                 ) -> dict[str, tuple[int, ...]]:
    """``g``: the shape of ``x`` with every normalized axis set to 1."""
    return {"g": g_shape(shape, hyper["kept_axis"])}


@dataclass(frozen=True)
class _Slices:
    """One slice per row: the direction, its scaled norm and what the derivatives need."""

    layout: Layout
    x: FloatArray
    g: FloatArray
    """(rows,): the magnitude of each slice."""
    r: FloatArray
    """(rows,): ``1 / sqrt(norm^2 + eps)`` (inf for a subnormal slice with eps = 0)."""
    xr: FloatArray
    """``x * r`` from the scaled slice: finite (at most 1 in magnitude) even where ``r`` is not."""
    norm: FloatArray


def _setup(x: object, g: object, kept_axis: object, eps: object) -> _Slices:
    xa = as_float64("x", x)
    check_ndim("x", xa, 1)
    if xa.size == 0:
        raise ValueError(f"argument 'x': got shape {xa.shape}, expected a non-empty weight")
    kept = kept_axes(kept_axis, xa.ndim)
    e = check_eps(eps)
    ga = as_float64("g", g)
    check_shape("g", ga, g_shape(xa.shape, kept_axis))
    normed = tuple(i for i in range(xa.ndim) if i not in kept)
    layout = Layout(shape=xa.shape, perm=(*kept, *normed),
                    stat_shape=tuple(xa.shape[i] for i in kept),
                    n=int(np.prod([xa.shape[i] for i in normed], dtype=np.int64)),
                    param_axes=kept)
    rows = layout.to_rows(xa)
    # Each slice scaled by a power of two (exact) so that its squares neither overflow nor
    # underflow on the way to the norm.
    big = np.max(np.abs(rows), axis=1)
    scalable = np.isfinite(big) & (big > 0)
    exp: npt.NDArray[np.int64] = np.where(
        scalable, np.frexp(np.where(scalable, big, 1.0))[1], 0).astype(np.int64)
    u = np.ldexp(rows, -exp[:, None])
    su = row_sum(u * u)
    norm = np.ldexp(np.sqrt(su), exp)
    # r = 1/sqrt(su 2^(2e) + eps): scaled where 2^(2e) could overflow (e >= 0) or where eps is
    # 0 (nothing to lose); direct where the slice is small and eps may dominate it.
    # d = sqrt(su + eps 2^(-2e)) is the scaled slice's divisor, so that x r = u / d never
    # overflows; dividing (one rounding) makes a one-element slice exactly +-1.
    wide = (exp >= 0) | (e == 0.0)
    d = np.sqrt(su + np.ldexp(e, -2 * np.where(wide, exp, 0)))
    d_narrow = np.sqrt(np.ldexp(su, 2 * exp) + e)
    xr = np.where(wide[:, None], u / d[:, None], rows / d_narrow[:, None])
    r = np.where(wide, np.ldexp(1.0 / d, -exp), 1.0 / d_narrow)
    return _Slices(layout=layout, x=rows, g=ga.reshape(-1), r=r, xr=xr, norm=norm)


def layout(shape: tuple[int, ...], *, kept_axis: object) -> Layout:
    """The layout :func:`forward` uses: one row per slice (no computation).

    >>> layout((4, 3, 2, 2), kept_axis=0).stat_shape, layout((4, 3, 2, 2), kept_axis=0).n
    ((4,), 12)
    """
    with np.errstate(all="ignore"):
        return _setup(np.ones(shape), np.ones(g_shape(shape, kept_axis)), kept_axis, 0.0).layout


def _rows_to_x(s: _Slices, a: FloatArray) -> FloatArray:
    return s.layout.from_rows(a)


def _per_slice(s: _Slices, a: FloatArray) -> FloatArray:
    """A per-slice vector in ``g``'s shape."""
    return a.reshape(g_shape_of(s))


def g_shape_of(s: _Slices) -> tuple[int, ...]:
    return tuple(d if i in s.layout.param_axes else 1 for i, d in enumerate(s.layout.shape))


@ieee
def forward(x: object, g: object, *, kept_axis: int | str, eps: float) -> dict[str, FloatArray]:
    """Return ``{"y", "norm"}``: ``y`` is the weight ``w``; see the module docstring."""
    s = _setup(x, g, kept_axis, eps)
    # x r from the scaled slice is <= 1 in magnitude: g * (x r) overflows only if w does
    y = s.g[:, None] * s.xr
    return {"y": _rows_to_x(s, y), "norm": _per_slice(s, s.norm)}


@ieee
def vjp(x: object, g: object, *, cotangent: object, kept_axis: int | str, eps: float
        ) -> dict[str, FloatArray]:
    """``g_bar = r <w_bar, x>``, ``x_bar = g r (w_bar - r^2 <w_bar, x> x)`` per slice."""
    s = _setup(x, g, kept_axis, eps)
    wb = s.layout.to_rows(cotangent_like(cotangent, s.layout.shape))
    xr = s.xr
    c = row_sum(wb * xr)  # r <w_bar, x>
    dx = s.g[:, None] * s.r[:, None] * (wb - xr * c[:, None])
    return {"x": _rows_to_x(s, dx), "g": _per_slice(s, c)}


def _tangents(s: _Slices, tangent: Mapping[str, object]) -> tuple[FloatArray, FloatArray]:
    t = directions("tangent", tangent,
                   {"x": _rows_to_x(s, s.x), "g": _per_slice(s, s.g)})
    tx, tg = t["x"], t["g"]
    assert tx is not None
    assert tg is not None
    return s.layout.to_rows(tx), tg.reshape(-1)


@ieee
def jvp(x: object, g: object, *, tangent: Mapping[str, object], kept_axis: int | str,
        eps: float) -> FloatArray:
    """``w' = g' r x + g r (x' - r^2 <x, x'> x)``; a missing tangent is zero."""
    s = _setup(x, g, kept_axis, eps)
    tx, tg = _tangents(s, tangent)
    xr = s.xr
    a = row_sum(xr * tx)  # r <x, x'>
    out = tg[:, None] * xr + s.g[:, None] * s.r[:, None] * (tx - xr * a[:, None])
    return _rows_to_x(s, out)


@ieee
def second_order(x: object, g: object, *, cotangent: object, tangent: Mapping[str, object],
                 kept_axis: int | str, eps: float) -> dict[str, FloatArray]:
    """Derivative of :func:`vjp` (``cotangent`` held fixed) along ``tangent``.

    Per slice, with ``u = r x``, ``c = <w_bar, u>`` (so ``g_bar = c``), ``a = <u, x'>``,
    ``r' = -r^2 a`` and ``u' = r (x' - u a)``::

        g_bar' = c' = <w_bar, u'>
        x_bar' = (g' r - g r^2 a) (w_bar - u c) - g r (u' c + u c')
    """
    s = _setup(x, g, kept_axis, eps)
    wb = s.layout.to_rows(cotangent_like(cotangent, s.layout.shape))
    tx, tg = _tangents(s, tangent)
    r = s.r[:, None]
    u = s.xr
    c = row_sum(wb * u)[:, None]
    a = row_sum(u * tx)[:, None]
    du = r * (tx - u * a)
    dc = row_sum(wb * du)[:, None]
    gg = s.g[:, None]
    dx = (tg[:, None] * r - gg * r * r * a) * (wb - u * c) - gg * r * (du * c + u * dc)
    return {"x": _rows_to_x(s, dx), "g": _per_slice(s, dc[:, 0])}
