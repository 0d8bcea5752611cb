"""Lp normalization: divide each vector along ``axis`` by its p-norm, floored at ``eps``.

For every index ``i`` of the other axes, over the ``n = x.shape[axis]`` values ``x[i, :]``::

    norm[i] = (sum_j |x[i, j]|^p)^(1/p)                      (p >= 1, finite)
    y[i, j] = x[i, j] / max(norm[i], eps)

At ``norm == eps`` the unclamped branch ``x / norm`` is used (the value is the same; the
derivatives are those of ``x / norm``). In the clamped branch ``norm < eps`` the map is linear,
``y = x / eps``. ``eps = 0`` with a zero vector gives ``0 / 0 = NaN``, as IEEE arithmetic says.

Derivative conventions at kinks: ``sign(0) = 0`` for ``p = 1``; for ``1 < p < 2`` the second
order is undefined at an element equal to zero and is NaN there (see the spec page).

>>> import numpy as np
>>> out = forward(np.array([[3.0, 4.0], [0.0, 0.0]]), p=2, axis=-1, eps=1e-12)
>>> out["y"].tolist(), out["norm"].tolist()
([[0.6, 0.8], [0.0, 0.0]], [5.0, 0.0])
>>> forward(np.array([1.0, -3.0]), p=1, axis=0, eps=0.0)["y"].tolist()
[0.25, -0.75]
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
    check_nonempty_reduction,
    check_real,
    cotangent_like,
    directions,
)
from ._layout import Layout, row_sum

PRIMALS = ("x",)
"""Differentiable inputs, in call order."""
STATS = ("norm",)
"""Statistics returned by :func:`forward` beside ``y``: the unclamped p-norm, shape ``x.shape``
without ``axis``."""
NCHW_EXAMPLE: dict[str, int] = {"axis": 1}
"""Hyperparameters of the canonical ``(N, C, H, W)`` example: the docs draw
``layout((N, C, H, W), **NCHW_EXAMPLE)`` as the figure of the reduced set."""


@dataclass(frozen=True)
class _Rows:
    """One vector per row: the scaled input, the output and what the derivatives need."""

    layout: Layout
    x: FloatArray
    y: FloatArray
    s: FloatArray
    """The norm of ``x * 2**-e``: ``norm = s * 2**e`` exactly, without overflow or underflow."""
    e: npt.NDArray[np.int64]
    clamped: npt.NDArray[np.bool_]
    p: float
    eps: float

    def over_divisor(self, v: FloatArray) -> FloatArray:
        """``v / max(norm, eps)`` per row, dividing by the scaled norm to avoid overflow."""
        unclamped = np.ldexp(v / self.s[:, None], -self.e[:, None])
        return np.where(self.clamped[:, None], v / self.eps if self.eps else 0.0, unclamped)

    def dnorm(self) -> FloatArray:
        """``w = d norm / d x = sign(x) |y|^(p-1)`` on unclamped rows (sign(0) = 0)."""
        if self.p == 1.0:
            return np.sign(self.x)
        if self.p == 2.0:
            return self.y
        return np.sign(self.x) * np.power(np.abs(self.y), self.p - 1.0)


def _rows(x: object, p: object, axis: object, eps: object) -> _Rows:
    xa = as_float64("x", x)
    check_ndim("x", xa, 1)
    a = check_axis("axis", axis, xa.ndim)
    pv = check_real("p", p, minimum=1.0)
    e_ = check_eps(eps)
    check_nonempty_reduction("x", xa.shape, (a,))
    kept = tuple(i for i in range(xa.ndim) if i != a)
    layout = Layout(shape=xa.shape, perm=(*kept, a), stat_shape=tuple(xa.shape[i] for i in kept),
                    n=xa.shape[a], param_axes=())
    x2 = layout.to_rows(xa)
    # Scale each row by a power of two so that max|u| is in [0.5, 1): exact, and no square or
    # p-th power can overflow or underflow on the way to the norm.
    m = np.max(np.abs(x2), axis=1)
    scalable = np.isfinite(m) & (m > 0)
    exp = np.where(scalable, np.frexp(np.where(scalable, m, 1.0))[1], 0).astype(np.int64)
    u = np.ldexp(x2, -exp[:, None])
    if pv == 1.0:
        s = row_sum(np.abs(u))
    elif pv == 2.0:
        s = np.sqrt(row_sum(u * u))
    else:
        # Dividing by the row maximum makes the largest term exactly 1, so even a large p
        # cannot underflow the sum; the rounding of the ratios shrinks by 1/p in the root.
        mu = np.where(scalable, np.max(np.abs(u), axis=1), 1.0)
        s = mu * np.power(row_sum(np.power(np.abs(u) / mu[:, None], pv)), 1.0 / pv)
    norm = np.ldexp(s, exp)
    clamped = norm < e_
    y = np.where(clamped[:, None], x2 / e_ if e_ else 0.0, u / s[:, None])
    return _Rows(layout=layout, x=x2, y=y, s=s, e=exp, clamped=clamped, p=pv, eps=e_)


def layout(shape: tuple[int, ...], *, axis: int) -> Layout:
    """The layout :func:`forward` uses: one row per vector along ``axis`` (no computation).

    >>> layout((2, 3, 4), axis=1).stat_shape, layout((2, 3, 4), axis=1).n
    ((2, 4), 3)
    """
    with np.errstate(all="ignore"):
        return _rows(np.ones(shape), 2.0, axis, 0.0).layout


def forward(x: object, *, p: float, axis: int, eps: float) -> dict[str, FloatArray]:
    """Return ``{"y", "norm"}``; see the module docstring for the definition."""
    with np.errstate(all="ignore"):
        r = _rows(x, p, axis, eps)
        norm = np.ldexp(r.s, r.e)
    return {"y": r.layout.from_rows(r.y), "norm": r.layout.stats_from_rows(norm)}


def _jvp_rows(r: _Rows, t2: FloatArray, w: FloatArray) -> FloatArray:
    return r.over_divisor(np.where(r.clamped[:, None], t2, t2 - r.y * row_sum(w * t2)[:, None]))


def _vjp_rows(r: _Rows, g2: FloatArray, w: FloatArray) -> FloatArray:
    return r.over_divisor(np.where(r.clamped[:, None], g2, g2 - w * row_sum(g2 * r.y)[:, None]))


def vjp(x: object, *, cotangent: object, p: float, axis: int, eps: float
        ) -> dict[str, FloatArray]:
    """Gradient of ``sum(cotangent * y)``: ``(g - (g.y) w) / norm``, or ``g / eps`` if clamped."""
    with np.errstate(all="ignore"):
        r = _rows(x, p, axis, eps)
        g2 = r.layout.to_rows(cotangent_like(cotangent, r.layout.shape))
        return {"x": r.layout.from_rows(_vjp_rows(r, g2, r.dnorm()))}


def jvp(x: object, *, tangent: Mapping[str, object], p: float, axis: int, eps: float
        ) -> FloatArray:
    """Directional derivative ``(t - y (w.t)) / norm``, or ``t / eps`` if clamped."""
    with np.errstate(all="ignore"):
        r = _rows(x, p, axis, eps)
        t = directions("tangent", tangent, {"x": r.layout.from_rows(r.x)})["x"]
        assert t is not None
        return r.layout.from_rows(_jvp_rows(r, r.layout.to_rows(t), r.dnorm()))


def second_order(x: object, *, cotangent: object, tangent: Mapping[str, object], p: float,
                 axis: int, eps: float) -> dict[str, FloatArray]:
    """Derivative of :func:`vjp` (``cotangent`` held fixed) along ``tangent``.

    Zero on clamped rows (the map is linear there). For ``1 < p < 2`` it is NaN at elements
    ``x == 0``, where ``|x|^(p-2)`` is unbounded.
    """
    with np.errstate(all="ignore"):
        r = _rows(x, p, axis, eps)
        g2 = r.layout.to_rows(cotangent_like(cotangent, r.layout.shape))
        t = directions("tangent", tangent, {"x": r.layout.from_rows(r.x)})["x"]
        assert t is not None
        return {"x": r.layout.from_rows(_second_order_rows(r, g2, r.layout.to_rows(t)))}


def _second_order_rows(r: _Rows, g2: FloatArray, t2: FloatArray) -> FloatArray:
    # v = (g - c w) / norm with c = g.y, so v' = -(c' w + c w') / norm - v norm' / norm.
    w = r.dnorm()
    dnorm_over_norm = r.over_divisor(row_sum(w * t2)[:, None])
    v = _vjp_rows(r, g2, w)
    c = row_sum(g2 * r.y)[:, None]
    dc = row_sum(g2 * _jvp_rows(r, t2, w))[:, None]
    if r.p == 1.0:
        dw = np.zeros_like(w)
    else:
        # d/dx_j of sign(x_j) |x_j|^(p-1) norm^(1-p), written with y = x / norm.
        curv = t2 if r.p == 2.0 else np.power(np.abs(r.y), r.p - 2.0) * t2
        dw = (r.p - 1.0) * (r.over_divisor(curv) - w * dnorm_over_norm)
    dv = -r.over_divisor(dc * w + c * dw) - v * dnorm_over_norm
    if 1.0 < r.p < 2.0:
        dv = np.where(r.x == 0.0, np.nan, dv)
    return np.where(r.clamped[:, None], 0.0, dv)
