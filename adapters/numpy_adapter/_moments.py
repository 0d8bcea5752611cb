"""Moment normalizations: layer_norm, rms_norm, instance_norm, group_norm (and batch_norm's core).

In view space (see :mod:`._geometry`), over each reduction set of ``n`` values::

    mean = mean(x)                  (0 for rms_norm)
    var  = mean((x - mean)^2)       (two passes; the mean square for rms_norm)
    rstd = 1 / sqrt(var + eps)
    z    = (x - mean) * rstd,   y = z * weight + bias

Derivatives, with ``J`` the symmetric Jacobian of ``z`` (:func:`._numerics.jacobian`)::

    vjp:  dx = J (g w),  dweight = sum(g z),  dbias = sum(g)
    jvp:  dy = (J tx) w + z tw + tb
    second order along (tx, tw):  rstd' = -rstd^2 mean(z tx),  z' = J tx,
          dx' = (rstd'/rstd) J(g w) - rstd (z' mean(z g w) + z mean(z' g w)) + J(g tw)
          dweight' = sum(g z'),  dbias' = 0
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._geometry import Geometry
from ._numerics import Normalized, Numerics, hyper_value, jacobian
from ._precision import Num, Precision, reduce_mean


def normalize(nx: Numerics, prec: Precision, xv: Num, axes: tuple[int, ...], eps: Any,
              center: bool) -> Normalized:
    """Statistics and ``z`` of ``xv`` over ``axes`` (keep-dims), each step through ``nx``."""
    keep = tuple(1 if i in axes else s for i, s in enumerate(xv.shape))
    mean = nx.stat_mean(xv, axes, prec) if center else np.zeros(keep, dtype=xv.dtype)
    var = nx.variance(xv, mean, axes, prec)
    rstd = nx.rstd(var, eps)
    return Normalized(z=(xv - mean) * rstd, mean=mean, var=var, rstd=rstd)


def affine(geom: Geometry, z: Num, w: Num | None, b: Num | None) -> Num:
    y = z if w is None else z * geom.param(w)
    return y if b is None else y + geom.param(b)


def moment_vjp(nx: Numerics, geom: Geometry, nrm: Normalized, g: Num, w: Num | None,
               b: Num | None, center: bool) -> dict[str, Num]:
    """Gradients of ``sum(g * y)`` for x and the parameters present."""
    gv = geom.to_view(g)
    gw = gv if w is None else gv * geom.param(w)
    out = {"x": geom.from_view(nx.vjp_x(nrm, gw, geom.axes, center))}
    if w is not None:
        out["weight"] = nx.param_sum(gv * nrm.z, geom)
    if b is not None:
        out["bias"] = nx.param_sum(gv, geom)
    return out


def moment_jvp(geom: Geometry, nrm: Normalized, w: Num | None, t: Mapping[str, Num],
               center: bool) -> Num:
    """Directional derivative of ``y``; missing tangents are zero."""
    dy = np.zeros_like(nrm.z)
    if "x" in t:
        dz = jacobian(nrm, geom.to_view(t["x"]), geom.axes, center)
        dy = dy + (dz if w is None else dz * geom.param(w))
    if "weight" in t:
        dy = dy + nrm.z * geom.param(t["weight"])
    if "bias" in t:
        dy = dy + geom.param(t["bias"])
    return geom.from_view(dy)


def moment_second_order(nx: Numerics, geom: Geometry, nrm: Normalized, g: Num, w: Num | None,
                        b: Num | None, t: Mapping[str, Num], center: bool) -> dict[str, Num]:
    """Derivative of :func:`moment_vjp` (g fixed) along ``t`` (see the module docstring)."""
    axes = geom.axes
    gv = geom.to_view(g)
    gw = gv if w is None else gv * geom.param(w)
    dx = np.zeros_like(nrm.z)
    dz = None
    if "x" in t:
        tx = geom.to_view(t["x"])
        dz = jacobian(nrm, tx, axes, center)
        rstd_ratio = -nrm.rstd * reduce_mean(nrm.z * tx, axes)
        dx = rstd_ratio * jacobian(nrm, gw, axes, center) - nrm.rstd * (
            dz * reduce_mean(nrm.z * gw, axes) + nrm.z * reduce_mean(dz * gw, axes))
    if "weight" in t:
        # the x-gradient is linear in the weight: its derivative along tw is J (g tw)
        dx = dx + jacobian(nrm, gv * geom.param(t["weight"]), axes, center)
    out = {"x": geom.from_view(dx)}
    if w is not None:
        out["weight"] = (np.zeros(geom.param_shape, dtype=gv.dtype) if dz is None
                         else nx.param_sum(gv * dz, geom))
    if b is not None:
        out["bias"] = np.zeros(geom.param_shape, dtype=gv.dtype)
    return out


Setup = Callable[[Numerics, tuple[int, ...], Mapping[str, Any]], tuple[Geometry, bool]]


@dataclass(frozen=True)
class MomentMethod:
    """A method that is one moment normalization over a geometry, plus an optional affine.

    ``stats`` pairs each reported statistic with the :class:`Normalized` field it comes from.
    """

    name: str
    primals: tuple[str, ...]
    stats: tuple[tuple[str, str], ...]
    setup: Setup
    state: tuple[str, ...] = ()

    def _prepare(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                 hyper: Mapping[str, Any]) -> tuple[Geometry, bool, Normalized]:
        x = inputs["x"]
        assert x is not None
        geom, center = self.setup(nx, x.shape, hyper)
        eps = prec.scalar(float(hyper_value(hyper, "eps", self.name)))
        return geom, center, normalize(nx, prec, geom.to_view(x), geom.axes, eps, center)

    def forward(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                hyper: Mapping[str, Any]) -> dict[str, Num]:
        geom, _, nrm = self._prepare(nx, prec, inputs, hyper)
        out = {"y": geom.from_view(affine(geom, nrm.z, inputs.get("weight"), inputs.get("bias")))}
        if geom.stat_shape is not None:
            out.update({name: geom.stat(getattr(nrm, field)) for name, field in self.stats})
        return out

    def vjp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], g: Num) -> dict[str, Num]:
        geom, center, nrm = self._prepare(nx, prec, inputs, hyper)
        return moment_vjp(nx, geom, nrm, g, inputs.get("weight"), inputs.get("bias"), center)

    def jvp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], t: Mapping[str, Num]) -> Num:
        geom, center, nrm = self._prepare(nx, prec, inputs, hyper)
        return moment_jvp(geom, nrm, inputs.get("weight"), t, center)

    def second_order(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                     hyper: Mapping[str, Any], g: Num, t: Mapping[str, Num]) -> dict[str, Num]:
        geom, center, nrm = self._prepare(nx, prec, inputs, hyper)
        return moment_second_order(nx, geom, nrm, g, inputs.get("weight"), inputs.get("bias"),
                                   t, center)


_MEAN_VAR_RSTD = (("mean", "mean"), ("var", "var"), ("rstd", "rstd"))

LAYER_NORM = MomentMethod(
    name="layer_norm", primals=("x", "weight", "bias"), stats=_MEAN_VAR_RSTD,
    setup=lambda nx, shape, h: (
        nx.layer_geometry(shape, hyper_value(h, "axis", "layer_norm")), True))

RMS_NORM = MomentMethod(
    name="rms_norm", primals=("x", "weight", "bias"),
    stats=(("mean_square", "var"), ("rrms", "rstd")),
    setup=lambda nx, shape, h: (
        nx.layer_geometry(shape, hyper_value(h, "axis", "rms_norm")), nx.rms_centered()))

INSTANCE_NORM = MomentMethod(
    name="instance_norm", primals=("x", "weight", "bias"), stats=_MEAN_VAR_RSTD,
    setup=lambda nx, shape, h: (
        nx.instance_geometry(shape, h.get("channel_axis", 1)), True))

GROUP_NORM = MomentMethod(
    name="group_norm", primals=("x", "weight", "bias"), stats=_MEAN_VAR_RSTD,
    setup=lambda nx, shape, h: (
        nx.group_geometry(shape, hyper_value(h, "groups", "group_norm"),
                          h.get("channel_axis", 1)), True))
