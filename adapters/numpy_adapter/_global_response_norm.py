"""Global response normalization (ConvNeXt V2 GRN), in the layout given, keep-dims statistics.

With ``gx = ||x||_2`` over the spatial axes per (n, c), ``u = x / gx`` (0 where ``gx = 0``),
``D = mean_c gx + eps``, ``nx = gx / D`` and ``y = w x nx + b + x``::

    d gx = sum_s u t,   d nx = (d gx - nx mean_c d gx) / D
    jvp:  dy = t + w (t nx + x d nx) + tw x nx + tb
    vjp:  a = w sum_s g x (the cotangent of nx),  abar = (a - mean_c(a nx)) / D,
          dx = g (1 + w nx) + abar u,  dw = sum_{n,s} g x nx,  db = sum_{n,s} g
    second order:  da = tw sum_s g x + w sum_s g t,
          d abar = (da - mean_c(da nx + a d nx)) / D - abar mean_c(d gx) / D,
          du = (t - u d gx) / gx (0 where gx = 0),
          d dx = g (tw nx + w d nx) + d abar u + abar du,  d dw = sum g (t nx + x d nx)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._geometry import normalize_axis
from ._numerics import Numerics, hyper_value
from ._precision import Num, Precision, reduce_mean, reduce_sum

_METHOD = "global_response_norm"


@dataclass(frozen=True)
class _Grn:
    spatial: tuple[int, ...]
    channel: int
    w: Num
    b: Num
    x: Num
    gx: Num
    unit: Num
    d: Num
    nx: Num

    def param(self, v: Num) -> Num:
        shape = [1] * self.x.ndim
        shape[self.channel] = v.shape[0]
        return v.reshape(shape)

    def per_sample(self, a: Num) -> Num:
        """The mean over channels, keep-dims."""
        return reduce_mean(a, (self.channel,))

    def param_sum(self, a: Num) -> Num:
        axes = tuple(i for i in range(a.ndim) if i != self.channel)
        return reduce_sum(a, axes).reshape(-1)


def _prepare(nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
             hyper: Mapping[str, Any]) -> _Grn:
    x, w, b = inputs["x"], inputs["weight"], inputs["bias"]
    if x is None or w is None or b is None:
        raise ValueError("argument 'inputs': global_response_norm needs 'x', 'weight' and 'bias'")
    if x.ndim < 3:
        raise ValueError(f"argument 'inputs': got x of shape {x.shape}, expected >= 3 dims")
    c = normalize_axis("channel_axis", hyper_value(hyper, "channel_axis", _METHOD), x.ndim)
    if c == 0:
        raise ValueError("argument 'channel_axis': got the batch axis 0, expected another axis")
    eps = prec.scalar(float(hyper_value(hyper, "eps", _METHOD)))
    spatial = tuple(i for i in range(1, x.ndim) if i != c)
    gx = nx.grn_norm(x, spatial)
    unit = nx.grn_unit(x, gx)
    d = nx.grn_denominator(gx, (c,), eps)
    shape = [1] * x.ndim
    shape[c] = -1
    return _Grn(spatial=spatial, channel=c, w=w.reshape(shape), b=b.reshape(shape), x=x, gx=gx,
                unit=unit, d=d, nx=gx / d)


def _dnx(r: _Grn, nx: Numerics, dgx: Num) -> Num:
    out: Num = (dgx - r.nx * r.per_sample(dgx)) / r.d
    return out if nx.grn_stats_differentiated() else np.zeros_like(out)


@dataclass(frozen=True)
class GlobalResponseNorm:
    """The global_response_norm method (see the module docstring)."""

    primals: tuple[str, ...] = ("x", "weight", "bias")
    state: tuple[str, ...] = ()

    def forward(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                hyper: Mapping[str, Any]) -> dict[str, Num]:
        r = _prepare(nx, prec, inputs, hyper)
        y = r.w * (r.x * r.nx) + r.b
        if nx.grn_residual():
            y = y + r.x
        keep = tuple(i for i in range(r.x.ndim) if i in (0, r.channel))
        n_c = tuple(r.x.shape[i] for i in keep)
        gx = np.moveaxis(r.gx, r.channel, 1).reshape(n_c)
        nxs = np.moveaxis(r.nx, r.channel, 1).reshape(n_c)
        return {"y": y, "gx": gx, "nx": nxs}

    def vjp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], g: Num) -> dict[str, Num]:
        r = _prepare(nx, prec, inputs, hyper)
        a = r.w * reduce_sum(g * r.x, r.spatial)
        abar = (a - r.per_sample(a * r.nx)) / r.d
        if not nx.grn_stats_differentiated():
            abar = np.zeros_like(abar)
        one = r.x.dtype.type(1)
        res = one if nx.grn_residual() else r.x.dtype.type(0)
        dx = g * (res + r.w * r.nx) + abar * r.unit
        return {"x": dx, "weight": r.param_sum(g * r.x * r.nx), "bias": r.param_sum(g)}

    def jvp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], t: Mapping[str, Num]) -> Num:
        r = _prepare(nx, prec, inputs, hyper)
        zero = r.x.dtype.type(0)
        tx = t.get("x", np.zeros_like(r.x))
        tw = r.param(t["weight"]) if "weight" in t else zero
        tb = r.param(t["bias"]) if "bias" in t else zero
        dnx = _dnx(r, nx, reduce_sum(r.unit * tx, r.spatial))
        res = tx if nx.grn_residual() else zero
        out: Num = res + r.w * (tx * r.nx + r.x * dnx) + tw * (r.x * r.nx) + tb
        return out

    def second_order(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                     hyper: Mapping[str, Any], g: Num, t: Mapping[str, Num]) -> dict[str, Num]:
        r = _prepare(nx, prec, inputs, hyper)
        zero = r.x.dtype.type(0)
        tx = t.get("x", np.zeros_like(r.x))
        tw = r.param(t["weight"]) if "weight" in t else zero
        dgx = reduce_sum(r.unit * tx, r.spatial)
        dnx = _dnx(r, nx, dgx)
        gdotx = reduce_sum(g * r.x, r.spatial)
        a = r.w * gdotx
        da = tw * gdotx + r.w * reduce_sum(g * tx, r.spatial)
        abar = (a - r.per_sample(a * r.nx)) / r.d
        dabar = ((da - r.per_sample(da * r.nx + a * dnx)) - abar * r.per_sample(dgx)) / r.d
        safe = np.where(r.gx > zero, r.gx, r.x.dtype.type(1))
        dunit = np.where(r.gx > zero, (tx - r.unit * dgx) / safe, zero)
        if not nx.grn_stats_differentiated():
            abar, dabar = np.zeros_like(abar), np.zeros_like(dabar)
        dx = g * (tw * r.nx + r.w * dnx) + dabar * r.unit + abar * dunit
        dw = r.param_sum(g * (tx * r.nx + r.x * dnx))
        return {"x": dx, "weight": dw, "bias": np.zeros(r.w.size, dtype=r.x.dtype)}


GLOBAL_RESPONSE_NORM = GlobalResponseNorm()
