"""Batch normalization: per-channel statistics over every other axis, and the running state.

Training normalizes with the biased batch statistics (the moment core of :mod:`._moments`) and,
when running statistics are tracked, updates them with ``f`` the weight of the new value::

    running_mean' = (1 - f) running_mean + f mean
    running_var'  = (1 - f) running_var  + f var * n/(n-1)     ("unbiased"; var when "biased")

with ``f = batch_stat_weight``, or ``1/(num_batches_tracked + 1)`` when it is ``"cumulative"``.
Evaluation normalizes with the running statistics, which are constants for the derivatives::

    y = (x - running_mean) * rstd * weight + bias,   rstd = 1/sqrt(running_var + eps)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._geometry import Geometry
from ._moments import affine, moment_jvp, moment_second_order, moment_vjp, normalize
from ._numerics import Normalized, Numerics, hyper_value
from ._precision import Num, Precision

_METHOD = "batch_norm"


def _factor(nx: Numerics, hyper: Mapping[str, Any], num_batches_tracked: int) -> float:
    weight = hyper_value(hyper, "batch_stat_weight", _METHOD)
    if weight != "cumulative" and (
            isinstance(weight, (bool, str)) or not isinstance(weight, (int, float, np.floating))
            or not 0.0 <= float(weight) <= 1.0):
        raise ValueError(
            f"argument 'batch_stat_weight': got {weight!r}, expected a number in [0, 1] or "
            "'cumulative'"
        )
    return nx.batch_stat_factor(weight, num_batches_tracked)


@dataclass(frozen=True)
class _Eval:
    """Evaluation mode in view space: ``z = (x - running_mean) * rstd``."""

    z: Num
    rstd: Num


@dataclass(frozen=True)
class BatchNorm:
    """The batch_norm method (see the module docstring)."""

    primals: tuple[str, ...] = ("x", "weight", "bias")
    state: tuple[str, ...] = ("running_mean", "running_var")

    def _prepare(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                 hyper: Mapping[str, Any]) -> tuple[Geometry, Normalized | _Eval]:
        x = inputs["x"]
        assert x is not None
        geom = nx.batch_geometry(x.shape, hyper.get("channel_axis", 1))
        eps = prec.scalar(float(hyper_value(hyper, "eps", _METHOD)))
        xv = geom.to_view(x)
        if bool(hyper_value(hyper, "training", _METHOD)):
            return geom, normalize(nx, prec, xv, geom.axes, eps, center=True)
        rm, rv = inputs.get("running_mean"), inputs.get("running_var")
        if rm is None or rv is None:
            raise ValueError(
                "argument 'inputs': got no running_mean/running_var, expected both when "
                "training=False (evaluation normalizes with the running statistics)"
            )
        rstd = nx.rstd(geom.param(rv), eps)
        return geom, _Eval(z=(xv - geom.param(rm)) * rstd, rstd=rstd)

    def forward(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                hyper: Mapping[str, Any]) -> dict[str, Num]:
        geom, nrm = self._prepare(nx, prec, inputs, hyper)
        y = geom.from_view(affine(geom, nrm.z, inputs.get("weight"), inputs.get("bias")))
        if isinstance(nrm, _Eval):
            return {"y": y}
        out = {"y": y, "mean": geom.stat(nrm.mean), "var": geom.stat(nrm.var),
               "rstd": geom.stat(nrm.rstd)}
        rm, rv = inputs.get("running_mean"), inputs.get("running_var")
        if rm is None and rv is None:
            return out
        if rm is None or rv is None:
            raise ValueError(
                "argument 'inputs': got only one of running_mean/running_var, expected both "
                "or neither"
            )
        tracked = int(hyper_value(hyper, "num_batches_tracked", _METHOD, 0))
        f = prec.scalar(_factor(nx, hyper, tracked))
        estimator = hyper_value(hyper, "running_var_estimator", _METHOD)
        if estimator not in ("biased", "unbiased"):
            raise ValueError(
                f"argument 'running_var_estimator': got {estimator!r}, expected 'biased' or "
                "'unbiased'"
            )
        if estimator == "unbiased" and geom.n == 1:
            raise ValueError(
                f"argument 'x': got shape {geom.shape} with one value per channel, expected "
                "n >= 2 for running_var_estimator='unbiased' (var * n/(n-1) is undefined)"
            )
        sample = nx.running_var_sample(geom.stat(nrm.var), geom.n, estimator)
        keep = prec.scalar(1.0) - f
        out["running_mean"] = keep * rm + f * geom.stat(nrm.mean)
        out["running_var"] = keep * rv + f * sample
        out["num_batches_tracked"] = np.asarray(tracked + 1, dtype=np.float64)
        return out

    def vjp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], g: Num) -> dict[str, Num]:
        geom, nrm = self._prepare(nx, prec, inputs, hyper)
        w, b = inputs.get("weight"), inputs.get("bias")
        if isinstance(nrm, Normalized):
            return moment_vjp(nx, geom, nrm, g, w, b, center=True)
        gv = geom.to_view(g)
        gw = gv if w is None else gv * geom.param(w)
        out = {"x": geom.from_view(gw * nrm.rstd)}
        if w is not None:
            out["weight"] = nx.param_sum(gv * nrm.z, geom)
        if b is not None:
            out["bias"] = nx.param_sum(gv, geom)
        return out

    def jvp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], t: Mapping[str, Num]) -> Num:
        geom, nrm = self._prepare(nx, prec, inputs, hyper)
        w = inputs.get("weight")
        if isinstance(nrm, Normalized):
            return moment_jvp(geom, nrm, w, t, center=True)
        dy = np.zeros_like(nrm.z)
        if "x" in t:
            dz = geom.to_view(t["x"]) * nrm.rstd
            dy = dy + (dz if w is None else dz * geom.param(w))
        if "weight" in t:
            dy = dy + nrm.z * geom.param(t["weight"])
        if "bias" in t:
            dy = dy + geom.param(t["bias"])
        return geom.from_view(dy)

    def second_order(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                     hyper: Mapping[str, Any], g: Num, t: Mapping[str, Num]) -> dict[str, Num]:
        geom, nrm = self._prepare(nx, prec, inputs, hyper)
        w, b = inputs.get("weight"), inputs.get("bias")
        if isinstance(nrm, Normalized):
            return moment_second_order(nx, geom, nrm, g, w, b, t, center=True)
        # In evaluation y is affine in x and in the parameters separately: only the cross
        # terms between x and weight survive.
        gv = geom.to_view(g)
        zeros = np.zeros(geom.param_shape, dtype=gv.dtype)
        dx = np.zeros_like(gv)
        if "weight" in t:
            dx = gv * geom.param(t["weight"]) * nrm.rstd
        out = {"x": geom.from_view(dx)}
        if w is not None:
            out["weight"] = (nx.param_sum(gv * geom.to_view(t["x"]) * nrm.rstd, geom)
                             if "x" in t else zeros)
        if b is not None:
            out["bias"] = zeros
        return out


BATCH_NORM = BatchNorm()
