"""Batch-instance normalization: batch norm and instance norm blended per channel by a gate.

With ``r = clip(rho, 0, 1)`` (:meth:`Numerics.gate_clip`, which also gives its slope ``s``: 1 on
the closed interval, 0 outside)::

    y = r * w * z_bn + (1 - r) * w * z_in + bias

so each branch is this adapter's own batch_norm (running statistics, their update) and
instance_norm with the branch weight ``r w`` or ``(1 - r) w``. Derivatives combine the branches'
with the branch weights' tangents ``t_w r + w s t_rho`` and ``t_w (1 - r) - w s t_rho``::

    drho = s w (S_bn - S_in),  dweight = r S_bn + (1 - r) S_in,   S = sum(g z) per branch
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._batch_norm import BATCH_NORM
from ._moments import INSTANCE_NORM
from ._numerics import Numerics
from ._precision import Num, Precision


@dataclass(frozen=True)
class _Gate:
    r: Num
    slope: Num
    w: Num


@dataclass(frozen=True)
class BatchInstanceNorm:
    """The batch_instance_norm method (see the module docstring)."""

    primals: tuple[str, ...] = ("x", "rho", "weight", "bias")
    state: tuple[str, ...] = ("running_mean", "running_var")

    def _gate(self, nx: Numerics, inputs: Mapping[str, Num | None]) -> _Gate:
        rho, w = inputs.get("rho"), inputs.get("weight")
        if rho is None:
            raise ValueError("argument 'inputs': got no 'rho', expected the gate of shape (C,)")
        r, slope = nx.gate_clip(rho)
        return _Gate(r=r, slope=slope, w=np.ones_like(rho) if w is None else w)

    @staticmethod
    def _branches(inputs: Mapping[str, Num | None], gate: _Gate
                  ) -> tuple[dict[str, Num | None], dict[str, Num | None]]:
        """The batch and instance branches' inputs: x (and the state) with the branch weight."""
        bn = {"x": inputs["x"], "weight": gate.r * gate.w, "bias": None,
              "running_mean": inputs.get("running_mean"),
              "running_var": inputs.get("running_var")}
        one = np.ones_like(gate.r)
        return bn, {"x": inputs["x"], "weight": (one - gate.r) * gate.w, "bias": None}

    @staticmethod
    def _bias(inputs: Mapping[str, Num | None], y: Num, hyper: Mapping[str, Any]) -> Num:
        b = inputs.get("bias")
        if b is None:
            return y
        view = [1] * y.ndim
        view[int(hyper.get("channel_axis", 1)) % y.ndim] = b.shape[0]
        out: Num = y + b.reshape(view)
        return out

    def forward(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                hyper: Mapping[str, Any]) -> dict[str, Num]:
        gate = self._gate(nx, inputs)
        bn_in, in_in = self._branches(inputs, gate)
        out = BATCH_NORM.forward(nx, prec, bn_in, hyper)
        ins = INSTANCE_NORM.forward(nx, prec, in_in, hyper)
        y = self._bias(inputs, out.pop("y") + ins["y"], hyper)
        return {"y": y, **out, "instance_mean": ins["mean"], "instance_var": ins["var"],
                "instance_rstd": ins["rstd"]}

    def vjp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], g: Num) -> dict[str, Num]:
        gate = self._gate(nx, inputs)
        bn_in, in_in = self._branches(inputs, gate)
        gb = BATCH_NORM.vjp(nx, prec, bn_in, hyper, g)
        gi = INSTANCE_NORM.vjp(nx, prec, in_in, hyper, g)
        s_bn, s_in = gb["weight"], gi["weight"]
        out = {"x": gb["x"] + gi["x"], "rho": gate.slope * gate.w * (s_bn - s_in)}
        if inputs.get("weight") is not None:
            out["weight"] = gate.r * s_bn + (np.ones_like(gate.r) - gate.r) * s_in
        if inputs.get("bias") is not None:
            geom = nx.batch_geometry(g.shape, hyper.get("channel_axis", 1))
            out["bias"] = nx.param_sum(geom.to_view(g), geom)
        return out

    @staticmethod
    def _weight_tangents(gate: _Gate, t: Mapping[str, Num]) -> tuple[Num, Num, Num]:
        r_dot = gate.slope * t["rho"] if "rho" in t else np.zeros_like(gate.r)
        tw = t.get("weight", np.zeros_like(gate.r))
        keep = np.ones_like(gate.r) - gate.r
        return tw * gate.r + gate.w * r_dot, tw * keep - gate.w * r_dot, r_dot

    def jvp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], t: Mapping[str, Num]) -> Num:
        gate = self._gate(nx, inputs)
        bn_in, in_in = self._branches(inputs, gate)
        tw_bn, tw_in, _ = self._weight_tangents(gate, t)
        tx = {"x": t["x"]} if "x" in t else {}
        dy = (BATCH_NORM.jvp(nx, prec, bn_in, hyper, {**tx, "weight": tw_bn})
              + INSTANCE_NORM.jvp(nx, prec, in_in, hyper, {**tx, "weight": tw_in}))
        if "bias" in t:
            dy = self._bias({"bias": t["bias"]}, dy, hyper)
        return dy

    def second_order(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                     hyper: Mapping[str, Any], g: Num, t: Mapping[str, Num]) -> dict[str, Num]:
        gate = self._gate(nx, inputs)
        bn_in, in_in = self._branches(inputs, gate)
        tw_bn, tw_in, r_dot = self._weight_tangents(gate, t)
        tx = {"x": t["x"]} if "x" in t else {}
        s_bn = BATCH_NORM.vjp(nx, prec, bn_in, hyper, g)["weight"]
        s_in = INSTANCE_NORM.vjp(nx, prec, in_in, hyper, g)["weight"]
        so_bn = BATCH_NORM.second_order(nx, prec, bn_in, hyper, g, {**tx, "weight": tw_bn})
        so_in = INSTANCE_NORM.second_order(nx, prec, in_in, hyper, g, {**tx, "weight": tw_in})
        tw = t.get("weight", np.zeros_like(gate.r))
        out = {"x": so_bn["x"] + so_in["x"],
               "rho": gate.slope * (tw * (s_bn - s_in) + gate.w * (so_bn["weight"]
                                                                  - so_in["weight"]))}
        if inputs.get("weight") is not None:
            out["weight"] = (r_dot * (s_bn - s_in) + gate.r * so_bn["weight"]
                             + (np.ones_like(gate.r) - gate.r) * so_in["weight"])
        if inputs.get("bias") is not None:
            out["bias"] = np.zeros_like(gate.r)
        return out


BATCH_INSTANCE_NORM = BatchInstanceNorm()
