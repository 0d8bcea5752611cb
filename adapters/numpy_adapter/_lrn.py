"""Local response normalization across channels.

With ``W`` the zero-padded window sum over channels ``[c - lo, c + hi]`` (``WT`` its transpose,
the window ``[c - hi, c + lo]``), ``a = alpha/size``, ``s = k + a W(x^2)``, ``q = s^-beta`` and
``r = q/s``, evaluated in x/s and scale/s^2 (see ``_Lrn.hat``)::

    y = x q
    vjp:  dx = g q - 2 a beta x WT(g x r)
    jvp:  dy = t q - 2 a beta x r W(x t)
    second order, with s' = 2 a W(x t):
          dx' = -beta g r s' - 2 a beta (t WT(g x r) + x WT(g t r - (beta+1) g x r s'/s))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._geometry import normalize_axis
from ._numerics import Numerics, hyper_value
from ._precision import Num, Precision

_METHOD = "local_response_norm"


def window_sum(a: Num, before: int, after: int) -> Num:
    """Sum over channels ``[c - before, c + after]`` along axis 0, zeros past the edges."""
    channels = a.shape[0]
    pad = [(before, after)] + [(0, 0)] * (a.ndim - 1)
    padded = np.pad(a, pad)
    total: Num = padded[0:channels].copy()
    for offset in range(1, before + after + 1):
        total += padded[offset:offset + channels]
    return total


@dataclass(frozen=True)
class _Lrn:
    """Channel-first arrays (channel axis moved to 0) and the constants of one call."""

    channel_axis: int
    x: Num
    coeff: Any
    beta: Any
    window: tuple[int, int]
    scale: Num
    q: Num

    def first(self, a: Num) -> Num:
        return np.moveaxis(a, self.channel_axis, 0)

    def back(self, a: Num) -> Num:
        return np.moveaxis(a, 0, self.channel_axis)

    def w(self, a: Num) -> Num:
        return window_sum(a, *self.window)

    def wt(self, a: Num) -> Num:
        return window_sum(a, self.window[1], self.window[0])

    def hat(self) -> tuple[Any, Num, Num, Num]:
        """``(s, x/s, scale/s^2, beta q / (scale/s^2))`` for a power of two ``s`` near max|x|.

        ``q / scale = scale^(-beta-1)`` underflows (|x| ~ 1e15 in float32, 1e100 in float64) or
        overflows (tiny |x| with k = 0) long before the derivatives do; written in x/s and
        scale/s^2 neither happens.
        """
        finite = np.abs(self.x[np.isfinite(self.x)])
        peak = float(finite.max()) if finite.size else 0.0
        limit = np.finfo(self.x.dtype).maxexp // 2 - 4  # keeps s^2 a normal number
        exponent = int(np.clip(np.frexp(peak)[1], -limit, limit)) if peak > 0.0 else 0
        s = self.x.dtype.type(np.ldexp(1.0, exponent))
        sh = self.scale / (s * s)
        return s, self.x / s, sh, self.beta * self.q / sh


def _prepare(nx: Numerics, prec: Precision, x: Num, hyper: Mapping[str, Any]) -> _Lrn:
    size = hyper_value(hyper, "size", _METHOD)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"argument 'size': got {size!r}, expected an integer >= 1")
    if x.ndim < 2:
        raise ValueError(f"argument 'x': got shape {x.shape}, expected at least 2 dimensions")
    c = normalize_axis("channel_axis", hyper.get("channel_axis", 1), x.ndim)
    coeff = prec.scalar(nx.lrn_coefficient(float(hyper_value(hyper, "alpha", _METHOD)), int(size)))
    beta = prec.scalar(float(hyper_value(hyper, "beta", _METHOD)))
    k = prec.scalar(float(hyper_value(hyper, "k", _METHOD)))
    xc = np.moveaxis(x, c, 0)
    window = nx.lrn_window(int(size))
    scale = k + coeff * window_sum(xc * xc, *window)
    return _Lrn(channel_axis=c, x=xc, coeff=coeff, beta=beta, window=window, scale=scale,
                q=scale ** -beta)


@dataclass(frozen=True)
class LocalResponseNorm:
    """The local_response_norm method (see the module docstring)."""

    primals: tuple[str, ...] = ("x",)
    state: tuple[str, ...] = ()

    def forward(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                hyper: Mapping[str, Any]) -> dict[str, Num]:
        x = inputs["x"]
        assert x is not None
        lrn = _prepare(nx, prec, x, hyper)
        return {"y": lrn.back(lrn.x * lrn.q), "scale": lrn.back(lrn.scale)}

    def vjp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], g: Num) -> dict[str, Num]:
        x = inputs["x"]
        assert x is not None
        lrn = _prepare(nx, prec, x, hyper)
        gc, two = lrn.first(g), x.dtype.type(2)
        _, xh, _, bq = lrn.hat()
        dx = gc * lrn.q - two * lrn.coeff * xh * lrn.wt(gc * xh * bq)
        return {"x": lrn.back(dx)}

    def jvp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], t: Mapping[str, Num]) -> Num:
        x = inputs["x"]
        assert x is not None
        lrn = _prepare(nx, prec, x, hyper)
        if "x" not in t:
            return np.zeros_like(x)
        tc, two = lrn.first(t["x"]), x.dtype.type(2)
        _, xh, _, bq = lrn.hat()
        dy = tc * lrn.q - two * lrn.coeff * xh * bq * lrn.w(xh * tc)
        return lrn.back(dy)

    def second_order(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                     hyper: Mapping[str, Any], g: Num, t: Mapping[str, Num]) -> dict[str, Num]:
        x = inputs["x"]
        assert x is not None
        lrn = _prepare(nx, prec, x, hyper)
        if "x" not in t:
            return {"x": np.zeros_like(x)}
        gc, tc = lrn.first(g), lrn.first(t["x"])
        one, two = x.dtype.type(1), x.dtype.type(2)
        sc, xh, sh, bq = lrn.hat()
        a2 = two * lrn.coeff
        # linear in the tangent: feeding t/s instead of dividing the result by s keeps a tangent
        # as small as x (1e-15 in float32) from underflowing inside W(x t) / scale
        th = tc / sc
        d = lrn.w(xh * th) / sh
        dx = (-a2 * gc * bq * sh * d - a2 * th * lrn.wt(gc * xh * bq)
              - a2 * xh * lrn.wt(gc * bq * (th - (lrn.beta + one) * a2 * xh * d)))
        return {"x": lrn.back(dx)}


LOCAL_RESPONSE_NORM = LocalResponseNorm()
