"""Evaluation with alpha-mixed statistics: batch and running statistics mixed per channel.

In batch_norm's per-channel view, with the two-pass batch statistics ``mb``, ``vb``::

    mean = alpha mb + (1 - alpha) running_mean
    var  = alpha vb + (1 - alpha) running_var + alpha (1 - alpha) (mb - running_mean)^2
    z = (x - mean) * rstd,  rstd = 1 / sqrt(var + eps),  y = z * weight + bias

(the variance of the mixture, :meth:`Numerics.mixed_statistics`). The batch part moves with x,
weighted by alpha, so the Jacobian of ``z`` is ``J = rstd (I - alpha 11^T/n - alpha z z^T/n)``
(symmetric); along a tangent ``t``: ``rstd'/rstd = -alpha rstd mean(z t)``, ``z' = J t`` and::

    (J v)' = (rstd'/rstd) J v - alpha rstd (z' mean(z v) + z mean(z' v))

The running statistics are read, never updated or differentiated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._geometry import Geometry
from ._moments import affine
from ._numerics import Normalized, Numerics, hyper_value
from ._precision import Num, Precision, reduce_mean

_METHOD = "mixed_eval_batch_norm"


def _alpha(hyper: Mapping[str, Any]) -> float:
    a = hyper_value(hyper, "alpha", _METHOD)
    if isinstance(a, (bool, str)) or not isinstance(a, (int, float, np.floating)) or not (
            0.0 <= float(a) <= 1.0):
        raise ValueError(f"argument 'alpha': got {a!r}, expected a number in [0, 1]")
    return float(a)


def _jac(nrm: Normalized, v: Num, axes: tuple[int, ...], a: Any) -> Num:
    """``J v = rstd (v - alpha mean(v) - alpha z mean(z v))``."""
    out: Num = nrm.rstd * (v - a * reduce_mean(v, axes) - a * nrm.z * reduce_mean(nrm.z * v,
                                                                               axes))
    return out


@dataclass(frozen=True)
class MixedEvalBatchNorm:
    """The mixed_eval_batch_norm method (see the module docstring)."""

    primals: tuple[str, ...] = ("x", "weight", "bias")
    state: tuple[str, ...] = ("running_mean", "running_var")

    def _prepare(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                 hyper: Mapping[str, Any]) -> tuple[Geometry, Normalized, Num, Num, Any]:
        """The geometry, the mixed statistics as a :class:`Normalized`, the batch mean and
        variance, and alpha in the compute dtype."""
        x = inputs["x"]
        assert x is not None
        rm, rv = inputs.get("running_mean"), inputs.get("running_var")
        if rm is None or rv is None:
            raise ValueError("argument 'inputs': got no running_mean/running_var, expected both "
                             "(the mixed statistics need them)")
        geom = nx.batch_geometry(x.shape, hyper.get("channel_axis", 1))
        eps = prec.scalar(float(hyper_value(hyper, "eps", _METHOD)))
        a = prec.scalar(_alpha(hyper))
        xv = geom.to_view(x)
        mb = nx.stat_mean(xv, geom.axes, prec)
        vb = nx.variance(xv, mb, geom.axes, prec)
        mean, var = nx.mixed_statistics(mb, vb, geom.param(rm), geom.param(rv), a)
        rstd = nx.rstd(var, eps)
        return geom, Normalized(z=(xv - mean) * rstd, mean=mean, var=var, rstd=rstd), mb, vb, a

    def forward(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                hyper: Mapping[str, Any]) -> dict[str, Num]:
        geom, nrm, mb, vb, _ = self._prepare(nx, prec, inputs, hyper)
        y = geom.from_view(affine(geom, nrm.z, inputs.get("weight"), inputs.get("bias")))
        return {"y": y, "mean": geom.stat(nrm.mean), "var": geom.stat(nrm.var),
                "rstd": geom.stat(nrm.rstd), "batch_mean": geom.stat(mb),
                "batch_var": geom.stat(vb)}

    def vjp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], g: Num) -> dict[str, Num]:
        geom, nrm, _, _, a = self._prepare(nx, prec, inputs, hyper)
        w, b = inputs.get("weight"), inputs.get("bias")
        gv = geom.to_view(g)
        gw = gv if w is None else gv * geom.param(w)
        out = {"x": geom.from_view(_jac(nrm, gw, geom.axes, a))}
        if w is not None:
            out["weight"] = nx.param_sum(gv * nrm.z, geom)
        if b is not None:
            out["bias"] = nx.param_sum(gv, geom)
        return out

    def jvp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], t: Mapping[str, Num]) -> Num:
        geom, nrm, _, _, a = self._prepare(nx, prec, inputs, hyper)
        w = inputs.get("weight")
        dy = np.zeros_like(nrm.z)
        if "x" in t:
            dz = _jac(nrm, geom.to_view(t["x"]), geom.axes, a)
            dy = dy + (dz if w is None else dz * geom.param(w))
        if "weight" in t:
            dy = dy + nrm.z * geom.param(t["weight"])
        if "bias" in t:
            dy = dy + geom.param(t["bias"])
        return geom.from_view(dy)

    def second_order(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                     hyper: Mapping[str, Any], g: Num, t: Mapping[str, Num]) -> dict[str, Num]:
        geom, nrm, _, _, a = self._prepare(nx, prec, inputs, hyper)
        axes = geom.axes
        w, b = inputs.get("weight"), inputs.get("bias")
        gv = geom.to_view(g)
        gw = gv if w is None else gv * geom.param(w)
        dx = np.zeros_like(nrm.z)
        dz = None
        if "x" in t:
            tx = geom.to_view(t["x"])
            dz = _jac(nrm, tx, axes, a)
            ratio = -a * nrm.rstd * reduce_mean(nrm.z * tx, axes)
            dx = ratio * _jac(nrm, gw, axes, a) - a * nrm.rstd * (
                dz * reduce_mean(nrm.z * gw, axes) + nrm.z * reduce_mean(dz * gw, axes))
        if "weight" in t:
            dx = dx + _jac(nrm, gv * geom.param(t["weight"]), axes, a)
        out = {"x": geom.from_view(dx)}
        zeros = np.zeros(geom.param_shape, dtype=gv.dtype)
        if w is not None:
            out["weight"] = zeros if dz is None else nx.param_sum(gv * dz, geom)
        if b is not None:
            out["bias"] = zeros
        return out


MIXED_EVAL_BATCH_NORM = MixedEvalBatchNorm()
