"""Standardization (z-score feature scaling): fit on one batch, apply to another.

Fit (training): two-pass mean and biased variance over ``axis``, the ddof variance
``var = var_b * n / (n - ddof)``, ``y = (x - mean) / s`` with ``s = sqrt(var + eps)``
(inside) or ``sqrt(var) + eps`` (outside), and ``s = 1`` where ``var == 0`` under
``zero_variance = "unit_scale"``. Apply (evaluation) reads the given fitted statistics.

Derivatives with ``q = 1 / (n - ddof)``, ``z = y`` and ``r = 1`` (inside) or
``s / sqrt(var)`` (outside; 0 where ``var == 0``, the limit of the rank-one term)::

    J v      = (v - mean(v) - r q z sum(z v)) / s
    (J g)'   = -(s'/s) J g - (r' q z sum(z g) + r q z' sum(z g) + r q z sum(z' g)) / s
    z' = J t,  s' = r q sum(z t),  r' = -(r - 1) q sum(z t) r^2 / s   (outside; 0 inside)

Apply mode: ``J = 1 / s``, second order 0. Constant features under unit_scale: ``J`` centers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._numerics import Numerics, hyper_value
from ._precision import Num, Precision, reduce_mean, reduce_sum

_METHOD = "standardize"


@dataclass(frozen=True)
class _Setup:
    axes: tuple[int, ...]
    n: int
    ddof: int
    eps: Any
    inside: bool
    unit_scale: bool
    training: bool


def _setup(prec: Precision, x: Num, hyper: Mapping[str, Any]) -> _Setup:
    raw = hyper_value(hyper, "axis", _METHOD)
    if isinstance(raw, str):   # the catalogs' scalar form "0,2,3"
        raw = [int(part) for part in raw.split(",")]
    elif isinstance(raw, (int, np.integer)) and not isinstance(raw, bool):
        raw = [raw]
    if not raw:
        raise ValueError(f"argument 'axis': got {raw!r}, expected a non-empty list of axes")
    axes = tuple(sorted({int(a) % x.ndim for a in raw}))
    if len(axes) != len(raw):
        raise ValueError(f"argument 'axis': got {raw!r}, expected distinct axes")
    ddof = hyper_value(hyper, "ddof", _METHOD)
    if ddof not in (0, 1) or isinstance(ddof, bool):
        raise ValueError(f"argument 'ddof': got {ddof!r}, expected 0 or 1")
    placement = hyper_value(hyper, "eps_placement", _METHOD)
    zero = hyper_value(hyper, "zero_variance", _METHOD)
    if placement not in ("inside_sqrt", "outside_sqrt"):
        raise ValueError(f"argument 'eps_placement': got {placement!r}, expected "
                         "'inside_sqrt' or 'outside_sqrt'")
    if zero not in ("ieee", "unit_scale"):
        raise ValueError(f"argument 'zero_variance': got {zero!r}, expected 'ieee' or "
                         "'unit_scale'")
    n = math.prod(x.shape[a] for a in axes)
    return _Setup(axes=axes, n=n, ddof=int(ddof),
                  eps=prec.scalar(float(hyper_value(hyper, "eps", _METHOD))),
                  inside=placement == "inside_sqrt", unit_scale=zero == "unit_scale",
                  training=bool(hyper_value(hyper, "training", _METHOD)))


@dataclass(frozen=True)
class _Stats:
    mean: Num   # keep-dims
    var: Num    # keep-dims, the ddof variance
    s: Num      # keep-dims denominator
    flat: Num   # keep-dims bool: unit_scale features with var == 0


def _fit(nx: Numerics, prec: Precision, x: Num, st: _Setup) -> tuple[Num, Num]:
    mean = nx.stat_mean(x, st.axes, prec)
    var_b = nx.variance(x, mean, st.axes, prec)
    # A constant feature's rounded mean can miss its value by an ulp, which would leave a
    # spread d = c - mean and y = +-1 (unit_scale) where the spec has var = 0; max == min is
    # exact, so a constant feature gets its value as mean and a zero variance.
    hi, lo = np.max(x, axis=st.axes, keepdims=True), np.min(x, axis=st.axes, keepdims=True)
    const = hi == lo
    mean = np.where(const, hi, mean)
    var_b = np.where(const, x.dtype.type(0), var_b)
    return mean, nx.scaler_variance(var_b, st.n, st.ddof)


def _stats(nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None], st: _Setup
           ) -> _Stats:
    x = inputs["x"]
    assert x is not None
    if st.training:
        mean, var = _fit(nx, prec, x, st)
    else:
        fm, fv = inputs.get("mean"), inputs.get("var")
        if fm is None or fv is None:
            raise ValueError("argument 'inputs': got no mean/var, expected both "
                             "to apply (training=False)")
        keep = tuple(1 if i in st.axes else x.shape[i] for i in range(x.ndim))
        mean, var = nx.scaler_apply_statistics(
            (fm.reshape(keep), fv.reshape(keep)), lambda: _fit(nx, prec, x, st))
    s = nx.scaler_denominator(var, st.eps, st.inside)
    flat = (var == 0) if st.unit_scale else np.zeros(var.shape, dtype=bool)
    s = np.where(flat, var.dtype.type(1), s)
    return _Stats(mean=mean, var=var, s=s, flat=flat)


def _ratio(var: Num, s: Num, st: _Setup) -> Num:
    """``r`` of the module docstring: 1 inside, ``s / sqrt(var)`` outside (0 at var == 0)."""
    if st.inside:
        return np.ones_like(var)
    root = np.sqrt(var)
    out: Num = np.where(root > 0, s / np.where(root > 0, root, 1), var.dtype.type(0))
    return out


def _jacobian(x: Num, v: Num, stt: _Stats, st: _Setup) -> tuple[Num, Num]:
    """``(J v, z)`` in fit mode."""
    q = x.dtype.type(1.0 / (st.n - st.ddof))
    z = (x - stt.mean) / stt.s
    vc = v - reduce_mean(v, st.axes)
    r = _ratio(stt.var, stt.s, st)
    jv = (vc - r * q * z * reduce_sum(z * v, st.axes)) / stt.s
    return np.where(stt.flat, vc, jv), z


@dataclass(frozen=True)
class Standardize:
    """The standardize method (see the module docstring)."""

    primals: tuple[str, ...] = ("x",)
    state: tuple[str, ...] = ("mean", "var")

    def forward(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                hyper: Mapping[str, Any]) -> dict[str, Num]:
        x = inputs["x"]
        assert x is not None
        st = _setup(prec, x, hyper)
        stt = _stats(nx, prec, inputs, st)
        y = np.where(stt.flat, x - stt.mean, (x - stt.mean) / stt.s)
        if not st.training:
            return {"y": y}
        squeeze = st.axes
        return {"y": y, "mean": np.squeeze(stt.mean, squeeze),
                "var": np.squeeze(stt.var, squeeze),
                "rstd": np.squeeze(x.dtype.type(1) / stt.s, squeeze)}

    def vjp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], g: Num) -> dict[str, Num]:
        return {"x": self.jvp(nx, prec, inputs, hyper, {"x": g})}

    def jvp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], t: Mapping[str, Num]) -> Num:
        x = inputs["x"]
        assert x is not None
        st = _setup(prec, x, hyper)
        stt = _stats(nx, prec, inputs, st)
        tx = t.get("x", np.zeros_like(x))
        if not st.training:
            out: Num = tx / stt.s
            return out
        return _jacobian(x, tx, stt, st)[0]

    def second_order(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                     hyper: Mapping[str, Any], g: Num, t: Mapping[str, Num]) -> dict[str, Num]:
        x = inputs["x"]
        assert x is not None
        st = _setup(prec, x, hyper)
        stt = _stats(nx, prec, inputs, st)
        tx = t.get("x", np.zeros_like(x))
        if not st.training:
            return {"x": np.zeros_like(x)}
        one = x.dtype.type(1)
        q = x.dtype.type(1.0 / (st.n - st.ddof))
        jg, z = _jacobian(x, g, stt, st)
        z_dot, _ = _jacobian(x, tx, stt, st)
        r = _ratio(stt.var, stt.s, st)
        zt = reduce_sum(z * tx, st.axes)
        zg = reduce_sum(z * g, st.axes)
        s_dot = r * q * zt
        r_dot = np.zeros_like(r) if st.inside else -(r - one) * q * zt * r * r / stt.s
        out = -(s_dot / stt.s) * jg - (r_dot * q * z * zg + r * q * z_dot * zg
                                       + r * q * z * reduce_sum(z_dot * g, st.axes)) / stt.s
        return {"x": np.where(stt.flat, x.dtype.type(0), out)}


STANDARDIZE = Standardize()
