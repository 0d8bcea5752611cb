"""``mutant-rms-bias-before-scale``: rms_norm adds its bias before the scale, y = (xhat + b) w.

Bug class: the affine applied in the wrong order, ``weight * (xhat + bias)`` instead of the
spec's ``weight * xhat + bias`` (an easy slip when a bias is bolted onto a kernel that ends in
``* weight``). The VJP for x is unchanged; y, the weight gradient ``sum g (xhat + b)`` and the
bias gradient ``sum g w`` are wrong. Exposed by every rms_norm case with both a weight and a bias
(bias-n=7, bias-axis=1-3d, bias-tokens-3d, bias-n=1, bias-zeros, bias-offset_1e3), forward,
VJP and JVP, in every dtype; the cases without a bias are unaffected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._moments import RMS_NORM, MomentMethod, moment_vjp
from normspec.adapters.numpy_adapter._numerics import MethodImpl
from normspec.adapters.numpy_adapter._precision import Num, Precision


@dataclass(frozen=True)
class _BiasBeforeScale(MomentMethod):
    """rms_norm with ``y = (z + b) w``: the bias folded in before the weight."""

    def forward(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                hyper: Mapping[str, Any]) -> dict[str, Num]:
        w, b = inputs.get("weight"), inputs.get("bias")
        if b is None:
            return super().forward(nx, prec, inputs, hyper)
        out = super().forward(nx, prec, {**inputs, "weight": None, "bias": None}, hyper)
        geom = self._prepare(nx, prec, inputs, hyper)[0]
        yv = geom.to_view(out["y"]) + geom.param(b)
        out["y"] = geom.from_view(yv if w is None else yv * geom.param(w))
        return out

    def vjp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], g: Num) -> dict[str, Num]:
        w, b = inputs.get("weight"), inputs.get("bias")
        geom, center, nrm = self._prepare(nx, prec, inputs, hyper)
        grads = moment_vjp(nx, geom, nrm, g, w, b, center)
        if b is not None:
            gv = geom.to_view(g)
            if w is not None:
                grads["weight"] = nx.param_sum(gv * (nrm.z + geom.param(b)), geom)
            grads["bias"] = nx.param_sum(gv if w is None else gv * geom.param(w), geom)
        return grads

    def jvp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], t: Mapping[str, Num]) -> Num:
        w, b = inputs.get("weight"), inputs.get("bias")
        out = super().jvp(nx, prec, inputs, hyper, t)
        if b is None or w is None:
            return out
        geom = self._prepare(nx, prec, inputs, hyper)[0]
        # (z + b) w: the bias tangent is scaled by w, and w's tangent also multiplies b
        extra = np.zeros_like(geom.to_view(out))
        if "bias" in t:
            extra = extra + geom.param(t["bias"]) * (geom.param(w) - 1.0)
        if "weight" in t:
            extra = extra + geom.param(b) * geom.param(t["weight"])
        return geom.from_view(geom.to_view(out) + extra)


_MUTATED = _BiasBeforeScale(name=RMS_NORM.name, primals=RMS_NORM.primals, stats=RMS_NORM.stats,
                            setup=RMS_NORM.setup)


class BiasBeforeScaleAdapter(NumpyAdapter):
    def _prepare(self, method: str, inputs: Mapping[str, Any], hyper: Mapping[str, Any],
                 dtype: str, device: str
                 ) -> tuple[MethodImpl, Precision, dict[str, Num | None], Mapping[str, Any]]:
        impl, prec, loaded, hyper = super()._prepare(method, inputs, hyper, dtype, device)
        return (_MUTATED if method == "rms_norm" else impl), prec, loaded, hyper


MUTANT = BiasBeforeScaleAdapter("mutant-rms-bias-before-scale", Numerics())
