"""Lp normalization: ``y = x / N`` with ``N = max(||x||_p, eps)`` along ``axis``.

With ``s = d||x||_p/dx = sign(x) (|x|/norm)^(p-1)`` and ``N' = s . t`` on the unclamped branch
(``norm >= eps``; on the clamped one ``N`` is the constant eps)::

    vjp:  dx = (g - s sum(g y)) / N
    jvp:  dy = (t - y sum(s t)) / N
    second order:  s' = (p-1)/norm ((|x|/norm)^(p-2) t - s N'),  y' = (t - y N')/N,
                   dx' = -(s' sum(g y) + s sum(g y')) / N - dx N'/N
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._geometry import normalize_axis
from ._numerics import Numerics, hyper_value
from ._precision import Num, Precision, reduce_sum

_METHOD = "lp_norm"


@dataclass(frozen=True)
class _Lp:
    """Everything the derivatives need, keep-dims along the axis."""

    axis: int
    p: Any
    norm: Num
    denom: Num
    clamped: Num
    y: Num
    s: Num


def _prepare(nx: Numerics, prec: Precision, x: Num, hyper: Mapping[str, Any]) -> _Lp:
    axis = normalize_axis("axis", hyper_value(hyper, "axis", _METHOD), x.ndim)
    p_value = float(hyper_value(hyper, "p", _METHOD))
    if not 1.0 <= p_value < float("inf"):
        raise ValueError(f"argument 'p': got {p_value!r}, expected a finite number >= 1")
    p = prec.scalar(p_value)
    one = prec.scalar(1.0)
    a = np.abs(x)
    if p_value == 2.0:
        norm = np.sqrt(reduce_sum(x * x, (axis,)))
    elif p_value == 1.0:
        norm = reduce_sum(a, (axis,))
    else:
        norm = reduce_sum(a**p, (axis,)) ** (one / p)
    denom, clamped = nx.lp_denominator(norm, prec.scalar(float(hyper_value(hyper, "eps", _METHOD))))
    s = np.sign(x) * (a / norm) ** (p - one)
    return _Lp(axis=axis, p=p, norm=norm, denom=denom, clamped=clamped, y=x / denom,
               s=np.where(clamped, x.dtype.type(0), s))


def _total(a: Num, axis: int) -> Num:
    return reduce_sum(a, (axis,))


@dataclass(frozen=True)
class LpNorm:
    """The lp_norm method (see the module docstring)."""

    primals: tuple[str, ...] = ("x",)
    state: tuple[str, ...] = ()

    def forward(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                hyper: Mapping[str, Any]) -> dict[str, Num]:
        x = inputs["x"]
        assert x is not None
        lp = _prepare(nx, prec, x, hyper)
        return {"y": lp.y, "norm": np.squeeze(lp.norm, axis=lp.axis)}

    def vjp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], g: Num) -> dict[str, Num]:
        x = inputs["x"]
        assert x is not None
        lp = _prepare(nx, prec, x, hyper)
        return {"x": (g - lp.s * _total(g * lp.y, lp.axis)) / lp.denom}

    def jvp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], t: Mapping[str, Num]) -> Num:
        x = inputs["x"]
        assert x is not None
        lp = _prepare(nx, prec, x, hyper)
        if "x" not in t:
            return np.zeros_like(x)
        tx = t["x"]
        dy: Num = (tx - lp.y * _total(lp.s * tx, lp.axis)) / lp.denom
        return dy

    def second_order(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                     hyper: Mapping[str, Any], g: Num, t: Mapping[str, Num]) -> dict[str, Num]:
        x = inputs["x"]
        assert x is not None
        lp = _prepare(nx, prec, x, hyper)
        if "x" not in t:
            return {"x": np.zeros_like(x)}
        tx = t["x"]
        one = x.dtype.type(1)
        a = np.abs(x)
        # (|x|/norm)^(p-2) is the derivative of s/sign(x) up to (p-1)/norm; for p < 2 it is
        # infinite at x = 0, where s has no derivative: take 0 there, as a kernel would.
        curve = (a / lp.norm) ** (lp.p - 2 * one)
        if lp.p < 2:
            curve = np.where(a == 0, x.dtype.type(0), curve)
        dnorm = _total(lp.s * tx, lp.axis)
        ds = (lp.p - one) / lp.norm * (curve * tx - lp.s * dnorm)
        dy = (tx - lp.y * dnorm) / lp.denom
        gy = _total(g * lp.y, lp.axis)
        dx = (g - lp.s * gy) / lp.denom
        out = -(ds * gy + lp.s * _total(g * dy, lp.axis)) / lp.denom - dx * dnorm / lp.denom
        return {"x": np.where(lp.clamped, x.dtype.type(0), out)}


LP_NORM = LpNorm()
