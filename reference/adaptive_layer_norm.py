"""Adaptive layer normalization (adaLN, adaLN-Zero): layer norm modulated by a conditioning vector.

``x`` has shape ``(N, *tokens, D)`` (``(N, D)`` or DiT's ``(N, L, D)``); ``cond`` has shape
``(N, K)``. With ``P = 2`` (``gated=False``) or ``P = 3`` (``gated=True``), ``weight`` of shape
``(K, P*D)`` and the optional ``bias`` of shape ``(P*D,)``::

    u = silu(cond) = cond * sigmoid(cond)       (activation="silu"; u = cond for "none")
    m = u @ weight + bias                       (N, P*D)
    shift = m[:, 0:D],  scale = m[:, D:2D],  gate = m[:, 2D:3D]      (DiT's chunk order)
    z = layer_norm(x; axis=-1, no affine, eps)  (layer_norm's shared core, biased variance)
    h = z * (1 + scale) + shift                 (shift, scale broadcast over the token axes)
    y = h                                       (gated=False, adaLN)
    y = gate * h                                (gated=True,  adaLN-Zero's gated branch)

Only the last axis is normalized and modulated, as in DiT (``LayerNorm(D)`` on the tokens).
The gated output is the gate times the modulated normalization; in DiT the gate multiplies a
sublayer's output inside a residual, ``x + gate * f(modulate(norm(x), shift, scale))``; ``f``
(attention or MLP) and the residual are arbitrary or trivial, so they are left out and ``y`` is
that branch with ``f`` the identity. With ``weight`` and ``bias`` zero (adaLN-Zero's
initialisation) ``y`` is the plain layer norm (``gated=False``) or exactly 0 (``gated=True``).

``cond``, ``weight`` and ``bias`` are primals: gradients reach the modulation's linear map.

>>> import numpy as np
>>> x = np.array([[1.0, 2.0, 3.0]])
>>> w = np.zeros((1, 6)); w[0, 0:3] = 1.0; w[0, 3:6] = 2.0   # shift = u, scale = 2u
>>> out = forward(x, np.array([[0.5]]), w, activation="none", gated=False, eps=0.0)
>>> out["y"].round(6).tolist()                   # z * (1 + 1) + 0.5
[[-1.94949, 0.5, 2.94949]]
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from . import layer_norm
from ._checks import (
    FloatArray,
    as_float64,
    check_choice,
    check_ndim,
    check_shape,
    cotangent_like,
    directions,
    ieee,
    optional_float64,
)
from ._layout import Layout, sum_over
from ._standardize import AffineNorm

PRIMALS = ("x", "cond", "weight", "bias")
"""Differentiable inputs, in call order; ``bias`` may be None."""
STATS = ("mean", "var", "rstd", "shift", "scale", "gate")
"""layer_norm's ``mean``, ``var``, ``rstd`` of ``x`` over its last axis (shape ``x.shape[:-1]``)
and the modulation ``shift``, ``scale`` and (``gated=True`` only) ``gate``, each ``(N, D)``."""
NCHW_EXAMPLE: dict[str, object] = {"gated": False, "activation": "none"}
"""Hyperparameters of the canonical ``(N, C, H, W)`` example (``cond``, ``weight`` passed too):
the statistics are taken over the last axis only, as layer norm with ``axis=-1``."""
ACTIVATIONS = ("silu", "none")


def input_shapes(shape: tuple[int, ...], hyper: Mapping[str, object]
                 ) -> dict[str, tuple[int, ...]]:
    """``cond (N, K)``, ``weight (K, P*D)``, ``bias (P*D,)`` with ``K = min(D, 4)``.

    The method takes any ``K``; the vectors fix it from ``D`` so that ``D = 1..4`` gives DiT's
    square map (``K = D``) and wide ``x`` (``D`` over 1000) keeps a small map.
    """
    k = min(shape[-1], 4)
    p = 3 if hyper.get("gated") else 2
    return {"cond": (shape[0], k), "weight": (k, p * shape[-1]), "bias": (p * shape[-1],)}


def _check_gated(value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"argument 'gated': got {value!r}, expected True or False")
    return bool(value)


@dataclass(frozen=True)
class _Call:
    x: FloatArray
    cond: FloatArray
    weight: FloatArray
    bias: FloatArray | None
    gated: bool
    silu: bool
    norm: AffineNorm
    d: int

    @property
    def layout(self) -> Layout:
        return self.norm.layout

    def expand(self, v: FloatArray) -> FloatArray:
        """An ``(N, D)`` modulation broadcast against ``x`` (over the token axes)."""
        return v.reshape((v.shape[0],) + (1,) * (self.x.ndim - 2) + (self.d,))

    def reduce(self, a: FloatArray) -> FloatArray:
        """Sum an ``x``-shaped array over the token axes down to ``(N, D)``."""
        return sum_over(a, tuple(range(1, self.x.ndim - 1))) if self.x.ndim > 2 else a

    def chunks(self, m: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray | None]:
        d = self.d
        return (self.expand(m[:, :d]), self.expand(m[:, d:2 * d]),
                self.expand(m[:, 2 * d:]) if self.gated else None)


def _setup(x: object, cond: object, weight: object, bias: object, gated: object,
           activation: object, eps: float) -> _Call:
    xa = as_float64("x", x)
    check_ndim("x", xa, 2)
    g = _check_gated(gated)
    act = check_choice("activation", activation, ACTIVATIONS)
    # layer_norm's own validation and core over the last axis, without its affine
    _, _, _, norm = layer_norm._setup(xa, None, None, -1, eps)
    c = as_float64("cond", cond)
    check_ndim("cond", c, 2)
    if c.shape[0] != xa.shape[0]:
        raise ValueError(f"argument 'cond': got shape {c.shape}, expected ({xa.shape[0]}, K): "
                         "one conditioning row per sample of x")
    p, d = (3 if g else 2), xa.shape[-1]
    w = as_float64("weight", weight)
    check_shape("weight", w, (c.shape[1], p * d))
    b = optional_float64("bias", bias)
    check_shape("bias", b, (p * d,))
    return _Call(x=xa, cond=c, weight=w, bias=b, gated=g, silu=act == "silu", norm=norm, d=d)


def _sigmoid(c: FloatArray) -> FloatArray:
    # exp of -|c| only: no overflow for either sign
    e = np.exp(-np.abs(c))
    out: FloatArray = np.where(c >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return out


_DECIMAL = decimal.Context(prec=40, Emin=-999999, Emax=999999)


def _silu_rounded(c: float) -> float:
    """``silu(c)`` correctly rounded (to 40 digits first): float64 arithmetic loses ~2 ulp,
    which the linear map and the products with ``z`` and ``gate`` would compound."""
    if not math.isfinite(c):
        return c if c > 0 else math.nan  # silu(-inf) = -inf * sigmoid(-inf) = -inf * 0
    d = decimal.Decimal(c)
    return float(_DECIMAL.divide(d, _DECIMAL.add(1, _DECIMAL.exp(-d))))


def _act(call: _Call) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``u``, ``u'`` and ``u''`` of the activation at ``cond``."""
    c = call.cond
    if not call.silu:
        return c, np.ones_like(c), np.zeros_like(c)
    s = _sigmoid(c)
    u = np.array([_silu_rounded(v) for v in c.ravel().tolist()]).reshape(c.shape)
    return u, s * (1.0 + c * (1.0 - s)), s * (1.0 - s) * (2.0 + c * (1.0 - 2.0 * s))


def _matmul_exact(u: FloatArray, w: FloatArray, b: FloatArray | None) -> FloatArray:
    """``u @ w + b`` with every entry rounded once from the exact sum of exact products."""
    n, p = u.shape[0], w.shape[1]
    naive = u @ w + (0.0 if b is None else b)
    out = np.empty((n, p))
    for i in range(n):
        for j in range(p):
            pairs = list(zip(u[i].tolist(), w[:, j].tolist(), strict=True))
            if b is not None:
                pairs.append((1.0, float(b[j])))
            out[i, j] = _exact_sum(pairs, float(naive[i, j]))
    return out


def _exact_sum(pairs: list[tuple[float, float]], fallback: float) -> float:
    """``sum(a * b)`` over ``pairs`` rounded once; IEEE's float result when any is not finite."""
    if not all(math.isfinite(a) and math.isfinite(b) for a, b in pairs):
        return fallback
    total = sum((Fraction(a) * Fraction(b) for a, b in pairs), Fraction(0))
    try:
        return float(total)
    except OverflowError:
        return math.copysign(math.inf, total)


@ieee
def _modulation(call: _Call) -> FloatArray:
    return _matmul_exact(_act(call)[0], call.weight, call.bias)


def _gate_or_one(gate: FloatArray | None) -> FloatArray | float:
    return 1.0 if gate is None else gate


@ieee
def _forward(call: _Call) -> dict[str, FloatArray]:
    out = call.norm.outputs(call.x, None, None)
    m = _modulation(call)
    shift, scale, gate = call.chunks(m)
    out["y"] = _modulate(out["y"], shift, scale, gate)
    d = call.d
    out["shift"], out["scale"] = m[:, :d], m[:, d:2 * d]
    if call.gated:
        out["gate"] = m[:, 2 * d:]
    return out


def _modulate(z: FloatArray, shift: FloatArray, scale: FloatArray, gate: FloatArray | None
              ) -> FloatArray:
    """``gate * (z * (1 + scale) + shift)`` rounded once per element (exact rationals), so
    the only error left in ``y`` is that of ``z``; IEEE float arithmetic off the finite range."""
    g = np.ones_like(z) if gate is None else gate
    zb, sc, sh, gb = np.broadcast_arrays(z, scale, shift, g)
    fallback = gb * (zb * (1.0 + sc) + sh)
    out = np.empty(z.shape)
    for idx, (zv, cv, hv, gv, fv) in enumerate(zip(zb.ravel().tolist(), sc.ravel().tolist(),
                                                    sh.ravel().tolist(), gb.ravel().tolist(),
                                                    fallback.ravel().tolist(), strict=True)):
        if not all(math.isfinite(v) for v in (zv, cv, hv, gv)):
            out.flat[idx] = fv
            continue
        exact = Fraction(gv) * (Fraction(zv) * (1 + Fraction(cv)) + Fraction(hv))
        try:
            out.flat[idx] = float(exact)
        except OverflowError:
            out.flat[idx] = math.copysign(math.inf, exact)
    return out


def forward(x: object, cond: object, weight: object, bias: object = None, *, gated: bool,
            activation: str, eps: float) -> dict[str, FloatArray]:
    """Return ``{"y", "mean", "var", "rstd", "shift", "scale"}`` and ``"gate"`` when gated."""
    return _forward(_setup(x, cond, weight, bias, gated, activation, eps))


def layout(shape: tuple[int, ...], *, gated: bool, activation: str) -> Layout:
    """The reduction layout (layer norm's over the last axis) for an ``x`` of ``shape``."""
    del gated, activation  # the modulation does not change which values are reduced together
    return layer_norm.layout(shape, axis=-1)


def _linear_vjp(call: _Call, u: FloatArray, du: FloatArray, dm: FloatArray
                ) -> dict[str, FloatArray]:
    grads = {"cond": (dm @ call.weight.T) * du, "weight": u.T @ dm}
    if call.bias is not None:
        grads["bias"] = dm.sum(axis=0)
    return grads


@ieee
def _vjp(call: _Call, g: FloatArray) -> dict[str, FloatArray]:
    u, du, _ = _act(call)
    shift, scale, gate = call.chunks(_matmul_exact(u, call.weight, call.bias))
    z = call.norm.forward(call.x, None, None)[0]
    gg = g * _gate_or_one(gate)
    grads = {"x": call.norm.vjp(call.x, None, None, gg * (1.0 + scale))["x"]}
    parts = [call.reduce(gg), call.reduce(gg * z)]
    if gate is not None:
        parts.append(call.reduce(g * (z * (1.0 + scale) + shift)))
    grads.update(_linear_vjp(call, u, du, np.concatenate(parts, axis=1)))
    return grads


def _tangents(call: _Call, tangent: Mapping[str, object]) -> dict[str, FloatArray]:
    given = {"x": call.x, "cond": call.cond, "weight": call.weight, "bias": call.bias}
    return {k: v for k, v in directions("tangent", tangent, given).items() if v is not None}


def _dm(call: _Call, t: Mapping[str, FloatArray], u: FloatArray, du: FloatArray) -> FloatArray:
    """Directional derivative of the modulation ``m``."""
    out = (du * t["cond"]) @ call.weight + u @ t["weight"]
    if "bias" in t:
        out = out + t["bias"][None, :]
    return out


@ieee
def _jvp(call: _Call, t: Mapping[str, FloatArray]) -> FloatArray:
    u, du, _ = _act(call)
    shift, scale, gate = call.chunks(_matmul_exact(u, call.weight, call.bias))
    tshift, tscale, tgate = call.chunks(_dm(call, t, u, du))
    z = call.norm.forward(call.x, None, None)[0]
    tz = call.norm.jvp(call.x, None, None, {"x": t["x"]})
    th = tz * (1.0 + scale) + z * tscale + tshift
    if gate is None:
        return th
    assert tgate is not None
    return gate * th + tgate * (z * (1.0 + scale) + shift)


def jvp(x: object, cond: object, weight: object, bias: object = None, *,
        tangent: Mapping[str, object], gated: bool, activation: str, eps: float) -> FloatArray:
    """Directional derivative of ``y``; missing tangent keys are zero."""
    call = _setup(x, cond, weight, bias, gated, activation, eps)
    return _jvp(call, _tangents(call, tangent))


def vjp(x: object, cond: object, weight: object, bias: object = None, *, cotangent: object,
        gated: bool, activation: str, eps: float) -> dict[str, FloatArray]:
    """Gradients of ``sum(cotangent * y)`` for each primal that is not None."""
    call = _setup(x, cond, weight, bias, gated, activation, eps)
    return _vjp(call, cotangent_like(cotangent, call.x.shape))


@ieee
def _second_order(call: _Call, g: FloatArray, t: Mapping[str, FloatArray]
                  ) -> dict[str, FloatArray]:
    u, du, ddu = _act(call)
    m = _matmul_exact(u, call.weight, call.bias)
    shift, scale, gate = call.chunks(m)
    tm = _dm(call, t, u, du)
    tshift, tscale, tgate = call.chunks(tm)
    z = call.norm.forward(call.x, None, None)[0]
    tz = call.norm.jvp(call.x, None, None, {"x": t["x"]})
    gate1, tgate1 = _gate_or_one(gate), (0.0 if tgate is None else tgate)
    # vjp_x = J (g a) with a = gate (1 + scale); its derivative: (J)' (g a) + J (g a')
    a = gate1 * (1.0 + scale)
    ta = tgate1 * (1.0 + scale) + gate1 * tscale
    out = {"x": call.norm.second_order(call.x, None, None, g * a, {"x": t["x"]})["x"]
           + call.norm.vjp(call.x, None, None, g * ta)["x"]}
    h = z * (1.0 + scale) + shift
    th = tz * (1.0 + scale) + z * tscale + tshift
    parts = [call.reduce(g * gate1), call.reduce(g * gate1 * z)]
    tparts = [call.reduce(g * tgate1), call.reduce(g * (tgate1 * z + gate1 * tz))]
    if gate is not None:
        parts.append(call.reduce(g * h))
        tparts.append(call.reduce(g * th))
    dm, tdm = np.concatenate(parts, axis=1), np.concatenate(tparts, axis=1)
    tu = du * t["cond"]
    out["cond"] = ((tdm @ call.weight.T + dm @ t["weight"].T) * du
                   + (dm @ call.weight.T) * ddu * t["cond"])
    out["weight"] = tu.T @ dm + u.T @ tdm
    if call.bias is not None:
        out["bias"] = tdm.sum(axis=0)
    return out


def second_order(x: object, cond: object, weight: object, bias: object = None, *,
                 cotangent: object, tangent: Mapping[str, object], gated: bool,
                 activation: str, eps: float) -> dict[str, FloatArray]:
    """Derivative of :func:`vjp` (``cotangent`` held fixed) along ``tangent``."""
    call = _setup(x, cond, weight, bias, gated, activation, eps)
    return _second_order(call, cotangent_like(cotangent, call.x.shape), _tangents(call, tangent))
