"""adaptive_instance_norm: the content standardized per (sample, channel), rescaled to the style's.

In instance norm's view space, with ``D = n - 1`` (unbiased) or ``n`` (biased) and ``D_s`` the
style's::

    var  = sum((x - mean)^2) / D,           rstd = 1 / sqrt(var + eps),   z = (x - mean) rstd
    style_std = sqrt(style_var + eps),       y = z * style_std + style_mean

The Jacobian of ``z`` is ``rstd (I - 11^T/n - z z^T/D)`` (symmetric), so::

    dx     = J (g style_std)
    dstyle = G z_s / D_s + (sum g) / m,      G = sum(g z),  z_s = (style - style_mean) / style_std
    jvp    = style_std J tx + z (sum(z_s ts) / D_s) + mean(ts)

and the second order differentiates these (``rstd'/rstd = -rstd sum(z tx)/D``, ``z' = J tx``).

The steps where implementations differ are the methods of :class:`AdainSteps`; a mutant
(tests/mutants/) is a :class:`~._numerics.Numerics` that also derives from it and replaces one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._geometry import Geometry
from ._numerics import Numerics, hyper_value
from ._precision import Num, Precision, reduce_mean, reduce_sum

_NAME = "adaptive_instance_norm"


class AdainSteps:
    """The careful choice for each AdaIN-specific step."""

    def adain_variance(self, biased: Num, n: int, estimator: str) -> Num:
        """The variance of ``estimator`` from the biased one: ``* n/(n-1)`` when unbiased."""
        if estimator == "unbiased":
            out: Num = biased * (biased.dtype.type(n) / biased.dtype.type(n - 1))
            return out
        return biased

    def adain_style_std(self, var: Num, eps: Any) -> Num:
        """``sqrt(style_var + eps)``: eps inside the square root, as for the content."""
        out: Num = np.sqrt(var + eps)
        return out

    def adain_style_grad(self, z_s: Num, g_std: Num, g_mean: Num, divisor: int, m: int) -> Num:
        """The style's gradient through its std and mean: ``g_std z_s / D_s + g_mean / m``."""
        out: Num = g_std * z_s / z_s.dtype.type(divisor) + g_mean / z_s.dtype.type(m)
        return out


_DEFAULT = AdainSteps()


def _steps(nx: Numerics) -> AdainSteps:
    return nx if isinstance(nx, AdainSteps) else _DEFAULT


def _estimator(hyper: Mapping[str, Any]) -> str:
    est = str(hyper_value(hyper, "variance_estimator", _NAME))
    if est not in ("biased", "unbiased"):
        raise ValueError(f"argument 'variance_estimator': got {est!r}, expected 'biased' or "
                         "'unbiased'")
    return est


@dataclass(frozen=True)
class _Side:
    """One input's view, keep-dims statistics and standardized values."""

    geom: Geometry
    z: Num
    mean: Num
    var: Num
    scale: Num          # content: rstd; style: std
    divisor: int


def _side(nx: Numerics, prec: Precision, a: Num, hyper: Mapping[str, Any], eps: Any,
          style: bool) -> _Side:
    geom = nx.instance_geometry(a.shape, hyper.get("channel_axis", 1))
    est = _estimator(hyper)
    n = geom.n
    if est == "unbiased" and n < 2:
        raise ValueError(f"argument {'style' if style else 'x'!r}: got shape {a.shape}, expected "
                         "at least 2 spatial values per (sample, channel) for the unbiased "
                         "estimator")
    av = geom.to_view(a)
    mean = nx.stat_mean(av, geom.axes, prec)
    var = _steps(nx).adain_variance(nx.variance(av, mean, geom.axes, prec), n, est)
    divisor = n - 1 if est == "unbiased" else n
    if style:
        std = _steps(nx).adain_style_std(var, eps)
        return _Side(geom, (av - mean) / std, mean, var, std, divisor)
    rstd = nx.rstd(var, eps)
    return _Side(geom, (av - mean) * rstd, mean, var, rstd, divisor)


def _per_sample_channel(side: _Side, content: _Side, s: Num) -> Num:
    """A keep-dims (N, C) statistic of ``side`` broadcastable against ``content``'s view."""
    return s.reshape(content.geom.stat_view)


def _jac(side: _Side, v: Num, rstd: Num) -> Num:
    """``rstd (v - mean(v) - z sum(z v) / D)``: the Jacobian of ``z`` applied to ``v``."""
    axes = side.geom.axes
    out: Num = rstd * (v - reduce_mean(v, axes)
                       - side.z * (reduce_sum(side.z * v, axes) / v.dtype.type(side.divisor)))
    return out


def _jac_dot(side: _Side, v: Num, t: Num, rstd: Num) -> Num:
    """Derivative of :func:`_jac` (``v`` fixed) along the input tangent ``t``."""
    axes = side.geom.axes
    d = v.dtype.type(side.divisor)
    dz = _jac(side, t, rstd)
    ratio = -rstd * reduce_sum(side.z * t, axes) / d
    out: Num = ratio * _jac(side, v, rstd) - rstd * (
        dz * (reduce_sum(side.z * v, axes) / d) + side.z * (reduce_sum(dz * v, axes) / d))
    return out


@dataclass(frozen=True)
class AdaptiveInstanceNorm:
    """The numpy adapter's adaptive_instance_norm (see the module docstring)."""

    name: str = _NAME
    primals: tuple[str, ...] = ("x", "style")
    state: tuple[str, ...] = ()

    def _prepare(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                 hyper: Mapping[str, Any]) -> tuple[_Side, _Side, Num, Num]:
        x, style = inputs["x"], inputs.get("style")
        assert x is not None
        if style is None:
            raise ValueError("argument 'inputs': got no 'style', expected the style features")
        eps = prec.scalar(float(hyper_value(hyper, "eps", self.name)))
        c, s = _side(nx, prec, x, hyper, eps, False), _side(nx, prec, style, hyper, eps, True)
        if c.geom.stat_shape != s.geom.stat_shape:
            raise ValueError(f"argument 'style': got shape {style.shape}, expected the content's "
                             f"(batch, channels) {c.geom.stat_shape}")
        return c, s, _per_sample_channel(s, c, s.scale), _per_sample_channel(s, c, s.mean)

    def forward(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                hyper: Mapping[str, Any]) -> dict[str, Num]:
        c, s, std, mean_s = self._prepare(nx, prec, inputs, hyper)
        return {"y": c.geom.from_view(c.z * std + mean_s),
                "mean": c.geom.stat(c.mean), "var": c.geom.stat(c.var),
                "rstd": c.geom.stat(c.scale), "style_mean": s.geom.stat(s.mean),
                "style_var": s.geom.stat(s.var), "style_std": s.geom.stat(s.scale)}

    def vjp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], g: Num) -> dict[str, Num]:
        c, s, std, _ = self._prepare(nx, prec, inputs, hyper)
        gv = c.geom.to_view(g)
        g_std = reduce_sum(gv * c.z, c.geom.axes).reshape(s.geom.stat_view)
        g_mean = reduce_sum(gv, c.geom.axes).reshape(s.geom.stat_view)
        ds = _steps(nx).adain_style_grad(s.z, g_std, g_mean, s.divisor, s.geom.n)
        return {"x": c.geom.from_view(_jac(c, gv * std, c.scale)), "style": s.geom.from_view(ds)}

    def _style_dot(self, c: _Side, s: _Side, ts: Num | None) -> tuple[Num, Num]:
        """Derivatives of the style's std and mean along ``ts``, in the content's stat view."""
        if ts is None:
            zero = np.zeros(c.geom.stat_view, dtype=c.z.dtype)
            return zero, zero
        tv = s.geom.to_view(ts)
        d_std = reduce_sum(s.z * tv, s.geom.axes) / tv.dtype.type(s.divisor)
        return (d_std.reshape(c.geom.stat_view),
                reduce_mean(tv, s.geom.axes).reshape(c.geom.stat_view))

    def jvp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], t: Mapping[str, Num]) -> Num:
        c, s, std, _ = self._prepare(nx, prec, inputs, hyper)
        d_std, d_mean = self._style_dot(c, s, t.get("style"))
        dy = c.z * d_std + d_mean
        if "x" in t:
            dy = dy + std * _jac(c, c.geom.to_view(t["x"]), c.scale)
        return c.geom.from_view(dy)

    def second_order(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                     hyper: Mapping[str, Any], g: Num, t: Mapping[str, Num]) -> dict[str, Num]:
        c, s, std, _ = self._prepare(nx, prec, inputs, hyper)
        gv = c.geom.to_view(g)
        d_std, _ = self._style_dot(c, s, t.get("style"))
        # x's gradient J(g std): J moves with x, std with the style
        dx = _jac(c, gv * d_std, c.scale)
        dz = np.zeros_like(c.z)
        if "x" in t:
            tx = c.geom.to_view(t["x"])
            dx = dx + _jac_dot(c, gv * std, tx, c.scale)
            dz = _jac(c, tx, c.scale)
        g_std = reduce_sum(gv * c.z, c.geom.axes).reshape(s.geom.stat_view)
        dg_std = reduce_sum(gv * dz, c.geom.axes).reshape(s.geom.stat_view)
        dz_s = np.zeros_like(s.z)
        if "style" in t:
            # z_s = (style - mean) / std has the same Jacobian with rstd = 1 / std
            dz_s = _jac(s, s.geom.to_view(t["style"]), s.z.dtype.type(1) / s.scale)
        d = s.z.dtype.type(s.divisor)
        ds = (dg_std * s.z + g_std * dz_s) / d
        return {"x": c.geom.from_view(dx), "style": s.geom.from_view(ds)}


ADAPTIVE_INSTANCE_NORM = AdaptiveInstanceNorm()
