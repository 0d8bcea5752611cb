"""qk_norm: queries and keys normalized per head (L2 or RMSNorm), then the attention logits.

Per vector ``a`` (``Dh`` values of a head, or the ``H * Dh`` values of a token)::

    l2:   N = max(||a||, eps),  ahat = a / N
          vjp (g - ahat sum(g ahat)) / N unclamped, g / eps clamped
    rms:  r = 1 / sqrt(mean(a^2) + eps),  z = a r,  ahat = z w
          vjp r (g w - z mean(g w z)),  dw = sum(g z)

and ``L = c gain qhat khat^T`` in ``(B, H, Tq, Tk)``; ``dqhat = c gain G khat``,
``dkhat = c gain G^T qhat``, ``dgain = c sum(G S)``. The JVP and the second order
differentiate these by the product rule.

The steps where implementations differ (the reduced axes, the logit factor, which weight
each tensor uses) are the methods of :class:`QkSteps`; a mutant (tests/mutants/) is a
:class:`~._numerics.Numerics` that also derives from it and replaces one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._numerics import Numerics, hyper_value
from ._precision import Num, Precision, reduce_mean, reduce_sum

_NAME = "qk_norm"


class QkSteps:
    """The careful choice for each qk_norm-specific step."""

    def qk_axes(self, bthd: bool, hidden: bool) -> tuple[int, ...]:
        """The axes of one normalized vector: ``Dh``, or ``H`` and ``Dh`` together."""
        if not hidden:
            return (3,)
        return (2, 3) if bthd else (1, 3)

    def qk_factor(self, c: Any, gain: Num | None) -> Any:
        """The logit factor ``c * gain`` (``c`` alone without a gain)."""
        return c if gain is None else c * gain

    def qk_key_weight(self, q_weight: Num | None, k_weight: Num | None) -> Num | None:
        """The weight of the keys' norm: its own."""
        return k_weight


_DEFAULT = QkSteps()


def _steps(nx: Numerics) -> QkSteps:
    return nx if isinstance(nx, QkSteps) else _DEFAULT


@dataclass(frozen=True)
class _Norm:
    """One normalized tensor (input layout) with what its derivatives need."""

    a: Num
    w: Num | None          # broadcast against ``a``
    axes: tuple[int, ...]
    rms: bool
    eps: Any
    inv: Num               # 1 / N (l2) or r (rms), keep-dims
    clamped: Num | None    # l2 only
    z: Num                 # a / N (l2) or a r (rms)
    w_shape: tuple[int, ...] | None = None

    @property
    def hat(self) -> Num:
        return self.z if self.w is None else self.z * self.w

    def mean(self, v: Num) -> Num:
        return reduce_mean(v, self.axes) if self.rms else reduce_sum(v, self.axes)

    def vjp(self, g: Num) -> tuple[Num, Num | None]:
        if not self.rms:
            unclamped = (g - self.z * reduce_sum(g * self.z, self.axes)) * self.inv
            assert self.clamped is not None
            return np.where(self.clamped, g * self.inv, unclamped), None
        gw = g if self.w is None else g * self.w
        da = self.inv * (gw - self.z * reduce_mean(gw * self.z, self.axes))
        return da, None if self.w is None else self.weight_sum(g * self.z)

    def jvp(self, t: Num, tw: Num | None) -> Num:
        if not self.rms:
            unclamped = (t - self.z * reduce_sum(t * self.z, self.axes)) * self.inv
            assert self.clamped is not None
            return np.where(self.clamped, t * self.inv, unclamped)
        tz = self.inv * (t - self.z * reduce_mean(self.z * t, self.axes))
        out: Num = tz if self.w is None else tz * self.w
        return out if tw is None else out + self.z * tw

    def second(self, g: Num, t: Num, tw: Num | None) -> tuple[Num, Num | None]:
        if not self.rms:
            y, inv = self.z, self.inv
            dn = reduce_sum(y * t, self.axes)            # N' / 1
            yt = (t - y * dn) * inv                      # y'
            s = reduce_sum(g * y, self.axes)
            v = (g - y * s) * inv
            dv = -(yt * s + y * reduce_sum(g * yt, self.axes)) * inv - v * dn * inv
            assert self.clamped is not None
            return np.where(self.clamped, self.a.dtype.type(0), dv), None
        r, z = self.inv, self.z
        rho = reduce_mean(z * t, self.axes)
        tz = r * (t - z * rho)
        gw = g if self.w is None else g * self.w
        gwt = np.zeros_like(gw) if tw is None else g * tw
        m = reduce_mean(gw * z, self.axes)
        dm = reduce_mean(gwt * z + gw * tz, self.axes)
        # r = (mean(a^2) + eps)^(-1/2): r' = -r^3 mean(a t) = -r^2 rho
        da = -r * r * rho * (gw - z * m) + r * (gwt - tz * m - z * dm)
        return da, None if self.w is None else self.weight_sum(g * tz)

    def weight_sum(self, v: Num) -> Num:
        """Sum over the axes the (broadcast) weight is constant along, in its own shape."""
        assert self.w is not None
        assert self.w_shape is not None
        other = tuple(i for i in range(v.ndim) if self.w.shape[i] == 1)
        return reduce_sum(v, other).reshape(self.w_shape)


def _normalize(prec: Precision, a: Num, w: Num | None, axes: tuple[int, ...], rms: bool,
               eps: Any, wshape: tuple[int, ...]) -> _Norm:
    wb = None if w is None else w.reshape(wshape)
    if not rms:
        norm = np.sqrt(reduce_sum(a * a, axes))
        clamped = norm < eps
        denom = np.where(clamped, eps, norm)
        inv = a.dtype.type(1) / denom
        return _Norm(a=a, w=None, axes=axes, rms=False, eps=eps, inv=inv, clamped=clamped,
                     z=a / denom)
    r = a.dtype.type(1) / np.sqrt(reduce_mean(a * a, axes) + eps)
    return _Norm(a=a, w=wb, axes=axes, rms=True, eps=eps, inv=r, clamped=None, z=a * r,
                 w_shape=None if w is None else w.shape)


@dataclass(frozen=True)
class _Call:
    q: _Norm
    k: _Norm
    bthd: bool
    c: Any
    gain: Num | None
    factor: Any
    wshape: tuple[int, ...]

    def bhtd(self, a: Num) -> Num:
        """Input layout to ``(B, H, T, Dh)`` and back (the swap is an involution)."""
        return np.swapaxes(a, 1, 2) if self.bthd else a


def _prepare(nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
             hyper: Mapping[str, Any]) -> _Call:
    q, k = inputs["x"], inputs.get("k")
    assert q is not None
    if k is None:
        raise ValueError("argument 'inputs': got no 'k', expected the keys")
    variant = hyper_value(hyper, "variant", _NAME)
    layout = hyper_value(hyper, "layout", _NAME)
    norm_axes = hyper_value(hyper, "norm_axes", _NAME)
    if variant not in ("l2", "rms") or layout not in ("bhtd", "bthd") or \
            norm_axes not in ("head", "hidden"):
        raise ValueError(f"argument 'hyper': got variant={variant!r}, layout={layout!r}, "
                         f"norm_axes={norm_axes!r}, expected 'l2'|'rms', 'bhtd'|'bthd', "
                         "'head'|'hidden'")
    if q.ndim != 4 or k.ndim != 4:
        raise ValueError(f"argument 'inputs': got x {q.shape} and k {k.shape}, expected 4 axes")
    bthd, hidden, rms = layout == "bthd", norm_axes == "hidden", variant == "rms"
    steps = _steps(nx)
    axes = steps.qk_axes(bthd, hidden)
    eps = prec.scalar(float(hyper_value(hyper, "eps", _NAME)))
    c = prec.scalar(float(hyper_value(hyper, "logit_scale", _NAME)))
    # the weights broadcast against the input layout: (Dh,) per head, (H, Dh) per token
    wshape = ((1, 1, q.shape[2], q.shape[3]) if bthd else (1, q.shape[1], 1, q.shape[3])) \
        if hidden else (1, 1, 1, q.shape[3])
    qw = inputs.get("q_weight")
    kw = steps.qk_key_weight(qw, inputs.get("k_weight"))
    gain = inputs.get("gain")
    return _Call(q=_normalize(prec, q, qw, axes, rms, eps, wshape),
                 k=_normalize(prec, k, kw, axes, rms, eps, wshape), bthd=bthd, c=c, gain=gain,
                 factor=steps.qk_factor(c, gain), wshape=wshape)


def _t(a: Num) -> Num:
    return np.swapaxes(a, -1, -2)


def _tw(t: Mapping[str, Num], name: str, call: _Call) -> Num | None:
    v = t.get(name)
    return None if v is None else v.reshape(call.wshape)


@dataclass(frozen=True)
class QkNorm:
    """The numpy adapter's qk_norm (see the module docstring)."""

    name: str = _NAME
    primals: tuple[str, ...] = ("x", "k", "q_weight", "k_weight", "gain")
    state: tuple[str, ...] = ()

    def output_shape(self, inputs: Mapping[str, Num | None], hyper: Mapping[str, Any]
                     ) -> tuple[int, ...]:
        q, k = inputs["x"], inputs["k"]
        assert q is not None
        assert k is not None
        if hyper.get("layout") == "bthd":
            return (q.shape[0], q.shape[2], q.shape[1], k.shape[1])
        return (q.shape[0], q.shape[1], q.shape[2], k.shape[2])

    def forward(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                hyper: Mapping[str, Any]) -> dict[str, Num]:
        call = _prepare(nx, prec, inputs, hyper)
        qb, kb = call.bhtd(call.q.hat), call.bhtd(call.k.hat)
        return {"y": call.factor * (qb @ _t(kb)), "q_hat": call.q.hat, "k_hat": call.k.hat}

    def vjp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], g: Num) -> dict[str, Num]:
        call = _prepare(nx, prec, inputs, hyper)
        qb, kb = call.bhtd(call.q.hat), call.bhtd(call.k.hat)
        ds = call.factor * g
        dq, dqw = call.q.vjp(call.bhtd(ds @ kb))
        dk, dkw = call.k.vjp(call.bhtd(_t(ds) @ qb))
        out = {"x": dq, "k": dk}
        if dqw is not None:
            out["q_weight"] = dqw
        if dkw is not None:
            out["k_weight"] = dkw
        if call.gain is not None:
            out["gain"] = call.c * np.sum(g * (qb @ _t(kb)))
        return out

    def jvp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], t: Mapping[str, Num]) -> Num:
        call = _prepare(nx, prec, inputs, hyper)
        qb, kb = call.bhtd(call.q.hat), call.bhtd(call.k.hat)
        tq = call.bhtd(call.q.jvp(t.get("x", np.zeros_like(call.q.a)), _tw(t, "q_weight", call)))
        tk = call.bhtd(call.k.jvp(t.get("k", np.zeros_like(call.k.a)), _tw(t, "k_weight", call)))
        out: Num = call.factor * (tq @ _t(kb) + qb @ _t(tk))
        if "gain" in t:
            out = out + call.c * t["gain"] * (qb @ _t(kb))
        return out

    def second_order(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                     hyper: Mapping[str, Any], g: Num, t: Mapping[str, Num]) -> dict[str, Num]:
        call = _prepare(nx, prec, inputs, hyper)
        qb, kb = call.bhtd(call.q.hat), call.bhtd(call.k.hat)
        tq_in = t.get("x", np.zeros_like(call.q.a))
        tk_in = t.get("k", np.zeros_like(call.k.a))
        tqw, tkw = _tw(t, "q_weight", call), _tw(t, "k_weight", call)
        tq = call.bhtd(call.q.jvp(tq_in, tqw))
        tk = call.bhtd(call.k.jvp(tk_in, tkw))
        f = call.factor
        tf = call.c * t["gain"] if "gain" in t else call.c.dtype.type(0) * call.c
        sq, sqw = call.q.second(call.bhtd(f * (g @ kb)), tq_in, tqw)
        lq, lqw = call.q.vjp(call.bhtd(tf * (g @ kb) + f * (g @ tk)))
        sk, skw = call.k.second(call.bhtd(f * (_t(g) @ qb)), tk_in, tkw)
        lk, lkw = call.k.vjp(call.bhtd(tf * (_t(g) @ qb) + f * (_t(g) @ tq)))
        out = {"x": sq + lq, "k": sk + lk}
        if sqw is not None and lqw is not None:
            out["q_weight"] = sqw + lqw
        if skw is not None and lkw is not None:
            out["k_weight"] = skw + lkw
        if call.gain is not None:
            out["gain"] = call.c * np.sum(g * (tq @ _t(kb) + qb @ _t(tk)))
        return out


QK_NORM = QkNorm()
