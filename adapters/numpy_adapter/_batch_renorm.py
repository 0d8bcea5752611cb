"""Batch renormalization: batch norm whose normalized value is corrected by ``r`` and ``d``.

In training, with the batch statistics of :mod:`._moments` and the running statistics passed
in (those from *before* this step's update)::

    sigma = sqrt(var + eps),  sigma_running = sqrt(running_var + eps)
    r = clip(sigma / sigma_running, 1/rmax, rmax)
    d = clip((mean - running_mean) / sigma_running, -dmax, dmax)
    y = ((x - mean) / sigma * r + d) * weight + bias

``r`` and ``d`` are constants for the derivatives, so with ``J`` batch norm's Jacobian of
``z = (x - mean) / sigma``::

    vjp:  dx = r J (g w),  dweight = sum(g (z r + d)),  dbias = sum(g)
    jvp:  dy = r w J tx + (z r + d) tw + tb
    second order: batch norm's, with its x and weight entries times r

The running statistics are updated as batch_norm updates them (this adapter's
:mod:`._batch_norm`); evaluation is batch_norm's evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._batch_norm import BATCH_NORM
from ._geometry import Geometry
from ._moments import moment_second_order, normalize
from ._numerics import Normalized, Numerics, hyper_value
from ._precision import Num, Precision

_METHOD = "batch_renorm"


def _bound(hyper: Mapping[str, Any], key: str, minimum: float) -> float:
    value = hyper_value(hyper, key, _METHOD)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not float(value) >= minimum:
        raise ValueError(f"argument {key!r}: got {value!r}, expected a number >= {minimum:g}")
    return float(value)


@dataclass(frozen=True)
class _Train:
    """One training step in view space: the normalization, r and d, and the new state."""

    geom: Geometry
    nrm: Normalized
    r: Num
    d: Num
    inv_sigma_running: Num
    r_free: Num
    """Where r is not clipped (only a derivative *through* r would need it)."""
    d_free: Num
    state: dict[str, Num]


@dataclass(frozen=True)
class BatchRenorm:
    """The batch_renorm method (see the module docstring)."""

    primals: tuple[str, ...] = ("x", "weight", "bias")
    state: tuple[str, ...] = ("running_mean", "running_var")

    def _train(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
               hyper: Mapping[str, Any]) -> _Train | None:
        """The training step, or None in evaluation."""
        if not bool(hyper_value(hyper, "training", _METHOD)):
            return None
        rm, rv = inputs.get("running_mean"), inputs.get("running_var")
        if rm is None or rv is None:
            raise ValueError("argument 'inputs': got no running_mean/running_var, expected both "
                             "in training (r and d are computed from them)")
        rmax, dmax = _bound(hyper, "rmax", 1.0), _bound(hyper, "dmax", 0.0)
        x = inputs["x"]
        assert x is not None
        geom = nx.batch_geometry(x.shape, hyper.get("channel_axis", 1))
        eps = prec.scalar(float(hyper_value(hyper, "eps", _METHOD)))
        nrm = normalize(nx, prec, geom.to_view(x), geom.axes, eps, center=True)
        # batch norm's update, from the same batch, in this adapter's own batch_norm
        updated = BATCH_NORM.forward(nx, prec, {"x": x, "running_mean": rm, "running_var": rv},
                                     hyper)
        state = {k: updated[k] for k in ("running_mean", "running_var", "num_batches_tracked")}
        rm_used, rv_used = nx.renorm_running_statistics(
            (rm, rv), (updated["running_mean"], updated["running_var"]))
        sigma = np.sqrt(nrm.var + eps)
        inv_sr = prec.scalar(1.0) / np.sqrt(geom.param(rv_used) + eps)
        ratio = sigma * inv_sr
        offset = (nrm.mean - geom.param(rm_used)) * inv_sr
        lo, hi = prec.scalar(1.0 / rmax), prec.scalar(rmax)
        r = np.minimum(np.maximum(ratio, lo), hi)
        d = np.minimum(np.maximum(offset, -prec.scalar(dmax)), prec.scalar(dmax))
        return _Train(geom=geom, nrm=nrm, r=r, d=d, inv_sigma_running=inv_sr,
                      r_free=(ratio > lo) & (ratio < hi),
                      d_free=np.abs(offset) < prec.scalar(dmax), state=state)

    def _jacobian(self, nx: Numerics, tr: _Train, v: Num) -> Num:
        return nx.renorm_jacobian(tr.nrm, v, tr.geom.axes, tr.r, tr.inv_sigma_running,
                                  tr.r_free, tr.d_free)

    def forward(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                hyper: Mapping[str, Any]) -> dict[str, Num]:
        tr = self._train(nx, prec, inputs, hyper)
        if tr is None:
            return BATCH_NORM.forward(nx, prec, inputs, hyper)
        geom, w, b = tr.geom, inputs.get("weight"), inputs.get("bias")
        y = tr.nrm.z * tr.r + tr.d
        if w is not None:
            y = y * geom.param(w)
        if b is not None:
            y = y + geom.param(b)
        stats = {"mean": tr.nrm.mean, "var": tr.nrm.var, "rstd": tr.nrm.rstd, "r": tr.r,
                 "d": tr.d}
        return {"y": geom.from_view(y), **{k: geom.stat(v) for k, v in stats.items()},
                **tr.state}

    def vjp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], g: Num) -> dict[str, Num]:
        tr = self._train(nx, prec, inputs, hyper)
        if tr is None:
            return BATCH_NORM.vjp(nx, prec, inputs, hyper, g)
        geom, w, b = tr.geom, inputs.get("weight"), inputs.get("bias")
        gv = geom.to_view(g)
        gw = gv if w is None else gv * geom.param(w)
        out = {"x": geom.from_view(self._jacobian(nx, tr, gw))}
        if w is not None:
            out["weight"] = nx.param_sum(gv * (tr.nrm.z * tr.r + tr.d), geom)
        if b is not None:
            out["bias"] = nx.param_sum(gv, geom)
        return out

    def jvp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], t: Mapping[str, Num]) -> Num:
        tr = self._train(nx, prec, inputs, hyper)
        if tr is None:
            return BATCH_NORM.jvp(nx, prec, inputs, hyper, t)
        geom, w = tr.geom, inputs.get("weight")
        dy = np.zeros_like(tr.nrm.z)
        if "x" in t:
            dz = self._jacobian(nx, tr, geom.to_view(t["x"]))
            dy = dy + (dz if w is None else dz * geom.param(w))
        if "weight" in t:
            dy = dy + (tr.nrm.z * tr.r + tr.d) * geom.param(t["weight"])
        if "bias" in t:
            dy = dy + geom.param(t["bias"])
        return geom.from_view(dy)

    def second_order(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                     hyper: Mapping[str, Any], g: Num, t: Mapping[str, Num]) -> dict[str, Num]:
        tr = self._train(nx, prec, inputs, hyper)
        if tr is None:
            return BATCH_NORM.second_order(nx, prec, inputs, hyper, g, t)
        geom = tr.geom
        out = moment_second_order(nx, geom, tr.nrm, g, inputs.get("weight"), inputs.get("bias"),
                                  t, center=True)
        out["x"] = geom.from_view(geom.to_view(out["x"]) * tr.r)
        if "weight" in out:
            out["weight"] = out["weight"] * geom.stat(tr.r)
        return out


BATCH_RENORM = BatchRenorm()
