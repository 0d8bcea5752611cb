"""Min-max scaling: fit the per-feature extremes on one batch, apply them to another.

Fit (training): ``lo = min x``, ``hi = max x`` over ``axis``; apply (evaluation) reads the
given ``data_min`` and ``data_max``. Then ``r = hi - lo`` (1 where 0), ``u = (x - lo) / r``,
``y = a + (b - a) u``, clipped to ``[a, b]`` under ``clip``. Derivatives (module docstring of
the spec page): apply ``J = (b - a) / r`` (0 where clip cuts); fit
``J t = s (t - (1 - u) w_min.t - u w_max.t)`` with the tie weights ``w`` (1/k at each of the k
tied extremes). The steps where implementations differ are the methods of
:class:`MinMaxSteps`; a mutant replaces one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._numerics import Numerics, hyper_value
from ._precision import Num, Precision, reduce_sum

_METHOD = "min_max_scale"


class MinMaxSteps:
    """The numerical steps of min_max_scale that implementations get wrong."""

    def minmax_divisor(self, span: Num) -> Num:
        """``hi - lo``, with 1 for a constant feature (scikit-learn's zero-range rule)."""
        out: Num = np.where(span == 0, span.dtype.type(1), span)
        return out

    def minmax_clip(self, y: Num, a: Any, b: Any) -> tuple[Num, Num]:
        """``clip(y, a, b)`` (NaN stays) and its slope: 1 on the closed interval and at NaN
        (NaN is neither below a nor above b, so the unclipped branch applies), 0 outside."""
        cut = (y < a) | (y > b)
        slope: Num = np.where(cut, y.dtype.type(0), y.dtype.type(1))
        out: Num = np.where(np.isnan(y), y, np.clip(y, a, b))
        return out, slope

    def minmax_ties(self, x: Num, extreme: Num, axes: tuple[int, ...]) -> Num:
        """The subgradient weights of min/max: split equally among tied positions."""
        hit = (x == extreme).astype(x.dtype)
        count = reduce_sum(hit, axes)
        out: Num = hit / np.maximum(count, x.dtype.type(1))
        return out


_DEFAULT = MinMaxSteps()


def _steps(nx: Numerics) -> MinMaxSteps:
    return nx if isinstance(nx, MinMaxSteps) else _DEFAULT


@dataclass(frozen=True)
class _Setup:
    axes: tuple[int, ...]
    a: Any
    b: Any
    clip: bool
    training: bool


def _setup(prec: Precision, x: Num, hyper: Mapping[str, Any]) -> _Setup:
    raw = hyper_value(hyper, "axis", _METHOD)
    if isinstance(raw, str):   # the catalogs' scalar form "0,2,3"
        raw = [int(part) for part in raw.split(",")]
    elif isinstance(raw, (int, np.integer)) and not isinstance(raw, bool):
        raw = [raw]
    axes = tuple(sorted({int(q) % x.ndim for q in raw}))
    if not axes or len(axes) != len(raw):
        raise ValueError(f"argument 'axis': got {raw!r}, expected distinct axes")
    a = float(hyper_value(hyper, "range_min", _METHOD))
    b = float(hyper_value(hyper, "range_max", _METHOD))
    if not a < b:
        raise ValueError(f"argument 'range_max': got {b!r} with range_min={a!r}, expected "
                         "range_min < range_max")
    return _Setup(axes=axes, a=prec.scalar(a), b=prec.scalar(b),
                  clip=bool(hyper_value(hyper, "clip", _METHOD)),
                  training=bool(hyper_value(hyper, "training", _METHOD)))


@dataclass(frozen=True)
class _Stats:
    lo: Num
    hi: Num
    r: Num
    u: Num


def _stats(nx: Numerics, inputs: Mapping[str, Num | None], st: _Setup) -> _Stats:
    x = inputs["x"]
    assert x is not None

    def fit() -> tuple[Num, Num]:
        return np.min(x, axis=st.axes, keepdims=True), np.max(x, axis=st.axes, keepdims=True)

    if st.training:
        lo, hi = fit()
    else:
        dmin, dmax = inputs.get("data_min"), inputs.get("data_max")
        if dmin is None or dmax is None:
            raise ValueError("argument 'inputs': got no data_min/data_max, expected both to "
                             "apply (training=False)")
        keep = tuple(1 if i in st.axes else x.shape[i] for i in range(x.ndim))
        lo, hi = nx.scaler_apply_statistics((dmin.reshape(keep), dmax.reshape(keep)), fit)
    r = _steps(nx).minmax_divisor(hi - lo)
    return _Stats(lo=lo, hi=hi, r=r, u=(x - lo) / r)


@dataclass(frozen=True)
class MinMaxScale:
    """The min_max_scale method (see the module docstring)."""

    primals: tuple[str, ...] = ("x",)
    state: tuple[str, ...] = ("data_min", "data_max")

    def forward(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                hyper: Mapping[str, Any]) -> dict[str, Num]:
        x = inputs["x"]
        assert x is not None
        st = _setup(prec, x, hyper)
        stt = _stats(nx, inputs, st)
        y = st.a + (st.b - st.a) * stt.u
        if st.clip:
            y = _steps(nx).minmax_clip(y, st.a, st.b)[0]
        if not st.training:
            return {"y": y}
        return {"y": y, "data_min": np.squeeze(stt.lo, st.axes),
                "data_max": np.squeeze(stt.hi, st.axes)}

    def _jvp(self, nx: Numerics, x: Num, st: _Setup, stt: _Stats, t: Num) -> Num:
        s = (st.b - st.a) / stt.r
        if not st.training:
            out: Num = t * s
            if st.clip:
                out = out * _steps(nx).minmax_clip(st.a + (st.b - st.a) * stt.u, st.a, st.b)[1]
            return out
        steps = _steps(nx)
        w_lo, w_hi = steps.minmax_ties(x, stt.lo, st.axes), steps.minmax_ties(x, stt.hi, st.axes)
        one = x.dtype.type(1)
        fit: Num = s * (t - (one - stt.u) * reduce_sum(w_lo * t, st.axes)
                        - stt.u * reduce_sum(w_hi * t, st.axes))
        return fit

    def vjp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], g: Num) -> dict[str, Num]:
        x = inputs["x"]
        assert x is not None
        st = _setup(prec, x, hyper)
        stt = _stats(nx, inputs, st)
        if not st.training:
            return {"x": self._jvp(nx, x, st, stt, g)}
        return {"x": self._vjp_fit(nx, x, st, stt, g)}

    def _vjp_fit(self, nx: Numerics, x: Num, st: _Setup, stt: _Stats, g: Num) -> Num:
        steps = _steps(nx)
        s = (st.b - st.a) / stt.r
        w_lo, w_hi = steps.minmax_ties(x, stt.lo, st.axes), steps.minmax_ties(x, stt.hi, st.axes)
        one = x.dtype.type(1)
        out: Num = s * g - s * w_lo * reduce_sum(g * (one - stt.u), st.axes) \
            - s * w_hi * reduce_sum(g * stt.u, st.axes)
        return out

    def jvp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], t: Mapping[str, Num]) -> Num:
        x = inputs["x"]
        assert x is not None
        st = _setup(prec, x, hyper)
        return self._jvp(nx, x, st, _stats(nx, inputs, st), t.get("x", np.zeros_like(x)))

    def second_order(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                     hyper: Mapping[str, Any], g: Num, t: Mapping[str, Num]) -> dict[str, Num]:
        x = inputs["x"]
        assert x is not None
        st = _setup(prec, x, hyper)
        if not st.training:
            return {"x": np.zeros_like(x)}
        stt = _stats(nx, inputs, st)
        tx = t.get("x", np.zeros_like(x))
        steps = _steps(nx)
        w_lo, w_hi = steps.minmax_ties(x, stt.lo, st.axes), steps.minmax_ties(x, stt.hi, st.axes)
        s = (st.b - st.a) / stt.r
        d_lo = reduce_sum(w_lo * tx, st.axes)
        delta = reduce_sum(w_hi * tx, st.axes) - d_lo
        inner = reduce_sum(g * (tx - d_lo - stt.u * delta), st.axes)
        out = -(delta / stt.r) * self._vjp_fit(nx, x, st, stt, g) \
            + (s / stt.r) * (w_lo - w_hi) * inner
        flat = (stt.hi - stt.lo) == 0
        return {"x": np.where(flat, x.dtype.type(0), out)}


MIN_MAX_SCALE = MinMaxScale()
