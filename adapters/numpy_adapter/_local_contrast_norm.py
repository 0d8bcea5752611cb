"""Local contrast normalization, as a separable Gaussian convolution in the dtype under test.

``K`` is the zero-padded convolution with the normalized taps along every spatial axis (its
matrix is symmetric), ``mass = K 1`` and ``W = K`` (border "zero") or ``W = K / mass``
("renormalize"); the window over channels is their mean. With ``m = W mean_c(x)``,
``v = x - m``, ``sigma = sqrt(W mean_c(v^2))``, ``d = max(floor, sigma)``, ``y = v / d`` and
``a`` the share of ``max``'s derivative going to sigma (1, 1/2 at a tie, 0)::

    vjp:  d_bar = -sum_c(g y) / d,  s_bar = a d_bar + [mean floor] sum((1-a) d_bar) / S,
          q_bar = s_bar / (2 sigma),  v_bar = g / d + 2 v W^T(q_bar) / C,
          x_bar = v_bar - W^T(sum_c v_bar) / C
    jvp:  v' = t - W mean_c(t),  sigma' = W mean_c(v v') / sigma,
          d' = a sigma' + (1-a) floor',  y' = (v' - y d') / d
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._geometry import normalize_axis
from ._numerics import Numerics, hyper_value
from ._precision import Num, Precision

_METHOD = "local_contrast_norm"


def _taps(k: int, sigma: float) -> np.ndarray:
    t = np.arange(k, dtype=np.float64) - (k - 1) / 2
    raw = np.exp(-(t * t) / (2.0 * sigma * sigma))
    out: np.ndarray = raw / raw.sum()
    return out


def _conv(a: Num, taps: Num) -> Num:
    """Zero-padded 'same' convolution with ``taps`` along every axis after the first two."""
    out = a
    half = (taps.size - 1) // 2
    for axis in range(2, a.ndim):
        moved = np.moveaxis(out, axis, -1)
        n = moved.shape[-1]
        acc = np.zeros_like(moved)
        for k, tap in enumerate(taps):
            shift = k - half
            lo, hi = max(0, -shift), min(n, n - shift)
            if lo < hi:
                acc[..., lo:hi] += tap * moved[..., lo + shift:hi + shift]
        out = np.moveaxis(acc, -1, axis)
    return out


@dataclass(frozen=True)
class _State:
    c: int
    taps: Num
    renorm: bool
    mass: Num
    mean_floor: bool
    v: Num
    sigma: Num
    d: Num
    a: Num

    def w(self, u: Num) -> Num:
        """``W u`` for ``u`` of shape (N, 1, *spatial)."""
        out = _conv(u, self.taps)
        return out / self.mass if self.renorm else out

    def wt(self, u: Num) -> Num:
        return _conv(u / self.mass if self.renorm else u, self.taps)


def _prepare(prec: Precision, x: Num, hyper: Mapping[str, Any]) -> tuple[_State, Num]:
    c = normalize_axis("channel_axis", hyper_value(hyper, "channel_axis", _METHOD), x.ndim)
    xm = np.moveaxis(x, c, 1)
    k = int(hyper_value(hyper, "kernel_size", _METHOD))
    taps = _taps(k, float(hyper_value(hyper, "window_sigma", _METHOD))).astype(x.dtype)
    renorm = hyper_value(hyper, "border", _METHOD) == "renormalize"
    floor_h = hyper_value(hyper, "divisor_floor", _METHOD)
    ones = np.ones((1, 1, *xm.shape[2:]), dtype=x.dtype)
    mass = _conv(ones, taps)
    proto = _State(c, taps, renorm, mass, isinstance(floor_h, str), xm, xm, xm, xm)
    v = xm - proto.w(xm.mean(axis=1, keepdims=True))
    sigma = np.sqrt(proto.w((v * v).mean(axis=1, keepdims=True)))
    axes = tuple(range(2, xm.ndim))
    floor = (sigma.mean(axis=axes, keepdims=True) if proto.mean_floor
             else np.full((xm.shape[0], 1) + (1,) * len(axes), prec.scalar(float(floor_h))))
    d = np.maximum(floor, sigma)
    one, half, zero = x.dtype.type(1), x.dtype.type(0.5), x.dtype.type(0)
    a = np.where(sigma > floor, one, np.where(sigma == floor, half, zero))
    return _State(c, taps, renorm, mass, proto.mean_floor, v, sigma, d, a), floor


def _floor_mean(s: _State, u: Num) -> Num:
    out: Num = u.mean(axis=tuple(range(2, u.ndim)), keepdims=True)
    return out


@dataclass(frozen=True)
class LocalContrastNorm:
    """The local_contrast_norm method (see the module docstring)."""

    primals: tuple[str, ...] = ("x",)
    state: tuple[str, ...] = ()

    def forward(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                hyper: Mapping[str, Any]) -> dict[str, Num]:
        x = inputs["x"]
        assert x is not None
        s, floor = _prepare(prec, x, hyper)
        y = np.moveaxis(s.v / s.d, 1, s.c)
        return {"y": y, "sigma": s.sigma[:, 0], "floor": floor.reshape(-1)}

    def vjp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], g: Num) -> dict[str, Num]:
        x = inputs["x"]
        assert x is not None
        s, _ = _prepare(prec, x, hyper)
        gm = np.moveaxis(g, s.c, 1)
        y = s.v / s.d
        cc = x.dtype.type(gm.shape[1])
        dbar = -(gm * y).sum(axis=1, keepdims=True) / s.d
        one = x.dtype.type(1)
        sbar = s.a * dbar
        if s.mean_floor:
            n_sp = x.dtype.type(np.prod(gm.shape[2:]))
            sbar = sbar + ((one - s.a) * dbar).sum(axis=tuple(range(2, gm.ndim)),
                                                   keepdims=True) / n_sp
        safe = np.where(s.sigma > 0, s.sigma, one)
        qbar = np.where(s.sigma > 0, sbar / (2 * safe), x.dtype.type(0))
        vbar = gm / s.d + 2 * s.v * s.wt(qbar) / cc
        xbar = vbar - s.wt(vbar.sum(axis=1, keepdims=True)) / cc
        return {"x": np.moveaxis(xbar, 1, s.c)}

    def jvp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], t: Mapping[str, Num]) -> Num:
        x = inputs["x"]
        assert x is not None
        s, _ = _prepare(prec, x, hyper)
        if "x" not in t:
            return np.zeros_like(x)
        tm = np.moveaxis(t["x"], s.c, 1)
        dv = tm - s.w(tm.mean(axis=1, keepdims=True))
        one = x.dtype.type(1)
        safe = np.where(s.sigma > 0, s.sigma, one)
        ds = np.where(s.sigma > 0, s.w((s.v * dv).mean(axis=1, keepdims=True)) / safe,
                      x.dtype.type(0))
        dfloor = _floor_mean(s, ds) if s.mean_floor else x.dtype.type(0)
        dd = s.a * ds + (one - s.a) * dfloor
        dy = (dv - (s.v / s.d) * dd) / s.d
        return np.moveaxis(dy, 1, s.c)

    def second_order(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                     hyper: Mapping[str, Any], g: Num, t: Mapping[str, Num]) -> dict[str, Num]:
        """The VJP's steps differentiated along ``t`` (the max's split held fixed)."""
        x = inputs["x"]
        assert x is not None
        s, _ = _prepare(prec, x, hyper)
        if "x" not in t:
            return {"x": np.zeros_like(x)}
        gm, tm = np.moveaxis(g, s.c, 1), np.moveaxis(t["x"], s.c, 1)
        one, zero = x.dtype.type(1), x.dtype.type(0)
        cc = x.dtype.type(gm.shape[1])
        sp = tuple(range(2, gm.ndim))
        n_sp = x.dtype.type(np.prod(gm.shape[2:]))
        safe = np.where(s.sigma > 0, s.sigma, one)
        # tangents of the forward
        dv = tm - s.w(tm.mean(axis=1, keepdims=True))
        ds = np.where(s.sigma > 0, s.w((s.v * dv).mean(axis=1, keepdims=True)) / safe, zero)
        dfloor = _floor_mean(s, ds) if s.mean_floor else zero
        dd = s.a * ds + (one - s.a) * dfloor
        y = s.v / s.d
        dy = (dv - y * dd) / s.d
        # the VJP and its tangent, step by step
        dbar = -(gm * y).sum(axis=1, keepdims=True) / s.d
        dbar_t = -(gm * dy).sum(axis=1, keepdims=True) / s.d - dbar * dd / s.d
        sbar, sbar_t = s.a * dbar, s.a * dbar_t
        if s.mean_floor:
            sbar = sbar + ((one - s.a) * dbar).sum(axis=sp, keepdims=True) / n_sp
            sbar_t = sbar_t + ((one - s.a) * dbar_t).sum(axis=sp, keepdims=True) / n_sp
        qbar = np.where(s.sigma > 0, sbar / (2 * safe), zero)
        qbar_t = np.where(s.sigma > 0, sbar_t / (2 * safe) - qbar * ds / safe, zero)
        vbar_t = (-(gm / s.d) * dd / s.d + 2 * dv * s.wt(qbar) / cc
                  + 2 * s.v * s.wt(qbar_t) / cc)
        xbar_t = vbar_t - s.wt(vbar_t.sum(axis=1, keepdims=True)) / cc
        return {"x": np.moveaxis(xbar_t, 1, s.c)}


LOCAL_CONTRAST_NORM = LocalContrastNorm()
