"""power_norm: ``y = x r w + b`` with ``r = (mean|x|^p + eps)^(-1/p)`` over ``axis..ndim-1``.

Each set is divided by a power of two ``s`` near its largest magnitude first (exact), so
``|x/s|^p`` neither overflows nor underflows in the compute dtype; ``r`` is then formed as
``(mean|v|^p + eps s^-p)^(-1/p) / s`` where ``s >= 1`` or ``eps = 0`` and as
``(s^p mean|v|^p + eps)^(-1/p)`` elsewhere (``eps > 0`` dominates a small set). With
``z = x r``, ``D = mean|x|^p + eps``, ``u = phi'(x) / (p D)`` and ``c = phi''(x) / (p D)``
(``phi = |x|^p``, ``phi'(0) = 0``, ``phi''(0) = 0`` for ``p < 2``)::

    vjp:  dx = r h - u mean(z h)   (h = g w),  dweight = sum(g z),  dbias = sum(g)
    jvp:  dy = (r t - z mean(u t)) w + z tw + tb
    second order, q = mean(u t):  z' = r t - z q,  u' = c t - p q u,
          dx' = -r q h - u' mean(z h) - u mean(z' h) + J^T(g tw),  dweight' = sum(g z')

The steps where implementations differ (the statistic, where eps enters, phi's derivatives at
zero, whether the statistic is differentiated) are the methods of :class:`PowerSteps`; a mutant
(tests/mutants/) is a :class:`~._numerics.Numerics` that also derives from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._geometry import Geometry
from ._numerics import Numerics, hyper_value
from ._precision import Num, Precision, reduce_mean

_NAME = "power_norm"


class PowerSteps:
    """The careful choice for each power_norm-specific step."""

    def power_statistic(self, a_pow: Num, axes: tuple[int, ...]) -> Num:
        """The power mean's p-th power: the mean (not the sum) of ``|v|^p``."""
        return reduce_mean(a_pow, axes)

    def power_rscale(self, mv: Num, s: Num, eps: Any, p: Any) -> tuple[Num, Num]:
        """``(r, q)``: ``r = (s^p mv + eps)^(-1/p)`` and ``q = s r``, eps inside the root."""
        one = mv.dtype.type(1)
        inv = -one / p
        wide = (s >= one) | (eps == 0)
        # eps s^-p only where eps > 0: s^-p overflows for a tiny set, and 0 * inf is NaN
        scaled_eps = np.where(wide & (eps > 0), eps * np.power(np.where(wide, s, one), -p),
                              mv.dtype.type(0))
        q_wide = np.power(mv + scaled_eps, inv)
        r_narrow = np.power(np.power(s, p) * mv + eps, inv)
        r = np.where(wide, q_wide / s, r_narrow)
        return r, np.where(wide, q_wide, r_narrow * s)

    def power_phi_derivatives(self, v: Num, p: Any) -> tuple[Num, Num]:
        """``(sign(v)|v|^(p-1), (p-1)|v|^(p-2))``: phi'/p and phi''/p, 0 at v = 0 where the
        powers are unbounded (phi'(0) = 0 for every p; phi''(0) = 0 for p < 2)."""
        zero = v == 0
        a = np.where(zero, v.dtype.type(1), np.abs(v))
        one = v.dtype.type(1)
        d1 = np.where(zero, v.dtype.type(0), np.sign(v) * np.power(a, p - one))
        d2 = (p - one) * np.power(a, p - 2 * one)
        if p < 2:
            d2 = np.where(zero, v.dtype.type(0), d2)
        else:
            d2 = np.where(zero, (p - one) * np.power(np.abs(v), p - 2 * one), d2)
        return d1, d2

    def power_statistic_differentiated(self) -> bool:
        """The divisor depends on x: its derivative is part of every gradient."""
        return True


_DEFAULT = PowerSteps()


def _steps(nx: Numerics) -> PowerSteps:
    return nx if isinstance(nx, PowerSteps) else _DEFAULT


@dataclass(frozen=True)
class _Call:
    geom: Geometry
    z: Num
    r: Num
    mean_power: Num
    u: Num
    c: Num
    p: Any

    def jac(self, t: Num) -> Num:
        out: Num = self.r * t - self.z * reduce_mean(self.u * t, self.geom.axes)
        return out

    def jac_t(self, g: Num) -> Num:
        out: Num = self.r * g - self.u * reduce_mean(self.z * g, self.geom.axes)
        return out


def _prepare(nx: Numerics, prec: Precision, x: Num, hyper: Mapping[str, Any]) -> _Call:
    p_value = float(hyper_value(hyper, "p", _NAME))
    if not 0.0 < p_value < float("inf"):
        raise ValueError(f"argument 'p': got {p_value!r}, expected a finite number > 0")
    steps = _steps(nx)
    geom = nx.layer_geometry(x.shape, hyper_value(hyper, "axis", _NAME))
    p = prec.scalar(p_value)
    eps = prec.scalar(float(hyper_value(hyper, "eps", _NAME)))
    xv = geom.to_view(x)
    axes = geom.axes
    peak = np.max(np.abs(xv), axis=axes, keepdims=True)
    # a power of two near the largest magnitude (1 for a zero set): dividing by it is exact
    _, exponent = np.frexp(np.where(peak > 0, peak, xv.dtype.type(1)))
    s = np.ldexp(xv.dtype.type(1), exponent).astype(xv.dtype)
    v = xv / s
    a_pow = np.abs(v) if p_value == 1.0 else np.power(np.abs(v), p)
    mv = steps.power_statistic(a_pow, axes)
    r, q = steps.power_rscale(mv, s, eps, p)
    z = v * q
    # D = mean|x|^p + eps = r^-p: u = phi'/(pD) = sign(x)|x|^(p-1) r^p, from the scaled
    # values as sign(v)|v|^(p-1) q^p / s (and c = (p-1)|v|^(p-2) q^p / s^2)
    d1, d2 = steps.power_phi_derivatives(v, p)
    qp = np.power(q, p)
    if steps.power_statistic_differentiated():
        u, c = d1 * qp / s, d2 * qp / s / s
    else:
        u, c = np.zeros_like(v), np.zeros_like(v)
    mean_power = mv * np.power(s, p)
    return _Call(geom=geom, z=z, r=r, mean_power=mean_power, u=u, c=c, p=p)


@dataclass(frozen=True)
class PowerNorm:
    """The power_norm method (see the module docstring)."""

    primals: tuple[str, ...] = ("x", "weight", "bias")
    state: tuple[str, ...] = ()

    def forward(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                hyper: Mapping[str, Any]) -> dict[str, Num]:
        x = inputs["x"]
        assert x is not None
        k = _prepare(nx, prec, x, hyper)
        w, b = inputs.get("weight"), inputs.get("bias")
        y = k.z if w is None else k.z * k.geom.param(w)
        y = y if b is None else y + k.geom.param(b)
        return {"y": k.geom.from_view(y), "mean_power": k.geom.stat(k.mean_power),
                "rscale": k.geom.stat(k.r)}

    def vjp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], g: Num) -> dict[str, Num]:
        x = inputs["x"]
        assert x is not None
        k = _prepare(nx, prec, x, hyper)
        w, b = inputs.get("weight"), inputs.get("bias")
        gv = k.geom.to_view(g)
        h = gv if w is None else gv * k.geom.param(w)
        out = {"x": k.geom.from_view(k.jac_t(h))}
        if w is not None:
            out["weight"] = nx.param_sum(gv * k.z, k.geom)
        if b is not None:
            out["bias"] = nx.param_sum(gv, k.geom)
        return out

    def jvp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], t: Mapping[str, Num]) -> Num:
        x = inputs["x"]
        assert x is not None
        k = _prepare(nx, prec, x, hyper)
        w = inputs.get("weight")
        dy = np.zeros_like(k.z)
        if "x" in t:
            dz = k.jac(k.geom.to_view(t["x"]))
            dy = dy + (dz if w is None else dz * k.geom.param(w))
        if "weight" in t:
            dy = dy + k.z * k.geom.param(t["weight"])
        if "bias" in t:
            dy = dy + k.geom.param(t["bias"])
        return k.geom.from_view(dy)

    def second_order(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                     hyper: Mapping[str, Any], g: Num, t: Mapping[str, Num]
                     ) -> dict[str, Num]:
        x = inputs["x"]
        assert x is not None
        k = _prepare(nx, prec, x, hyper)
        w, b = inputs.get("weight"), inputs.get("bias")
        axes = k.geom.axes
        gv = k.geom.to_view(g)
        h = gv if w is None else gv * k.geom.param(w)
        dx = np.zeros_like(k.z)
        dz = None
        if "x" in t:
            tx = k.geom.to_view(t["x"])
            q = reduce_mean(k.u * tx, axes)
            dz = k.r * tx - k.z * q
            du = k.c * tx - k.p * q * k.u
            dx = (-k.r * q * h - du * reduce_mean(k.z * h, axes)
                  - k.u * reduce_mean(dz * h, axes))
        if "weight" in t:
            dx = dx + k.jac_t(gv * k.geom.param(t["weight"]))
        out = {"x": k.geom.from_view(dx)}
        if w is not None:
            out["weight"] = (np.zeros(k.geom.param_shape, dtype=gv.dtype) if dz is None
                             else nx.param_sum(gv * dz, k.geom))
        if b is not None:
            out["bias"] = np.zeros(k.geom.param_shape, dtype=gv.dtype)
        return out


POWER_NORM = PowerNorm()
