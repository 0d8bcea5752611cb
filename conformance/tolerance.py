"""The tolerance model: how far an implementation in a finite dtype may be from the reference.

A quantity passes when every element satisfies (see ``tolerances.toml`` for the table and the
docs page "Tolerance model" for the derivation)::

    |got - expected|  <=  u_d * R * (c_out + c_acc * (u_acc / u_d) * kappa * sqrt(m))

The *measured error* is ``max |got - expected| / (u_d * R)`` in units of the dtype's unit
roundoff; the *budget* is the bracket; *headroom* is error / budget (below 1 passes).
NaN and infinities must appear exactly where the reference has them.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Array = npt.NDArray[np.float64]

UNIT_ROUNDOFF: dict[str, float] = {
    "float64": 2.0**-53,
    "float32": 2.0**-24,
    "float16": 2.0**-11,
    "bfloat16": 2.0**-8,
}
"""Half the distance from 1 to the next representable number, per dtype."""

SMALLEST_NORMAL: dict[str, float] = {
    "float64": 2.0**-1022,
    "float32": 2.0**-126,
    "float16": 2.0**-14,
    "bfloat16": 2.0**-126,
}
"""Below this a dtype holds values with absolute, not relative, precision (subnormals)."""

LARGEST: dict[str, float] = {
    "float64": float(np.finfo(np.float64).max),
    "float32": float(np.finfo(np.float32).max),
    "float16": 65504.0,
    "bfloat16": 3.3895313892515355e38,
}
"""The largest finite value per dtype: a larger exact result correctly rounds to inf."""

ACCUMULATION: dict[str, str] = {
    "float64": "float64",
    "float32": "float32",
    "float16": "float32",
    "bfloat16": "float32",
}
"""The narrowest accumulation type the spec accepts for reductions in each dtype."""

CENTERED = frozenset({"batch_norm", "layer_norm", "instance_norm", "group_norm",
                      "adaptive_instance_norm", "conditional_instance_norm",
                      "ghost_batch_norm", "mixed_eval_batch_norm", "batch_instance_norm",
                      "batch_renorm", "sync_batch_norm", "sequence_batch_norm", "standardize",
                      "adaptive_layer_norm",
                      "weight_standardization"})
"""Methods that subtract a mean: their error is amplified by kappa = 1 + |mean| * rstd."""

MAX_FIRST_INDICES = 5


class CaseLike(Protocol):
    """What the tolerance model reads from a golden-vector case (a ``VectorCase``)."""

    @property
    def method(self) -> str: ...

    @property
    def hyper(self) -> Mapping[str, Any]: ...

    @property
    def inputs(self) -> Mapping[str, Array]: ...

    @property
    def cotangent(self) -> Array: ...

    @property
    def tangent(self) -> Mapping[str, Array]: ...

    @property
    def by_check(self) -> Mapping[str, Mapping[str, Array]]: ...


@dataclass(frozen=True)
class Budget:
    """A table entry: the two constants of the bound and the reason they are what they are."""

    c_out: float
    c_acc: float
    reason: str


@dataclass(frozen=True)
class Comparison:
    """The outcome of comparing one quantity, with everything a report needs."""

    passed: bool
    error: float
    budget: float
    headroom: float
    mismatched: int
    total: int
    first_mismatches: tuple[tuple[int, ...], ...]
    max_abs: float
    max_rel: float
    message: str
    nonfinite_mismatched: int = 0
    """Elements whose NaN/Inf pattern differs from the reference (in either direction)."""


@cache
def _document() -> dict[str, Any]:
    text = resources.files("normspec.conformance").joinpath("tolerances.toml").read_text()
    return tomllib.loads(text)


@cache
def _table() -> tuple[dict[str, Any], ...]:
    entries = _document()["budget"]
    for entry in entries:
        if not str(entry.get("reason", "")).strip():
            raise ValueError(f"tolerances.toml: entry {entry} has no reason")
    return tuple(entries)


@cache
def trajectory_rule() -> tuple[str, str]:
    """``(carried_budgets, reason)`` of the table's ``[trajectory]`` entry."""
    entry = _document().get("trajectory", {})
    rule, reason = entry.get("carried_budgets"), str(entry.get("reason", "")).strip()
    if rule != "contraction" or not reason:
        raise ValueError("tolerances.toml: [trajectory] needs carried_budgets = "
                         "\"contraction\" and a reason")
    return rule, reason


def carried_budgets(case: CaseLike) -> float:
    """How many calls' budgets a trajectory call may be off by (1 outside trajectories):
    the case view's ``carried_budgets`` (see ``normspec.conformance.vectors.manifest``)."""
    carried = float(getattr(case, "carried_budgets", 1.0))
    if carried > 1.0:
        trajectory_rule()
    return max(carried, 1.0)


def budget_entry(method: str, dtype: str, tol_class: str) -> Budget:
    """The most specific table entry for (method, dtype, class)."""
    best: tuple[int, dict[str, Any]] | None = None
    for entry in _table():
        if entry["class"] != tol_class:
            continue
        methods, dtypes = entry["methods"], entry["dtypes"]
        if method not in methods and "*" not in methods:
            continue
        if dtype not in dtypes and "*" not in dtypes:
            continue
        rank = (method in methods) * 2 + (dtype in dtypes)
        if best is None or rank > best[0]:
            best = (rank, entry)
    if best is None:
        raise ValueError(
            f"tolerance class {tol_class!r}: no budget for method {method!r} and dtype {dtype!r} "
            "in tolerances.toml"
        )
    entry = best[1]
    return Budget(c_out=float(entry["c_out"]), c_acc=float(entry["c_acc"]), reason=entry["reason"])


def _finite_max(a: Array | None) -> float:
    if a is None:
        return 0.0
    finite = np.abs(a[np.isfinite(a)])
    return float(np.max(finite)) if finite.size else 0.0


def _forward(case: CaseLike) -> Mapping[str, Array]:
    return case.by_check.get("forward", {})


def kappa(case: CaseLike) -> float:
    """Conditioning of the reduction: how much a relative error in the mean is amplified.

    batch_instance_norm normalizes twice: the worse of its batch and its instance part.
    """
    fwd = _forward(case)
    if "style_std" in fwd:
        # adaptive_instance_norm standardizes its style too: the worse of its two inputs
        with np.errstate(all="ignore"):
            style = 1.0 + _finite_max(np.abs(fwd["style_mean"]) / fwd["style_std"])
        return max(_batch_kappa(case), style)
    if "instance_rstd" not in fwd:
        return _batch_kappa(case)
    with np.errstate(all="ignore"):
        inner = 1.0 + _finite_max(np.abs(fwd["instance_mean"]) * fwd["instance_rstd"])
    return max(_batch_kappa(case), inner)


def _batch_kappa(case: CaseLike) -> float:
    if case.method not in CENTERED:
        return 1.0
    fwd = _forward(case)
    if "mean" in fwd and "rstd" in fwd:
        with np.errstate(all="ignore"):
            return 1.0 + _finite_max(np.abs(fwd["mean"]) * fwd["rstd"])
    # batch_norm in evaluation: the running statistics play the role of the batch ones
    rm, rv = case.inputs.get("running_mean"), case.inputs.get("running_var")
    if rm is not None and rv is not None:
        with np.errstate(all="ignore"):
            rstd = 1.0 / np.sqrt(rv + float(case.hyper["eps"]))
        return 1.0 + _finite_max(rm) * _finite_max(rstd)
    return 1.0


def reduction_size(case: CaseLike) -> int:
    """The number of values that form one statistic (n in the spec's equations)."""
    if "size" in case.hyper:
        return int(case.hyper["size"])
    x = case.inputs["x"]
    if case.method == "qk_norm":  # Dh terms in each head's norm and in each logit's dot
        return int(x.shape[-1])
    for key, stat in _forward(case).items():
        if key not in ("y", "num_batches_tracked") and 0 < stat.size < x.size:
            return max(x.size // stat.size, 1)
    if case.method == "gradient_normalization":  # no statistic: the gradient's norm spans
        from normspec.reference import gradient_normalization as _gn  # the normalized axes

        return _gn.layout(x.shape, axis=case.hyper["axis"]).n
    if case.method in ("batch_norm", "sync_batch_norm"):  # evaluation: no batch statistics
        channels = case.inputs["running_mean"].size
        return max(x.size // max(channels, 1), 1)
    return 1


def terms(case: CaseLike, quantity: str, tol_class: str) -> int:
    """m: how many terms are accumulated into one element of ``quantity``."""
    if quantity == "style":
        # adaptive_instance_norm: the style's gradient is G z_s / D_s + S / m, G and S sums
        # over the n content values of each (sample, channel)
        return reduction_size(case)
    if tol_class == "param_grad":
        x, p = case.inputs["x"], case.inputs.get(quantity)
        return max(x.size // p.size, 1) if p is not None and p.size else 1
    return reduction_size(case)


def _inverse_scale(case: CaseLike) -> float:
    """max rstd (or rrms): the factor the moment methods' derivatives carry (for
    batch_instance_norm, of either part: its instance sets may spread far less than a batch)."""
    return max(_own_inverse_scale(case), _finite_max(_forward(case).get("instance_rstd")))


def _own_inverse_scale(case: CaseLike) -> float:
    fwd = _forward(case)
    for key in ("rstd", "rrms", "rscale"):
        if key in fwd:
            return _finite_max(fwd[key])
    rv = case.inputs.get("running_var")
    if rv is not None:
        with np.errstate(all="ignore"):
            return _finite_max(1.0 / np.sqrt(rv + float(case.hyper["eps"])))
    return 0.0


def _lp_term_magnitude(case: CaseLike, check: str) -> float:
    """lp_norm's derivatives carry 1/max(norm, eps) per order; their terms cancel when x is
    nearly parallel to the output direction (a large common offset)."""
    norm = _forward(case).get("norm")
    if norm is None:
        return 0.0
    with np.errstate(all="ignore"):
        inv = _finite_max(1.0 / np.maximum(norm, float(case.hyper["eps"])))
    g, tx = _finite_max(case.cotangent), _finite_max(case.tangent.get("x"))
    p = float(case.hyper.get("p", 2.0))
    if check == "vjp":
        return inv * g
    if check == "jvp":
        return inv * tx
    if check == "second_order":
        return max(p - 1.0, 1.0) * inv * inv * g * tx
    return 0.0


def _l2_scale_term_magnitude(case: CaseLike, check: str, quantity: str) -> float:
    """fix_norm, scale_norm and unit_norm are lp_norm (p = 2) times a scalar w (1 for
    unit_norm): the x parts carry lp_norm's terms times |w| (plus t_w |u| or t_w |g|/norm
    from the scalar's tangent); w's gradient sums terms g u with |u| <= 1, and its second
    order terms g u' with |u'| <= |t_x| / max(norm, eps)."""
    norm = _forward(case).get("norm")
    if norm is None:
        return 0.0
    with np.errstate(all="ignore"):
        inv = _finite_max(1.0 / np.maximum(norm, float(case.hyper["eps"])))
    w = _finite_max(case.inputs.get("weight")) if "weight" in case.inputs else 1.0
    tw = _finite_max(case.tangent.get("weight"))
    g, tx = _finite_max(case.cotangent), _finite_max(case.tangent.get("x"))
    if quantity == "weight":
        return g if check == "vjp" else g * tx * inv
    if check == "vjp":
        return w * inv * g
    if check == "jvp":
        return w * inv * tx + tw
    if check == "second_order":
        return w * inv * inv * g * tx + tw * inv * g
    return 0.0


def _weight_norm_term_magnitude(case: CaseLike, check: str, quantity: str) -> float:
    """weight_norm's x parts carry |g| r per order (r = 1/sqrt(norm^2 + eps)) and cancel where
    a slice is nearly one element (w_bar - u <w_bar, u> with |u| ~ 1); g's gradient sums terms
    w_bar u with |u| <= 1, and its second order terms w_bar u' with |u'| <= r |t_x|."""
    norm = _forward(case).get("norm")
    if norm is None:
        return 0.0
    with np.errstate(all="ignore"):
        r = _finite_max(1.0 / np.sqrt(norm * norm + float(case.hyper["eps"])))
    w, tw = _finite_max(case.inputs.get("g")), _finite_max(case.tangent.get("g"))
    g, tx = _finite_max(case.cotangent), _finite_max(case.tangent.get("x"))
    if quantity == "g":
        return g if check == "vjp" else g * tx * r
    if check == "vjp":
        return w * r * g
    if check == "jvp":
        return w * r * tx + tw
    if check == "second_order":
        return w * r * r * g * tx + tw * r * g
    return 0.0


def _finite_norm(a: Array | None) -> float:
    """The 2-norm of the finite values of ``a`` (0 for a missing array)."""
    return 0.0 if a is None else float(np.linalg.norm(np.where(np.isfinite(a), a, 0.0)))


def _spectral_term_magnitude(case: CaseLike, check: str) -> float:
    """spectral_norm's derivatives are sums of terms g / sigma, <g, W> / sigma^2 P, ... that
    cancel (P = u v^T, |P| <= |u| |v|); in exact mode P moves with W and its error carries the
    gap factor c = sigma_1^2 / (sigma_1^2 - sigma_2^2), once per order (the singular pair's
    perturbation divides by sigma_1^2 - sigma_j^2). Norms are Frobenius norms."""
    fwd = _forward(case)
    x = case.inputs["x"]
    sigma = float(fwd["sigma"]) if "sigma" in fwd else 0.0
    if not (math.isfinite(sigma) and sigma > 0.0 and np.isfinite(x).all()):
        return 0.0
    dim = int(case.hyper.get("dim", 0)) % x.ndim
    m = np.moveaxis(x, dim, 0).reshape(x.shape[dim], -1)
    cond = 1.0
    if case.hyper.get("mode") == "exact":
        s = np.linalg.svd(m / np.max(np.abs(m)), compute_uv=False)
        second = float(s[1] / s[0]) if s.size > 1 else 0.0
        cond = 1.0 / (1.0 - second * second) if second < 1.0 else math.inf
        nu = nv = 1.0
    else:
        u, v = fwd.get("u", case.inputs.get("u")), fwd.get("v", case.inputs.get("v"))
        nu = float(np.linalg.norm(u)) if u is not None else 1.0
        nv = float(np.linalg.norm(v)) if v is not None else 1.0
    g, t = case.cotangent, case.tangent.get("x")
    gn, tn, wn = _finite_norm(g), _finite_norm(t), _finite_norm(x)
    p = nu * nv
    if check == "vjp":
        return cond * (_finite_max(g) + gn * wn * p / sigma) / sigma
    if check == "jvp":
        return cond * (_finite_max(t) + _finite_max(x) * tn * p / sigma) / sigma
    if check == "second_order":
        return cond * cond * gn * tn * p * (2.0 + wn * p / sigma) / (sigma * sigma)
    return 0.0


def _lrn_term_magnitude(case: CaseLike, check: str) -> float:
    """local_response_norm's first derivatives are g p - (2 alpha/n) beta x A^T(g x q): with
    p = scale^(-beta) and (alpha/n) x^2 <= scale, each term is at most |g| p (1 + 2 |beta|)."""
    scale_stat = _forward(case).get("scale")
    if scale_stat is None or check not in ("vjp", "jvp"):
        return 0.0
    with np.errstate(all="ignore"):
        power = _finite_max(np.power(scale_stat, -float(case.hyper["beta"])))
    direction = case.cotangent if check == "vjp" else case.tangent.get("x")
    return _finite_max(direction) * power * (1.0 + 2.0 * abs(float(case.hyper["beta"])))


def _channel_norms(a: Array | None, axis: int) -> Array:
    """The 2-norm of each channel's values (non-finite ones left out); 0 for a missing array."""
    if a is None:
        return np.zeros(1)
    rows = np.moveaxis(np.where(np.isfinite(a), a, 0.0), axis, 0).reshape(a.shape[axis], -1)
    out: Array = np.sqrt(np.sum(rows * rows, axis=1))
    return out


def _gate_term_magnitude(case: CaseLike, check: str) -> float:
    """batch_instance_norm's gate: ``drho = clip'(rho) w (S_bn - S_in)`` and
    ``dweight = r S_bn + (1 - r) S_in`` with ``S = sum(g z)`` per channel, combinations of two
    sums that cancel where the batch and instance statistics agree (or oppose). An
    implementation that forms the two sums apart (each branch's weight gradient) errs relative
    to their terms, ``sum |g z| <= ||g_c|| sqrt(n)`` (``||z_c||^2 <= n`` in either branch);
    along a tangent, ``sum |g z'| <= ||g_c|| rstd ||t_x,c||`` (``||J|| <= rstd``).
    """
    x = case.inputs["x"]
    c = int(case.hyper.get("channel_axis", 1)) % x.ndim
    g, tx = _channel_norms(case.cotangent, c), _channel_norms(case.tangent.get("x"), c)
    sums = float(np.max(g, initial=0.0)) * math.sqrt(x.size // max(x.shape[c], 1))
    w = _finite_max(case.inputs.get("weight")) if "weight" in case.inputs else 1.0
    if check == "vjp":
        return w * sums
    if check == "second_order":
        r = _inverse_scale(case)
        tw = _finite_max(case.tangent.get("weight"))
        return tw * sums + w * r * float(np.max(g * tx, initial=0.0))
    return 0.0


def _qk_term_magnitude(case: CaseLike, check: str, quantity: str) -> float:
    """qk_norm's derivatives: the norms' Jacobians carry ``1/N`` (l2: ``1/max(norm, eps)``;
    rms: ``rrms |w|``, read off as ``|q_hat / q|``) times the cotangent reaching the normalized
    vectors, ``c g G khat`` (queries) and ``c g G^T qhat`` (keys), and their two terms cancel
    where a vector is nearly parallel to that cotangent (a common offset; ``Dh = 1``, where
    ``qhat = w sign(q)``). The gain's derivatives are sums over the ``B H Tq Tk`` logits, which
    cancel too: their terms are ``|G y| / |g|`` (``y = c g S``) and ``|c| |G| |S'|``.
    """
    fwd = _forward(case)
    qh, kh = fwd.get("q_hat"), fwd.get("k_hat")
    if qh is None or kh is None or check == "forward":
        return 0.0
    bthd = case.hyper.get("layout") == "bthd"

    def bhtd(a: Array) -> Array:
        return np.swapaxes(a, 1, 2) if bthd else a

    def clean(a: Array | None) -> Array:
        return np.zeros(1) if a is None else np.where(np.isfinite(a), np.abs(a), 0.0)

    def inverse(name: str, hat: Array) -> float:
        v = case.inputs[name]
        with np.errstate(all="ignore"):
            ratio = np.where((v != 0) & np.isfinite(v), np.abs(hat) / np.abs(v), 0.0)
        return _finite_max(ratio)

    c = abs(float(case.hyper["logit_scale"]))
    gain = case.inputs.get("gain")
    g = abs(float(gain)) if gain is not None and np.isfinite(gain).all() else 1.0
    tg = _finite_max(case.tangent.get("gain"))
    big_g = clean(case.cotangent)
    qb, kb = clean(bhtd(qh)), clean(bhtd(kh))
    inv_q, inv_k = inverse("x", qh), inverse("k", kh)
    tq, tk = _finite_max(case.tangent.get("x")), _finite_max(case.tangent.get("k"))
    with np.errstate(all="ignore"):
        to_q = c * g * _finite_max(big_g @ kb)                 # |c g G khat|
        to_k = c * g * _finite_max(np.swapaxes(big_g, -1, -2) @ qb)
        dq, dk = inv_q * tq, inv_k * tk                        # |qhat'|, |khat'| per unit
        d = qb.shape[-1]
        if check == "jvp":
            return float(c * (g * d * (dq * _finite_max(kb) + dk * _finite_max(qb))
                              + tg * _finite_max(qb) * _finite_max(kb) * d))
        if quantity == "gain":
            y = clean(fwd.get("y"))
            if check == "vjp":
                return float(np.sum(big_g * y)) / g if g else 0.0
            return float(c * float(np.sum(big_g)) * d * (dq * _finite_max(kb)
                                                          + dk * _finite_max(qb)))
        spread = dq + dk + (tg / g if g else 0.0)
        if quantity == "x":
            return to_q * inv_q * (1.0 if check == "vjp" else spread)
        if quantity == "k":
            return to_k * inv_k * (1.0 if check == "vjp" else spread)
        if check == "second_order" and quantity in ("q_weight", "k_weight"):
            # sum over the vectors of |c g G khat| |z'|, z' = rrms (t - z mean(z t)) cancelling
            w = clean(case.inputs.get(quantity))
            w_min = float(np.min(w)) if w.size and np.min(w) > 0 else 1.0
            to, dv = (to_q, dq) if quantity == "q_weight" else (to_k, dk)
            return math.sqrt(max(case.inputs["x"].size // max(w.size, 1), 1)) * to * dv / w_min
    return 0.0


def _term_magnitude(case: CaseLike, check: str, quantity: str, tol_class: str) -> float:
    """The size of the terms whose sum forms the quantity, for the moment-based methods.

    The VJP rstd (g - mean(g) - z mean(z g)) can be far smaller than its terms (a row of one
    element gives rstd g (1 - z^2) with z^2 close to 1); rounding errors are proportional to
    the terms, so the scale is the larger of the result and the terms.
    """
    if quantity == "rho" or (quantity == "weight" and check == "vjp" and "rho" in case.inputs):
        return _gate_term_magnitude(case, check)
    r = _inverse_scale(case)
    if r == 0.0:
        return 0.0
    w = _finite_max(case.inputs.get("weight")) if "weight" in case.inputs else 1.0
    g = _finite_max(case.cotangent)
    tx, tw = _finite_max(case.tangent.get("x")), _finite_max(case.tangent.get("weight"))
    if check == "vjp" and quantity == "x":
        return r * g * w
    if check == "jvp":
        return r * tx * w
    if check == "second_order" and quantity == "x":
        return r * (r * g * tx * w + g * tw)
    if check == "second_order" and quantity == "style":
        # adaptive_instance_norm: G' z_s / D_s with G' = sum of n terms g J t_x of size
        # rstd g t_x, which cancel in a content set of close values (n = 2)
        return math.sqrt(reduction_size(case)) * r * g * tx
    if check == "second_order" and quantity == "weight":
        return math.sqrt(terms(case, "weight", "param_grad")) * r * g * tx
    return 0.0


def scale(case: CaseLike, check: str, quantity: str, expected: Array,
          tol_class: str = "output") -> float:
    """R: the normwise magnitude errors are measured against."""
    r = _finite_max(expected)
    fwd = _forward(case)
    eps = float(case.hyper.get("eps", 0.0))
    if quantity == "mean" and "var" in fwd:
        # a mean near zero is still computed from values of size |mean| + std
        r += math.sqrt(_finite_max(fwd["var"]))
    elif quantity in ("var", "mean_square", "mean_power"):
        # only var + eps enters the output; a variance far below eps is noise next to it
        r += eps
    elif quantity == "running_mean" and "var" in fwd:
        weight = case.hyper.get("batch_stat_weight")
        f = float(weight) if isinstance(weight, (int, float)) else 1.0
        r += f * math.sqrt(_finite_max(fwd["var"]))
    if tol_class == "state":
        # along a trajectory, earlier updates rounded relative to the state they saw
        r = max(r, float(getattr(case, "state_scale", {}).get(quantity, 0.0)))
    if case.method in CENTERED or case.method == "rms_norm":
        r = max(r, _term_magnitude(case, check, quantity, tol_class))
    elif case.method == "power_norm":
        # rms_norm's terms with rscale for rrms; the statistic's derivative u = phi'/(p D)
        # and its own derivative carry factors p and p - 1, which weigh the terms for p > 1
        p = float(case.hyper.get("p", 2.0))
        r = max(r, max(p, 1.0) * _term_magnitude(case, check, quantity, tol_class))
    elif case.method == "lp_norm":
        r = max(r, _lp_term_magnitude(case, check))
    elif case.method == "qk_norm":
        r = max(r, _qk_term_magnitude(case, check, quantity))
    elif case.method == "local_response_norm":
        r = max(r, _lrn_term_magnitude(case, check))
    elif case.method in ("fix_norm", "scale_norm", "unit_norm"):
        r = max(r, _l2_scale_term_magnitude(case, check, quantity))
    elif case.method == "weight_norm":
        r = max(r, _weight_norm_term_magnitude(case, check, quantity))
    elif case.method == "spectral_norm":
        r = max(r, _spectral_term_magnitude(case, check))
    elif case.method == "gradnorm" and quantity.endswith("grad_norm_loss"):
        # L_grad = sum |G_i - c_i| cancels where the weighted norms near their targets: each
        # difference rounds relative to its terms, so R is their sum
        r = max(r, float(np.sum(np.abs(fwd.get("weighted_norms", 0.0)))
                         + np.sum(np.abs(fwd.get("targets", 0.0)))))
    if r == 0.0:
        # an exactly-zero expected tensor (e.g. the second order of a bias): measure against the
        # largest quantity of the same check, so rounding noise is tolerated but a wrong value
        # is not
        r = max((_finite_max(v) for v in case.by_check.get(check, {}).values()), default=0.0)
    return r


def _first_indices(mask: npt.NDArray[np.bool_]) -> tuple[tuple[int, ...], ...]:
    idx = np.argwhere(mask)[:MAX_FIRST_INDICES]
    return tuple(tuple(int(i) for i in row) for row in idx)


def compare_arrays(got: Array, expected: Array, *, unit: float, r: float, budget: float,
                   largest: float = math.inf) -> Comparison:
    """Compare elementwise: ``|got - expected| <= unit * r * budget``; NaN/Inf must match.

    Where ``|expected|`` exceeds ``largest`` (the dtype's largest finite value) the correctly
    rounded result is an infinity of the same sign, which is accepted as well.

    A NaN or infinity where the reference has a finite value, and a finite value (or another
    non-finite one) where the reference has NaN or an infinity, are the same kind of mismatch
    in both directions: each counts as a mismatched element and in ``nonfinite_mismatched``.
    The error, the maximum differences and the headroom are measured over the elements where
    both arrays are finite, so they stay numbers a report can print.
    """
    if got.shape != expected.shape:
        raise ValueError(f"shape mismatch: got {got.shape}, expected {expected.shape}")
    total = int(expected.size)
    exp_special = ~np.isfinite(expected)
    got_special = ~np.isfinite(got)
    with np.errstate(invalid="ignore"):
        same_special = exp_special & ((np.isnan(expected) & np.isnan(got)) | (got == expected))
        rounds_to_inf = ~exp_special & (np.abs(expected) > largest) & np.isinf(got) & (
            np.sign(got) == np.sign(expected))
    pattern_bad = (exp_special & ~same_special) | (~exp_special & got_special & ~rounds_to_inf)
    both_finite = ~exp_special & ~got_special
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(both_finite, np.abs(got - expected), 0.0)
    limit = unit * r * budget
    bad = pattern_bad | (diff > limit)
    worst = float(np.max(diff)) if diff.size else 0.0
    if worst == 0.0:
        err = 0.0
    elif unit * r > 0.0:
        err = worst / (unit * r)
    else:  # nothing to scale by (every expected value is zero): any difference is infinite
        err = math.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(both_finite & (expected != 0), diff / np.abs(expected), 0.0)
    max_abs = worst
    max_rel = float(np.max(rel)) if rel.size else 0.0
    mismatched = int(np.count_nonzero(bad))
    nonfinite = int(np.count_nonzero(pattern_bad))
    passed = mismatched == 0
    headroom = err / budget if budget > 0 else math.inf
    message = "" if passed else _message(mismatched, total, bad, max_abs, max_rel, err, budget,
                                         unit, r, pattern_bad, got, expected)
    return Comparison(passed=passed, error=err, budget=budget, headroom=headroom,
                      mismatched=mismatched, total=total, first_mismatches=_first_indices(bad),
                      max_abs=max_abs, max_rel=max_rel, message=message,
                      nonfinite_mismatched=nonfinite)


def _message(mismatched: int, total: int, bad: npt.NDArray[np.bool_], max_abs: float,
             max_rel: float, err: float, budget: float, unit: float, r: float,
             pattern_bad: npt.NDArray[np.bool_], got: Array, expected: Array) -> str:
    share = 100.0 * mismatched / max(total, 1)
    lines = [
        f"Mismatched elements: {mismatched} / {total} ({share:.3g}%)",
        f"First mismatched indices: {list(_first_indices(bad))}",
    ]
    nonfinite = int(np.count_nonzero(pattern_bad))
    if nonfinite:
        examples = "; ".join(
            f"at {idx} the reference has {float(expected[idx])!r}, got {float(got[idx])!r}"
            for idx in _first_indices(pattern_bad)[:3])
        lines.append(f"NaN/Inf pattern differs from the reference at {nonfinite} of them: "
                     f"{examples}")
    where = " (over the elements where both are finite)" if nonfinite else ""
    lines += [
        f"Max absolute difference{where}: {max_abs:.6g}",
        f"Max relative difference{where}: {max_rel:.6g}",
        f"Measured error{where}: {err:.4g} u (unit roundoff {unit:.3g}, scale R = {r:.6g})",
        f"Budget: {budget:.4g} u (allowed absolute difference {unit * r * budget:.6g})",
    ]
    return "\n".join(lines)


def compare_quantity(method: str, dtype: str, quantity: str, tol_class: str, got: Array,
                     expected: Array, case: CaseLike, *, check: str = "forward") -> Comparison:
    """Compare one quantity of one check of a case against its budget."""
    if dtype not in UNIT_ROUNDOFF:
        raise ValueError(f"argument 'dtype': got {dtype!r}, expected one of {list(UNIT_ROUNDOFF)}")
    entry = budget_entry(method, dtype, tol_class)
    u = UNIT_ROUNDOFF[dtype]
    u_acc = UNIT_ROUNDOFF[ACCUMULATION[dtype]]
    growth = kappa(case) * math.sqrt(terms(case, quantity, tol_class))
    budget = (entry.c_out + entry.c_acc * (u_acc / u) * growth) * carried_budgets(case)
    # below the dtype's smallest normal number precision is absolute: u * smallest normal is
    # half the subnormal spacing, the best any rounding to the dtype can do
    r = max(scale(case, check, quantity, expected, tol_class), SMALLEST_NORMAL[dtype])
    return compare_arrays(np.asarray(got, dtype=np.float64), np.asarray(expected, np.float64),
                          unit=u, r=r, budget=budget, largest=LARGEST[dtype])
