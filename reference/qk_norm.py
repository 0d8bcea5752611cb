"""QK normalization: queries and keys normalized per head, then the attention logits.

``x`` holds the queries q and ``k`` the keys, both ``(B, H, T, Dh)`` (``layout="bhtd"``, the
layout of ``torch.nn.functional.scaled_dot_product_attention``) or ``(B, T, H, Dh)``
(``layout="bthd"``, Flax/JAX and the projection's output before the transpose). The two lengths
``Tq`` and ``Tk`` may differ; ``B``, ``H`` and ``Dh`` must agree (grouped-query attention repeats
the key heads first). With ``c = logit_scale`` and ``g = gain`` (1 when absent)::

    qhat = N_q(q),  khat = N_k(k)
    y[b, h, i, j] = c * g * sum_d qhat[b, h, i, d] * khat[b, h, j, d]      (B, H, Tq, Tk)

whatever the layout (the logits are always ``(B, H, Tq, Tk)``, as both frameworks return them).

``variant="l2"`` (QKNorm, Henry et al. 2020): ``N(v) = v / max(||v||_2, eps)`` over ``Dh``,
lp_norm with ``p = 2`` on the last axis (a zero row gives 0 for ``eps > 0``). No per-dimension
weights. The paper's learned scalar is ``gain`` (its initial value, a function of the sequence
length in the paper, is the caller's); a fixed scale is ``logit_scale`` with ``gain`` absent.

``variant="rms"`` (Gemma, OLMo, Qwen3 style): ``N(v) = v * rsqrt(mean(v^2) + eps) * w``,
rms_norm with ``eps`` inside the square root, and ``q_weight``, ``k_weight`` separate (q and k
have their own norms) and optional. ``norm_axes="head"``: the mean is over ``Dh`` of each head
and the weight ``(Dh,)`` is shared by every head (Qwen3, Gemma 3, OLMoE). ``norm_axes="hidden"``:
the mean is over all ``H * Dh`` values of a token before the heads are split (OLMo-2), and the
weight ``(H, Dh)`` is one value per head and dimension. ``logit_scale`` is usually
``1/sqrt(Dh)`` there; it is never implied.

``x``, ``k``, ``q_weight``, ``k_weight`` and ``gain`` are primals. Statistics: ``q_hat`` and
``k_hat``, the normalized queries and keys in the input layout, so that a wrong logit is traced
to the normalization or to the product.

>>> import numpy as np
>>> q = np.array([3.0, 4.0]).reshape(1, 1, 1, 2); k = np.array([0.0, 2.0]).reshape(1, 1, 1, 2)
>>> out = forward(q, k, variant="l2", layout="bhtd", norm_axes="head", logit_scale=10.0,
...               eps=1e-12)
>>> out["y"].tolist(), out["q_hat"].ravel().tolist()
([[[[8.0]]]], [0.6, 0.8])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from . import lp_norm, rms_norm
from ._checks import (
    FloatArray,
    as_float64,
    check_choice,
    check_eps,
    check_real,
    check_shape,
    cotangent_like,
    directions,
    ieee,
    optional_float64,
)
from ._layout import Layout

PRIMALS = ("x", "k", "q_weight", "k_weight", "gain")
"""Differentiable inputs, in call order: queries, keys, the two norms' weights, the scalar
gain; all but ``x`` and ``k`` may be None."""
STATS = ("q_hat", "k_hat")
"""The normalized queries and keys, shaped like ``x`` and ``k``."""
NO_NCHW_EXAMPLE = ("the inputs are queries and keys, (B, H, T, Dh) per-head vectors reduced over "
                   "Dh (or over H * Dh per token), and the output is their logits; layout() "
                   "gives the reduced sets of the queries")
VARIANTS = ("l2", "rms")
LAYOUTS = ("bhtd", "bthd")
NORM_AXES = ("head", "hidden")


def input_shapes(shape: tuple[int, ...], hyper: Mapping[str, object]
                 ) -> dict[str, tuple[int, ...]]:
    """``k`` like ``x`` with ``Tk = Tq`` for an even ``Tq`` and ``Tq + 2`` for an odd one
    (the vectors fix the key length from the query length so odd lengths test ``Tq != Tk``,
    e.g. one decoding query against three keys); weights ``(Dh,)`` or ``(H, Dh)``; gain ``()``.
    """
    if len(shape) != 4:
        raise ValueError(f"argument 'shape': got {shape}, expected (B, H, T, Dh) or (B, T, H, Dh)")
    t_axis, h_axis = (2, 1) if hyper.get("layout") == "bhtd" else (1, 2)
    tq = shape[t_axis]
    ks = list(shape)
    ks[t_axis] = tq if tq % 2 == 0 else tq + 2
    w = (shape[h_axis], shape[3]) if hyper.get("norm_axes") == "hidden" else (shape[3],)
    return {"k": tuple(ks), "q_weight": w, "k_weight": w, "gain": ()}


def output_shape(shape: tuple[int, ...], hyper: Mapping[str, object]) -> tuple[int, ...]:
    """The logits' shape ``(B, H, Tq, Tk)`` for queries of ``shape`` (``Tk`` as in
    :func:`input_shapes`): ``y``, and so the cotangent, are not shaped like ``x``."""
    k = input_shapes(shape, hyper)["k"]
    if hyper.get("layout") == "bhtd":
        return (shape[0], shape[1], shape[2], k[2])
    return (shape[0], shape[2], shape[1], k[1])


@dataclass(frozen=True)
class _Call:
    q: FloatArray
    k: FloatArray
    qw: FloatArray | None
    kw: FloatArray | None
    gain: FloatArray | None
    rms: bool
    hidden: bool
    bthd: bool
    c: float
    eps: float

    def to_bhtd(self, a: FloatArray) -> FloatArray:
        """An input-layout array as ``(B, H, T, Dh)`` (and back: the swap is an involution)."""
        return np.ascontiguousarray(a.transpose(0, 2, 1, 3)) if self.bthd else a

    @property
    def g(self) -> float:
        return 1.0 if self.gain is None else float(self.gain)


def _setup(x: object, k: object, q_weight: object, k_weight: object, gain: object,
           variant: object, layout: object, norm_axes: object, logit_scale: object,
           eps: object) -> _Call:
    q = as_float64("x", x)
    ka = as_float64("k", k)
    v = check_choice("variant", variant, VARIANTS)
    lay = check_choice("layout", layout, LAYOUTS)
    axes = check_choice("norm_axes", norm_axes, NORM_AXES)
    c = check_real("logit_scale", logit_scale)
    e = check_eps(eps)
    for name, a in (("x", q), ("k", ka)):
        if a.ndim != 4:
            raise ValueError(f"argument {name!r}: got shape {a.shape}, expected 4 axes "
                             f"({'(B, H, T, Dh)' if lay == 'bhtd' else '(B, T, H, Dh)'})")
        if a.shape[3] == 0:
            raise ValueError(f"argument {name!r}: got shape {a.shape}, expected Dh >= 1")
    h_axis = 1 if lay == "bhtd" else 2
    if q.shape[0] != ka.shape[0] or q.shape[h_axis] != ka.shape[h_axis] or \
            q.shape[3] != ka.shape[3]:
        raise ValueError(f"argument 'k': got shape {ka.shape}, expected the batch, head and "
                         f"head-dimension sizes of x {q.shape} (layout {lay!r})")
    qw, kw = optional_float64("q_weight", q_weight), optional_float64("k_weight", k_weight)
    if v == "l2":
        if axes != "head":
            raise ValueError(f"argument 'norm_axes': got {axes!r}, expected 'head' for "
                             "variant 'l2' (QKNorm normalizes each head's vector)")
        for name, w in (("q_weight", qw), ("k_weight", kw)):
            if w is not None:
                raise ValueError(f"argument {name!r}: got an array, expected None for variant "
                                 "'l2' (QKNorm has no per-dimension weight; its scale is 'gain')")
    wshape = (q.shape[h_axis], q.shape[3]) if axes == "hidden" else (q.shape[3],)
    check_shape("q_weight", qw, wshape)
    check_shape("k_weight", kw, wshape)
    g = optional_float64("gain", gain)
    check_shape("gain", g, ())
    return _Call(q=q, k=ka, qw=qw, kw=kw, gain=g, rms=v == "rms", hidden=axes == "hidden",
                 bthd=lay == "bthd", c=c, eps=e)


# ---------------------------------------------------------------------------------------------
# The per-tensor normalization, delegated to lp_norm and rms_norm (composed, not copied).


def _to_tokens(call: _Call, a: FloatArray) -> FloatArray:
    """``(B, T, H, Dh)`` for the hidden-axes RMSNorm (the swap is an involution)."""
    return a if call.bthd else np.ascontiguousarray(a.transpose(0, 2, 1, 3))


def _norm_fwd(call: _Call, a: FloatArray, w: FloatArray | None
              ) -> tuple[FloatArray, FloatArray, bool]:
    """The normalized tensor, and its per-vector factor as ``(B, H, T)``: the divisor
    ``max(norm, eps)`` (l2, ``divides`` true) or ``rrms`` (rms, broadcast over the heads for
    the hidden axes)."""
    if not call.rms:
        out = lp_norm.forward(a, p=2, axis=-1, eps=call.eps)
        div = np.maximum(out["norm"], call.eps)
        return out["y"], call.to_bhtd(div[..., None])[..., 0], True
    if call.hidden:
        out = rms_norm.forward(_to_tokens(call, a), w, axis=2, eps=call.eps)
        b, t = out["rrms"].shape
        h = a.shape[1] if not call.bthd else a.shape[2]
        rrms = np.broadcast_to(out["rrms"][:, None, :], (b, h, t))
        return _to_tokens(call, out["y"]), rrms, False
    out = rms_norm.forward(a, w, axis=-1, eps=call.eps)
    return out["y"], call.to_bhtd(out["rrms"][..., None])[..., 0], False


def _norm_vjp(call: _Call, a: FloatArray, w: FloatArray | None, cot: FloatArray
              ) -> tuple[FloatArray, FloatArray | None]:
    if not call.rms:
        return lp_norm.vjp(a, cotangent=cot, p=2, axis=-1, eps=call.eps)["x"], None
    if call.hidden:
        r = rms_norm.vjp(_to_tokens(call, a), w, cotangent=_to_tokens(call, cot), axis=2,
                         eps=call.eps)
        return _to_tokens(call, r["x"]), r.get("weight")
    r = rms_norm.vjp(a, w, cotangent=cot, axis=-1, eps=call.eps)
    return r["x"], r.get("weight")


def _norm_jvp(call: _Call, a: FloatArray, w: FloatArray | None, ta: FloatArray,
              tw: FloatArray | None) -> FloatArray:
    if not call.rms:
        return lp_norm.jvp(a, tangent={"x": ta}, p=2, axis=-1, eps=call.eps)
    t = {"x": ta} if w is None else {"x": ta, "weight": tw}
    if call.hidden:
        t = {n: _to_tokens(call, v) if n == "x" and v is not None else v for n, v in t.items()}
        return _to_tokens(call, rms_norm.jvp(_to_tokens(call, a), w, tangent=t, axis=2,
                                             eps=call.eps))
    return rms_norm.jvp(a, w, tangent=t, axis=-1, eps=call.eps)


def _norm_second(call: _Call, a: FloatArray, w: FloatArray | None, cot: FloatArray,
                 ta: FloatArray, tw: FloatArray | None) -> tuple[FloatArray, FloatArray | None]:
    if not call.rms:
        return lp_norm.second_order(a, cotangent=cot, tangent={"x": ta}, p=2, axis=-1,
                                    eps=call.eps)["x"], None
    t = {"x": ta} if w is None else {"x": ta, "weight": tw}
    if call.hidden:
        t = {n: _to_tokens(call, v) if n == "x" and v is not None else v for n, v in t.items()}
        r = rms_norm.second_order(_to_tokens(call, a), w, cotangent=_to_tokens(call, cot),
                                  tangent=t, axis=2, eps=call.eps)
        return _to_tokens(call, r["x"]), r.get("weight")
    r = rms_norm.second_order(a, w, cotangent=cot, tangent=t, axis=-1, eps=call.eps)
    return r["x"], r.get("weight")


# ---------------------------------------------------------------------------------------------
# The product.


def _exact(value: Fraction) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.copysign(math.inf, value)


def _logits_plain(qb: FloatArray, kb: FloatArray, factor: float) -> FloatArray:
    out: FloatArray = factor * np.matmul(qb, np.swapaxes(kb, -1, -2))
    return out


def _weighted(call: _Call, a: FloatArray, w: FloatArray | None) -> list[list[Fraction]]:
    """The vectors ``a * w`` (exact) in ``(B, H, T, Dh)`` order, one list per vector."""
    ab = call.to_bhtd(a)
    if w is None:
        wb = np.ones(ab.shape[-1:])
    elif w.ndim == 1:
        wb = w
    else:
        wb = w[None, :, None, :]
    wf = np.broadcast_to(wb, ab.shape).reshape(-1, ab.shape[-1]).tolist()
    return [[Fraction(v) * Fraction(u) for v, u in zip(row, wrow, strict=True)]
            for row, wrow in zip(ab.reshape(-1, ab.shape[-1]).tolist(), wf, strict=True)]


def _logits(call: _Call, f: _Fwd, factors: tuple[float, ...]) -> FloatArray:
    """``prod(factors) * qhat @ khat^T`` with every logit rounded once from the exact product
    of the inputs, weights and the two per-vector factors (the norms' own statistics, rounded
    once each): three roundings in all, where forming qhat and khat first would add theirs.
    IEEE float arithmetic where a value is not finite."""
    prod = math.prod(factors)
    fallback = _logits_plain(f.qb, f.kb, prod)
    values: list[Any] = [call.q, call.k, f.rq, f.rk, *(np.asarray(v) for v in factors)]
    if call.qw is not None:
        values += [call.qw, call.kw]
    if not all(np.isfinite(np.asarray(v)).all() for v in values if v is not None) or \
            not (np.all(f.rq != 0) and np.all(f.rk != 0)):
        return fallback
    c = math.prod((Fraction(v) for v in factors), start=Fraction(1))
    qf, kf = _weighted(call, call.q, call.qw), _weighted(call, call.k, call.kw)

    def factor(r: float) -> Fraction:
        return 1 / Fraction(r) if f.divides else Fraction(r)

    rq = [factor(v) for v in f.rq.ravel().tolist()]
    rk = [factor(v) for v in f.rk.ravel().tolist()]
    tq, tk = f.qb.shape[-2], f.kb.shape[-2]
    out = np.array(fallback, dtype=np.float64)
    flat = out.reshape(-1)
    for p in range(f.qb.shape[0] * f.qb.shape[1]):
        for i in range(tq):
            qrow, ri = qf[p * tq + i], c * rq[p * tq + i]
            for j in range(tk):
                krow = kf[p * tk + j]
                dot = sum((a * b for a, b in zip(qrow, krow, strict=True)), Fraction(0))
                flat[(p * tq + i) * tk + j] = _exact(ri * rk[p * tk + j] * dot)
    return out


def _fsum_all(a: FloatArray) -> float:
    return math.fsum(a.ravel().tolist())


@dataclass(frozen=True)
class _Fwd:
    qhat: FloatArray
    khat: FloatArray
    qb: FloatArray
    kb: FloatArray
    rq: FloatArray
    rk: FloatArray
    divides: bool


def _normalized(call: _Call) -> _Fwd:
    qhat, rq, divides = _norm_fwd(call, call.q, call.qw)
    khat, rk, _ = _norm_fwd(call, call.k, call.kw)
    return _Fwd(qhat=qhat, khat=khat, qb=call.to_bhtd(qhat), kb=call.to_bhtd(khat), rq=rq,
                rk=rk, divides=divides)


def _tangents(call: _Call, tangent: Mapping[str, object]) -> dict[str, FloatArray | None]:
    given = {"x": call.q, "k": call.k, "q_weight": call.qw, "k_weight": call.kw,
             "gain": call.gain}
    return directions("tangent", tangent, given)


@ieee
def _forward(call: _Call) -> dict[str, FloatArray]:
    f = _normalized(call)
    y = _logits(call, f, (call.c, call.g))
    return {"y": y, "q_hat": f.qhat, "k_hat": f.khat}


def _bmm(a: FloatArray, b: FloatArray) -> FloatArray:
    out: FloatArray = np.matmul(a, b)
    return out


def _t(a: FloatArray) -> FloatArray:
    return np.swapaxes(a, -1, -2)


@ieee
def _vjp(call: _Call, gy: FloatArray) -> dict[str, FloatArray]:
    f = _normalized(call)
    ds = (call.c * call.g) * gy
    dq, dqw = _norm_vjp(call, call.q, call.qw, call.to_bhtd(_bmm(ds, f.kb)))
    dk, dkw = _norm_vjp(call, call.k, call.kw, call.to_bhtd(_bmm(_t(ds), f.qb)))
    out = {"x": dq, "k": dk}
    if dqw is not None:
        out["q_weight"] = dqw
    if dkw is not None:
        out["k_weight"] = dkw
    if call.gain is not None:
        s = _logits(call, f, (1.0,))
        out["gain"] = np.array(call.c * _fsum_all(gy * s))
    return out


@ieee
def _jvp(call: _Call, t: Mapping[str, FloatArray | None]) -> FloatArray:
    f = _normalized(call)
    tq, tk = t["x"], t["k"]
    assert tq is not None
    assert tk is not None
    tqb = call.to_bhtd(_norm_jvp(call, call.q, call.qw, tq, t["q_weight"]))
    tkb = call.to_bhtd(_norm_jvp(call, call.k, call.kw, tk, t["k_weight"]))
    ts = _bmm(tqb, _t(f.kb)) + _bmm(f.qb, _t(tkb))
    out = (call.c * call.g) * ts
    tg = t["gain"]
    if tg is not None:
        out = out + (call.c * float(tg)) * _logits(call, f, (1.0,))
    result: FloatArray = out
    return result


@ieee
def _second_order(call: _Call, gy: FloatArray, t: Mapping[str, FloatArray | None]
                  ) -> dict[str, FloatArray]:
    f = _normalized(call)
    tq, tk = t["x"], t["k"]
    assert tq is not None
    assert tk is not None
    tqb = call.to_bhtd(_norm_jvp(call, call.q, call.qw, tq, t["q_weight"]))
    tkb = call.to_bhtd(_norm_jvp(call, call.k, call.kw, tk, t["k_weight"]))
    cg = call.c * call.g
    ctg = call.c * (0.0 if t["gain"] is None else float(t["gain"]))
    # vjp_q = V_q(c g G khat); along t: V_q'(c g G khat) + V_q(c (g' G khat + g G khat'))
    cot_q = call.to_bhtd(cg * _bmm(gy, f.kb))
    dcot_q = call.to_bhtd(ctg * _bmm(gy, f.kb) + cg * _bmm(gy, tkb))
    cot_k = call.to_bhtd(cg * _bmm(_t(gy), f.qb))
    dcot_k = call.to_bhtd(ctg * _bmm(_t(gy), f.qb) + cg * _bmm(_t(gy), tqb))
    sq, sqw = _norm_second(call, call.q, call.qw, cot_q, tq, t["q_weight"])
    lq, lqw = _norm_vjp(call, call.q, call.qw, dcot_q)
    sk, skw = _norm_second(call, call.k, call.kw, cot_k, tk, t["k_weight"])
    lk, lkw = _norm_vjp(call, call.k, call.kw, dcot_k)
    out = {"x": sq + lq, "k": sk + lk}
    if sqw is not None and lqw is not None:
        out["q_weight"] = sqw + lqw
    if skw is not None and lkw is not None:
        out["k_weight"] = skw + lkw
    if call.gain is not None:
        ts = _bmm(tqb, _t(f.kb)) + _bmm(f.qb, _t(tkb))
        out["gain"] = np.array(call.c * _fsum_all(gy * ts))
    return out


def layout(shape: tuple[int, ...], *, variant: str, layout: str, norm_axes: str) -> Layout:
    """The reduction layout of the queries: one row per head vector (``Dh`` values), or per
    token (``H * Dh`` values) for ``norm_axes="hidden"`` (no computation).

    >>> layout((2, 3, 5, 4), variant="rms", layout="bhtd", norm_axes="head").n
    4
    >>> layout((2, 5, 3, 4), variant="rms", layout="bthd", norm_axes="hidden").stat_shape
    (2, 5)
    """
    check_choice("variant", variant, VARIANTS)
    lay = check_choice("layout", layout, LAYOUTS)
    axes = check_choice("norm_axes", norm_axes, NORM_AXES)
    if len(shape) != 4:
        raise ValueError(f"argument 'shape': got {shape}, expected 4 axes")
    if axes == "head":
        return Layout(shape=tuple(shape), perm=(0, 1, 2, 3), stat_shape=tuple(shape[:3]),
                      n=shape[3], param_axes=(3,))
    t_axis, h_axis = (2, 1) if lay == "bhtd" else (1, 2)
    return Layout(shape=tuple(shape), perm=(0, t_axis, h_axis, 3),
                  stat_shape=(shape[0], shape[t_axis]), n=shape[h_axis] * shape[3],
                  param_axes=(h_axis, 3))


def forward(x: object, k: object, q_weight: object = None, k_weight: object = None,
            gain: object = None, *, variant: str, layout: str, norm_axes: str,
            logit_scale: float, eps: float) -> dict[str, FloatArray]:
    """Return ``{"y", "q_hat", "k_hat"}``; see the module docstring for the definition."""
    return _forward(_setup(x, k, q_weight, k_weight, gain, variant, layout, norm_axes,
                           logit_scale, eps))


def vjp(x: object, k: object, q_weight: object = None, k_weight: object = None,
        gain: object = None, *, cotangent: object, variant: str, layout: str, norm_axes: str,
        logit_scale: float, eps: float) -> dict[str, FloatArray]:
    """Gradients of ``sum(cotangent * y)`` for each primal that is not None."""
    call = _setup(x, k, q_weight, k_weight, gain, variant, layout, norm_axes, logit_scale, eps)
    b, h = call.to_bhtd(call.q).shape[:2]
    shape = (b, h, call.to_bhtd(call.q).shape[2], call.to_bhtd(call.k).shape[2])
    return _vjp(call, cotangent_like(cotangent, shape))


def jvp(x: object, k: object, q_weight: object = None, k_weight: object = None,
        gain: object = None, *, tangent: Mapping[str, object], variant: str, layout: str,
        norm_axes: str, logit_scale: float, eps: float) -> FloatArray:
    """Directional derivative of ``y``; missing tangent keys are zero."""
    call = _setup(x, k, q_weight, k_weight, gain, variant, layout, norm_axes, logit_scale, eps)
    return _jvp(call, _tangents(call, tangent))


def second_order(x: object, k: object, q_weight: object = None, k_weight: object = None,
                 gain: object = None, *, cotangent: object, tangent: Mapping[str, object],
                 variant: str, layout: str, norm_axes: str, logit_scale: float, eps: float
                 ) -> dict[str, FloatArray]:
    """Derivative of :func:`vjp` (``cotangent`` held fixed) along ``tangent``."""
    call = _setup(x, k, q_weight, k_weight, gain, variant, layout, norm_axes, logit_scale, eps)
    b, h = call.to_bhtd(call.q).shape[:2]
    shape = (b, h, call.to_bhtd(call.q).shape[2], call.to_bhtd(call.k).shape[2])
    return _second_order(call, cotangent_like(cotangent, shape), _tangents(call, tangent))
