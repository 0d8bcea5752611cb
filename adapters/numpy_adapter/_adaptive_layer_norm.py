"""adaptive_layer_norm: layer norm over the last axis, modulated per sample from a linear map.

With ``u = act(cond)`` (SiLU or the identity), ``m = u @ W + b`` split in DiT's order into
``shift``, ``scale`` and (gated) ``gate``, each ``(N, D)`` broadcast over the token axes::

    z = (x - mean) * rstd                       (layer norm over the last axis, no affine)
    h = z * (1 + scale) + shift,   y = h  or  y = gate * h

Backward, with ``G = gate`` (1 ungated) and ``S`` the sum over the token axes::

    dx = J (g G (1 + scale)),   dm = [S(g G), S(g G z), S(g h)],
    dW = u^T dm,   db = sum_n dm,   dcond = (dm W^T) act'(cond)

``J = rstd (I - 11^T/D - z z^T/D)`` is layer norm's symmetric Jacobian. The JVP and the second
order differentiate these by the product rule.

The steps where implementations differ (the chunk order, the ``1 + scale`` convention, the
gate) are the methods of :class:`AdalnSteps`; a mutant (tests/mutants/) is a
:class:`~._numerics.Numerics` that also derives from it and replaces one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._numerics import Normalized, Numerics, hyper_value, jacobian
from ._precision import Num, Precision, reduce_mean, reduce_sum

_NAME = "adaptive_layer_norm"


class AdalnSteps:
    """The careful choice for each adaLN-specific step."""

    def adaln_chunks(self, m: Num, d: int, gated: bool) -> tuple[Num, Num, Num | None]:
        """``(shift, scale, gate)`` from the columns of ``m``, in DiT's order."""
        return m[:, :d], m[:, d:2 * d], (m[:, 2 * d:3 * d] if gated else None)

    def adaln_gain(self, scale: Num) -> Num:
        """The factor on ``z``: ``1 + scale`` (zero-initialised scale is the identity)."""
        out: Num = scale.dtype.type(1) + scale
        return out

    def adaln_gate(self, gate: Num | None) -> Num | None:
        """The gate as it multiplies the modulated tensor (None ungated)."""
        return gate


_DEFAULT = AdalnSteps()


def _steps(nx: Numerics) -> AdalnSteps:
    return nx if isinstance(nx, AdalnSteps) else _DEFAULT


def _silu(c: Num) -> tuple[Num, Num, Num]:
    """``silu(c)``, its first and second derivatives (IEEE: ``silu(-inf)`` is NaN)."""
    one = c.dtype.type(1)
    s = one / (one + np.exp(-c))
    u = c / (one + np.exp(-c))
    du = s * (one + c * (one - s))
    ddu = s * (one - s) * (c.dtype.type(2) + c * (one - c.dtype.type(2) * s))
    return u, du, ddu


@dataclass(frozen=True)
class _Call:
    x: Num
    cond: Num
    weight: Num
    bias: Num | None
    nrm: Normalized
    axes: tuple[int, ...]
    u: Num
    du: Num
    ddu: Num
    m: Num
    shift: Num
    gain: Num
    gate: Num | None
    gated: bool
    d: int

    def expand(self, v: Num) -> Num:
        return v.reshape((v.shape[0],) + (1,) * (self.x.ndim - 2) + (v.shape[1],))

    def tokens(self, a: Num) -> Num:
        """Sum over the token axes: ``x``-shaped to ``(N, D)``."""
        axes = tuple(range(1, self.x.ndim - 1))
        return reduce_sum(a, axes).reshape(a.shape[0], a.shape[-1]) if axes else a

    def g_gate(self, g: Num) -> Num:
        return g if self.gate is None else g * self.gate

    def h(self) -> Num:
        return self.nrm.z * self.gain + self.shift


def _prepare(nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
             hyper: Mapping[str, Any]) -> _Call:
    x, cond, weight = inputs["x"], inputs.get("cond"), inputs.get("weight")
    assert x is not None
    if cond is None or weight is None:
        raise ValueError("argument 'inputs': got no 'cond' or 'weight', expected both (the "
                         "conditioning vector and the modulation's linear map)")
    gated = hyper_value(hyper, "gated", _NAME)
    if not isinstance(gated, (bool, np.bool_)):
        raise ValueError(f"argument 'gated': got {gated!r}, expected True or False")
    act = hyper_value(hyper, "activation", _NAME)
    if act not in ("silu", "none"):
        raise ValueError(f"argument 'activation': got {act!r}, expected 'silu' or 'none'")
    if x.ndim < 2:
        raise ValueError(f"argument 'x': got shape {x.shape}, expected (N, ..., D)")
    d, p = x.shape[-1], (3 if gated else 2)
    if cond.ndim != 2 or cond.shape[0] != x.shape[0] or weight.shape != (cond.shape[1], p * d):
        raise ValueError(f"argument 'inputs': got cond {cond.shape} and weight {weight.shape}, "
                         f"expected ({x.shape[0]}, K) and (K, {p * d})")
    eps = prec.scalar(float(hyper_value(hyper, "eps", _NAME)))
    axes = (x.ndim - 1,)
    mean = nx.stat_mean(x, axes, prec)
    var = nx.variance(x, mean, axes, prec)
    rstd = nx.rstd(var, eps)
    nrm = Normalized(z=(x - mean) * rstd, mean=mean, var=var, rstd=rstd)
    if act == "silu":
        u, du, ddu = _silu(cond)
    else:
        u, du, ddu = cond, np.ones_like(cond), np.zeros_like(cond)
    bias = inputs.get("bias")
    m = u @ weight if bias is None else u @ weight + bias
    steps = _steps(nx)
    shift, scale, gate = steps.adaln_chunks(m, d, bool(gated))
    g_ = steps.adaln_gate(gate)

    def e(v: Num) -> Num:
        return v.reshape((v.shape[0],) + (1,) * (x.ndim - 2) + (v.shape[1],))

    return _Call(x=x, cond=cond, weight=weight, bias=bias, nrm=nrm, axes=axes, u=u, du=du,
                 ddu=ddu, m=m, shift=e(shift), gain=e(steps.adaln_gain(scale)),
                 gate=None if g_ is None else e(g_), gated=bool(gated), d=d)


def _linear_grads(call: _Call, dm: Num) -> dict[str, Num]:
    out = {"cond": (dm @ call.weight.T) * call.du, "weight": call.u.T @ dm}
    if call.bias is not None:
        out["bias"] = reduce_sum(dm, (0,)).reshape(dm.shape[1])
    return out


def _dm(call: _Call, g: Num, z_like: Num, h: Num) -> Num:
    """The modulation's cotangent ``[S(g G), S(g G z), S(g h)]`` (the last only gated)."""
    gg = call.g_gate(g)
    parts = [call.tokens(gg), call.tokens(gg * z_like)]
    if call.gated:
        parts.append(call.tokens(g * h))
    return np.concatenate(parts, axis=1)


def _tangent_m(call: _Call, t: Mapping[str, Num]) -> Num:
    tm = np.zeros_like(call.m)
    if "cond" in t:
        tm = tm + (call.du * t["cond"]) @ call.weight
    if "weight" in t:
        tm = tm + call.u @ t["weight"]
    if "bias" in t:
        tm = tm + t["bias"]
    return tm


def _split(call: _Call, tm: Num) -> tuple[Num, Num, Num | None]:
    d, e = call.d, call.expand
    return e(tm[:, :d]), e(tm[:, d:2 * d]), (e(tm[:, 2 * d:]) if call.gated else None)


@dataclass(frozen=True)
class AdaptiveLayerNorm:
    """The numpy adapter's adaptive_layer_norm (see the module docstring)."""

    name: str = _NAME
    primals: tuple[str, ...] = ("x", "cond", "weight", "bias")
    state: tuple[str, ...] = ()

    def forward(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                hyper: Mapping[str, Any]) -> dict[str, Num]:
        call = _prepare(nx, prec, inputs, hyper)
        h = call.h()
        lead = call.x.shape[:-1]
        out = {"y": h if call.gate is None else call.gate * h,
               "mean": call.nrm.mean.reshape(lead), "var": call.nrm.var.reshape(lead),
               "rstd": call.nrm.rstd.reshape(lead)}
        d = call.d
        out["shift"], out["scale"] = call.m[:, :d], call.m[:, d:2 * d]
        if call.gated:
            out["gate"] = call.m[:, 2 * d:]
        return out

    def vjp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], g: Num) -> dict[str, Num]:
        call = _prepare(nx, prec, inputs, hyper)
        out = {"x": nx.vjp_x(call.nrm, call.g_gate(g) * call.gain, call.axes, True)}
        out.update(_linear_grads(call, _dm(call, g, call.nrm.z, call.h())))
        return out

    def jvp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], t: Mapping[str, Num]) -> Num:
        call = _prepare(nx, prec, inputs, hyper)
        tshift, tscale, tgate = _split(call, _tangent_m(call, t))
        tz = (jacobian(call.nrm, t["x"], call.axes, True) if "x" in t
              else np.zeros_like(call.nrm.z))
        th: Num = tz * call.gain + call.nrm.z * tscale + tshift
        if call.gate is None or tgate is None:
            return th
        out: Num = call.gate * th + tgate * call.h()
        return out

    def second_order(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                     hyper: Mapping[str, Any], g: Num, t: Mapping[str, Num]) -> dict[str, Num]:
        call = _prepare(nx, prec, inputs, hyper)
        nrm, axes = call.nrm, call.axes
        tm = _tangent_m(call, t)
        tshift, tscale, tgate = _split(call, tm)
        tx = t.get("x", np.zeros_like(call.x))
        tz = jacobian(nrm, tx, axes, True)
        gate = 1 if call.gate is None else call.gate
        tg = 0 if tgate is None else tgate
        a = gate * call.gain
        ta = tg * call.gain + gate * tscale
        ga = g * a
        ratio = -nrm.rstd * reduce_mean(nrm.z * tx, axes)
        dx = ratio * jacobian(nrm, ga, axes, True) - nrm.rstd * (
            tz * reduce_mean(nrm.z * ga, axes) + nrm.z * reduce_mean(tz * ga, axes))
        out = {"x": dx + jacobian(nrm, g * ta, axes, True)}
        h = call.h()
        th = tz * call.gain + nrm.z * tscale + tshift
        dm = _dm(call, g, nrm.z, h)
        parts = [call.tokens(g * tg), call.tokens(g * (tg * nrm.z + gate * tz))]
        if call.gated:
            parts.append(call.tokens(g * th))
        tdm = np.concatenate(parts, axis=1)
        tc = t.get("cond", np.zeros_like(call.cond))
        tw = t.get("weight", np.zeros_like(call.weight))
        out["cond"] = ((tdm @ call.weight.T + dm @ tw.T) * call.du
                       + (dm @ call.weight.T) * call.ddu * tc)
        out["weight"] = (call.du * tc).T @ dm + call.u.T @ tdm
        if call.bias is not None:
            out["bias"] = reduce_sum(tdm, (0,)).reshape(tdm.shape[1])
        return out


ADAPTIVE_LAYER_NORM = AdaptiveLayerNorm()
