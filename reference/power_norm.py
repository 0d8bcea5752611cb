"""Power normalization: divide by the power mean of the trailing axes, then weight and bias.

For every index ``i`` of the leading axes ``x.shape[:axis]``, over the ``n = prod(x.shape[axis:])``
values ``x[i, ...]`` and for any real ``p > 0``::

    mean_power[i] = (1/n) sum |x[i, ...]|^p
    rscale[i]     = (mean_power[i] + eps)^(-1/p)
    y[i, ...]     = x[i, ...] * rscale[i] * weight + bias

``(mean |x|^p)^(1/p)`` is the power mean of ``|x|``; ``eps`` is added to the mean of the p-th
powers, inside the root, so that ``p = 2`` is :mod:`rms_norm` exactly (``mean_power`` is its
``mean_square`` and ``rscale`` its ``rrms``; the reference then computes through rms_norm's core
and agrees with it bit for bit). ``weight`` and ``bias`` have shape ``x.shape[axis:]`` and are
optional (absent: 1 and 0). This is not :mod:`lp_norm`, which divides by the p-norm (a sum, not a
mean), takes ``p >= 1``, floors the norm at ``eps`` and has no affine.

Derivatives of ``phi(x) = |x|^p`` at ``x = 0``: ``phi'(0) = 0`` for every ``p`` (``p sign(x)
|x|^(p-1)`` with ``sign(0) = 0``; for ``p > 1`` it is the derivative, for ``p <= 1`` the
symmetric derivative, since ``|h|^p - |-h|^p = 0``), and ``phi''(0) = 0`` for ``p != 2`` (the
derivative for ``p > 2``, the same convention below 2; ``phi''(0) = 2`` at ``p = 2``). A zero
element therefore does not move the statistic to first order. An all-zero row has
``mean_power = 0``, ``rscale = eps^(-1/p)`` and ``y = bias``; with ``eps = 0`` it is
``0 * inf = NaN`` (IEEE), as in rms_norm.

>>> import numpy as np
>>> out = forward(np.array([[1.0, -4.0]]), p=1, axis=-1, eps=0.0)
>>> out["y"].tolist(), out["mean_power"].tolist(), out["rscale"].tolist()
([[0.4, -1.6]], [2.5], [0.4])
>>> forward(np.array([[9.0, 1.0]]), p=0.5, axis=-1, eps=0.0)["rscale"].tolist()
[0.25]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from . import rms_norm
from ._checks import (
    FloatArray,
    as_float64,
    check_axis,
    check_eps,
    check_ndim,
    check_nonempty_reduction,
    check_real,
    check_shape,
    cotangent_like,
    directions,
    ieee,
    optional_float64,
)
from ._layout import Layout, row_mean
from ._standardize import _pow2_row_scale

PRIMALS = ("x", "weight", "bias")
"""Differentiable inputs, in call order; ``weight`` and ``bias`` may be None."""
STATS = ("mean_power", "rscale")
"""Statistics returned by :func:`forward` beside ``y``, each of shape ``x.shape[:axis]``."""
NCHW_EXAMPLE: dict[str, int] = {"axis": 1}
"""Hyperparameters of the canonical ``(N, C, H, W)`` example: the docs draw
``layout((N, C, H, W), **NCHW_EXAMPLE)`` as the figure of the reduced set."""


@dataclass(frozen=True)
class _Call:
    layout: Layout
    x: FloatArray
    weight: FloatArray | None
    bias: FloatArray | None
    p: float
    eps: float
    axis: int

    def w(self) -> FloatArray | float:
        return 1.0 if self.weight is None else self.layout.param_view(self.weight)


def _setup(x: object, weight: object, bias: object, p: object, axis: object, eps: object
           ) -> _Call:
    xa = as_float64("x", x)
    check_ndim("x", xa, 1)
    a = check_axis("axis", axis, xa.ndim)
    pv = check_real("p", p, minimum=0.0, exclusive=True)
    e = check_eps(eps)
    reduced = tuple(range(a, xa.ndim))
    check_nonempty_reduction("x", xa.shape, reduced)
    w = optional_float64("weight", weight)
    check_shape("weight", w, xa.shape[a:])
    b = optional_float64("bias", bias)
    check_shape("bias", b, xa.shape[a:])
    layout = Layout(shape=xa.shape, perm=tuple(range(xa.ndim)), stat_shape=xa.shape[:a],
                    n=math.prod(xa.shape[a:]), param_axes=reduced)
    return _Call(layout=layout, x=xa, weight=w, bias=b, p=pv, eps=e, axis=a)


def input_shapes(shape: tuple[int, ...], hyper: Mapping[str, object]
                 ) -> dict[str, tuple[int, ...]]:
    """``weight`` and ``bias`` span the normalized axes ``x.shape[axis:]``.

    >>> input_shapes((2, 3, 4), {"axis": 1, "p": 3.0, "eps": 0.0})["weight"]
    (3, 4)
    """
    a = check_axis("axis", hyper["axis"], len(shape))
    return {"weight": tuple(shape[a:]), "bias": tuple(shape[a:])}


def _times_pow2(a: FloatArray, exponent: FloatArray, p: float) -> FloatArray:
    """``a * 2^(exponent * p)`` without forming the power: no spurious overflow or underflow.

    ``2^(exponent * p)`` is split into ``2^k`` (exact, by ldexp) and ``2^f`` with ``f`` in
    ``[0, 1)`` (one rounding), so the result is within about an ulp wherever it is finite.
    """
    ep = exponent * p
    k = np.floor(ep)
    return np.ldexp(a * np.exp2(ep - k), k.astype(np.int64))


@dataclass(frozen=True)
class _Rows:
    """One reduction set per row: ``z``, the statistics and what the derivatives need.

    ``u = phi'(x) / (p D)`` and ``curv = phi''(x) / (p D)`` with ``D = mean_power + eps``, so
    that ``d rscale / d x_k = -rscale u_k / n``.
    """

    z: FloatArray
    mean_power: FloatArray
    rscale: FloatArray
    u: FloatArray
    curv: FloatArray
    p: float

    def jac(self, t: FloatArray) -> FloatArray:
        """``J t = rscale t - z <u t>`` (the Jacobian of ``z``; not symmetric for p != 2)."""
        return self.rscale[:, None] * t - self.z * row_mean(self.u * t)[:, None]

    def jac_t(self, g: FloatArray) -> FloatArray:
        """``J^T g = rscale g - u <z g>``."""
        return self.rscale[:, None] * g - self.u * row_mean(self.z * g)[:, None]

    def second(self, g: FloatArray, t: FloatArray) -> FloatArray:
        """Derivative of ``J^T g`` along ``t`` (``g`` fixed); see the spec page."""
        q = row_mean(self.u * t)[:, None]
        r = self.rscale[:, None]
        z_dot = r * t - self.z * q
        u_dot = self.curv * t - self.p * q * self.u
        return -r * q * g - u_dot * row_mean(self.z * g)[:, None] - self.u * row_mean(
            z_dot * g)[:, None]


def _rows(c: _Call) -> _Rows:
    x2 = c.layout.to_rows(c.x)
    p, eps = c.p, c.eps
    s = _pow2_row_scale(x2)
    exponent = (np.frexp(s)[1] - 1).astype(np.float64)  # s = 2^exponent exactly
    v = x2 / s[:, None]  # exact
    av = np.abs(v)
    zero = v == 0
    mv = row_mean(av if p == 1.0 else np.power(av, p))
    # rscale = (s^p mv + eps)^(-1/p). Where s >= 1 (or eps = 0) it is evaluated as
    # (mv + eps s^-p)^(-1/p) / s, which cannot overflow; elsewhere s^p mv is small and eps > 0
    # keeps D away from zero, so D is formed directly.
    wide = (s >= 1.0) | (eps == 0.0)
    dv = mv + _times_pow2(np.full_like(mv, eps), -exponent, p)
    d_narrow = _times_pow2(mv, exponent, p) + eps
    q_wide = np.power(dv, -1.0 / p)
    rscale = np.where(wide, q_wide / s, np.power(d_narrow, -1.0 / p))
    q = np.where(wide, q_wide, rscale * s)
    # phi'(x) / (p D) and phi''(x) / (p D), 0 at x = 0 (the convention above)
    sign = np.sign(v)
    safe = np.where(zero, 1.0, av)
    dphi_v = np.where(zero, 0.0, sign * np.power(safe, p - 1.0))
    ddphi_v = np.where(zero, 0.0, (p - 1.0) * np.power(safe, p - 2.0))
    ax = np.where(zero, 1.0, np.abs(x2))
    dphi_x = np.where(zero, 0.0, np.sign(x2) * np.power(ax, p - 1.0))
    ddphi_x = np.where(zero, 0.0, (p - 1.0) * np.power(ax, p - 2.0))
    u = np.where(wide[:, None], dphi_v / dv[:, None] / s[:, None], dphi_x / d_narrow[:, None])
    curv = np.where(wide[:, None], ddphi_v / dv[:, None] / s[:, None] / s[:, None],
                    ddphi_x / d_narrow[:, None])
    return _Rows(z=v * q[:, None], mean_power=_times_pow2(mv, exponent, p), rscale=rscale,
                 u=u, curv=curv, p=p)


def _present(t: Mapping[str, FloatArray | None]) -> dict[str, FloatArray]:
    """The tangents of the primals that are present (rms_norm rejects keys of absent ones)."""
    return {k: v for k, v in t.items() if v is not None}


def _rms(out: dict[str, FloatArray]) -> dict[str, FloatArray]:
    """rms_norm's outputs under this method's names (p = 2)."""
    return {"y": out["y"], "mean_power": out["mean_square"], "rscale": out["rrms"]}


def layout(shape: tuple[int, ...], *, axis: int) -> Layout:
    """The reduction layout :func:`forward` uses for an input of ``shape`` (no computation);
    it does not depend on ``p``.

    >>> layout((2, 3, 4), axis=1).stat_shape, layout((2, 3, 4), axis=1).n
    ((2,), 12)
    """
    return _setup(np.zeros(shape), None, None, 2.0, axis, 0.0).layout


@ieee
def forward(x: object, weight: object = None, bias: object = None, *, p: float, axis: int,
            eps: float) -> dict[str, FloatArray]:
    """Return ``{"y", "mean_power", "rscale"}``; see the module docstring for the definition."""
    c = _setup(x, weight, bias, p, axis, eps)
    if c.p == 2.0:
        return _rms(rms_norm.forward(c.x, c.weight, c.bias, axis=c.axis, eps=c.eps))
    rows = _rows(c)
    lay = c.layout
    y = lay.from_rows(rows.z) * c.w()
    if c.bias is not None:
        y = y + lay.param_view(c.bias)
    return {"y": y, "mean_power": lay.stats_from_rows(rows.mean_power),
            "rscale": lay.stats_from_rows(rows.rscale)}


@ieee
def vjp(x: object, weight: object = None, bias: object = None, *, cotangent: object, p: float,
        axis: int, eps: float) -> dict[str, FloatArray]:
    """Gradients of ``sum(cotangent * y)`` for each primal that is not None."""
    c = _setup(x, weight, bias, p, axis, eps)
    g = cotangent_like(cotangent, c.x.shape)
    if c.p == 2.0:
        return rms_norm.vjp(c.x, c.weight, c.bias, cotangent=g, axis=c.axis, eps=c.eps)
    rows, lay = _rows(c), c.layout
    grads = {"x": lay.from_rows(rows.jac_t(lay.to_rows(g * c.w())))}
    if c.weight is not None:
        grads["weight"] = lay.param_sum(g * lay.from_rows(rows.z))
    if c.bias is not None:
        grads["bias"] = lay.param_sum(g)
    return grads


@ieee
def jvp(x: object, weight: object = None, bias: object = None, *,
        tangent: Mapping[str, object], p: float, axis: int, eps: float) -> FloatArray:
    """Directional derivative of ``y``; missing tangent keys are zero."""
    c = _setup(x, weight, bias, p, axis, eps)
    t = directions("tangent", tangent, {"x": c.x, "weight": c.weight, "bias": c.bias})
    if c.p == 2.0:
        return rms_norm.jvp(c.x, c.weight, c.bias, tangent=_present(t), axis=c.axis, eps=c.eps)
    rows, lay = _rows(c), c.layout
    tx = t["x"]
    assert tx is not None
    out = lay.from_rows(rows.jac(lay.to_rows(tx))) * c.w()
    tw, tb = t.get("weight"), t.get("bias")
    if tw is not None:
        out = out + lay.from_rows(rows.z) * lay.param_view(tw)
    if tb is not None:
        out = out + lay.param_view(tb)
    return out


@ieee
def second_order(x: object, weight: object = None, bias: object = None, *, cotangent: object,
                 tangent: Mapping[str, object], p: float, axis: int, eps: float
                 ) -> dict[str, FloatArray]:
    """Derivative of :func:`vjp` (``cotangent`` held fixed) along ``tangent``."""
    c = _setup(x, weight, bias, p, axis, eps)
    g = cotangent_like(cotangent, c.x.shape)
    t = directions("tangent", tangent, {"x": c.x, "weight": c.weight, "bias": c.bias})
    if c.p == 2.0:
        return rms_norm.second_order(c.x, c.weight, c.bias, cotangent=g, tangent=_present(t),
                                     axis=c.axis, eps=c.eps)
    rows, lay = _rows(c), c.layout
    tx, tw = t["x"], t.get("weight")
    assert tx is not None
    t2 = lay.to_rows(tx)
    dx = rows.second(lay.to_rows(g * c.w()), t2)
    if tw is not None:
        # the x-gradient is linear in the weight: its derivative along tw is J^T (g tw)
        dx = dx + rows.jac_t(lay.to_rows(g * lay.param_view(tw)))
    out = {"x": lay.from_rows(dx)}
    if c.weight is not None:
        out["weight"] = lay.param_sum(g * lay.from_rows(rows.jac(t2)))
    if c.bias is not None:
        out["bias"] = np.zeros_like(c.bias)
    return out
