"""Local response normalization: divide each value by a power of its channel neighbourhood's energy.

Along ``channel_axis`` (``C`` channels), for every channel ``c`` and every other index::

    window(c) = [c - floor(size/2), c + floor((size-1)/2)]  clipped to [0, C-1]
    scale[c]  = k + (alpha/size) * sum_{c' in window(c)} x[c']^2
    y[c]      = x[c] * scale[c]^(-beta)

Channels outside ``[0, C-1]`` count as zeros, so the divisor is ``size`` even at the edges
(PyTorch's placement and divisor). For an even ``size`` the window holds one more channel
before ``c`` than after it. TensorFlow does not divide ``alpha`` by the window size, and ONNX
places even windows one channel later; the spec page gives the translations.

``k >= 0`` and ``alpha >= 0`` keep ``scale >= 0``, so ``scale^(-beta)`` is real for every
``beta``; ``scale == 0`` (only with ``k == 0`` and an all-zero window) follows IEEE arithmetic.

>>> import numpy as np
>>> out = forward(np.array([[1.0, 2.0, 3.0]]), size=3, alpha=3.0, beta=1.0, k=1.0)
>>> out["scale"].tolist()
[[6.0, 15.0, 14.0]]
>>> out["y"].round(6).tolist()
[[0.166667, 0.133333, 0.214286]]
>>> forward(np.array([[1.0, 2.0, 3.0]]), size=2, alpha=2.0, beta=1.0, k=0.0)["scale"].tolist()
[[1.0, 5.0, 13.0]]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ._checks import (
    FloatArray,
    as_float64,
    check_axis,
    check_int,
    check_ndim,
    check_nonempty_reduction,
    check_real,
    cotangent_like,
    directions,
)
from ._layout import Layout, row_sum

PRIMALS = ("x",)
"""Differentiable inputs, in call order."""
STATS = ("scale",)
"""Statistics returned by :func:`forward` beside ``y``: ``scale``, the same shape as ``x``."""
NCHW_EXAMPLE: dict[str, int] = {"size": 3, "channel_axis": 1}
"""Hyperparameters of the canonical ``(N, C, H, W)`` example: the docs draw
``layout((N, C, H, W), **NCHW_EXAMPLE)`` with the
:func:`window` of one channel."""


def _windows(v2: FloatArray, size: int, before: int) -> FloatArray:
    """``(rows * C, size)``: the zero-padded window ``v2[:, c - before : c - before + size]``."""
    padded = np.pad(v2, ((0, 0), (before, size - 1 - before)))
    return sliding_window_view(padded, size, axis=1).reshape(-1, size)


def _window_sum(v2: FloatArray, size: int, before: int) -> FloatArray:
    """Correctly rounded sum over each channel's window (see :func:`_windows`)."""
    return row_sum(_windows(v2, size, before)).reshape(v2.shape)


def _split(a: FloatArray) -> tuple[FloatArray, FloatArray]:
    # Veltkamp: a = hi + lo with 26-bit halves, so products of halves are exact.
    c = 134217729.0 * a
    hi = c - (c - a)
    return hi, a - hi


def _two_prod(a: FloatArray, b: FloatArray | float) -> tuple[FloatArray, FloatArray]:
    """``(p, e)``: ``p = fl(a b)`` and ``p + e = a b`` exactly (Dekker), 0 where it overflows."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(np.broadcast_to(np.asarray(b, dtype=np.float64), p.shape))
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, np.where(np.isfinite(e), e, 0.0)


def _scale(x2: FloatArray, size: int, alpha: float, k: float) -> tuple[FloatArray, FloatArray]:
    """``k + (alpha/size) sum x^2`` as an unevaluated sum ``hi + lo`` (about 100 bits).

    The squares are split exactly, the window sums are exact before one rounding (fsum), and
    the scaling by ``alpha/size`` and the addition of ``k`` carry their rounding errors, so
    ``hi`` is the scale correctly rounded (bar ties within 2^-100) and ``lo`` lets ``y`` avoid
    the ``beta``-fold amplification of that last rounding.
    """
    sq, sq_err = _two_prod(x2, x2)
    pieces = np.concatenate([_windows(sq, size, size // 2), _windows(sq_err, size, size // 2)],
                            axis=1)
    s_hi = row_sum(pieces)
    s_lo = row_sum(np.concatenate([pieces, -s_hi[:, None]], axis=1))
    p_hi, p_err = _two_prod(s_hi, alpha)
    p_lo = p_err + alpha * s_lo
    q_hi = p_hi / size
    r_hi, r_err = _two_prod(q_hi, float(size))
    q_lo = ((p_hi - r_hi) - r_err + p_lo) / size
    hi = k + q_hi
    b = hi - k
    lo = ((k - (hi - b)) + (q_hi - b)) + q_lo
    # An infinite or NaN scale has no rounding error to carry (and inf - inf would be NaN).
    lo = np.where(np.isfinite(lo), lo, 0.0)
    out = hi + lo
    lo = lo - (out - hi)
    return out.reshape(x2.shape), np.where(np.isfinite(lo), lo, 0.0).reshape(x2.shape)


@dataclass(frozen=True)
class _Rows:
    """Channels last, one row per non-channel index, and the per-element factors."""

    layout: Layout
    x: FloatArray
    size: int
    alpha: float
    beta: float
    scale: FloatArray
    scale_lo: FloatArray
    """The rounding error of ``scale``: ``scale + scale_lo`` is the exact scale to ~2^-100."""
    power: FloatArray
    """``scale^(-beta)``."""

    def window(self, v2: FloatArray) -> FloatArray:
        """``A v``: the sum over each channel's window."""
        return _window_sum(v2, self.size, self.size // 2)

    def window_t(self, v2: FloatArray) -> FloatArray:
        """``A^T v``: channel c' collects every c whose window holds c' (the mirrored window)."""
        return _window_sum(v2, self.size, (self.size - 1) // 2)

    @property
    def two_a(self) -> float:
        return 2.0 * self.alpha / self.size

    @property
    def s(self) -> FloatArray:
        """A per-row power of two just above max |x| (1 for rows of zeros).

        The derivatives are written in x/s and scale/s^2 so that no intermediate such as
        scale^(-beta-1) underflows while the result is representable (|x| ~ 1e100 would
        otherwise lose its second term entirely; |x| ~ 1e-100 with k = 0 would overflow
        scale^(-beta-1)). Dividing by s is exact.
        """
        peak = np.max(np.where(np.isfinite(self.x), np.abs(self.x), 0.0), axis=1, keepdims=True)
        _, exponent = np.frexp(np.where(peak > 0.0, peak, 0.5))
        # s^2 must stay a normal float64 (|exponent| <= 511)
        scale: FloatArray = np.ldexp(1.0, np.clip(exponent, -500, 500))
        return scale

    def hat(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``(s, x/s, scale/s^2)``."""
        s = self.s
        return s, self.x / s, self.scale / (s * s)

    def bp_over(self, scale_hat: FloatArray) -> FloatArray:
        """``beta scale^(-beta) / scale_hat``; 0 when beta == 0 (y = x exactly, no 0/0)."""
        if self.beta == 0.0:
            return np.zeros_like(self.scale)
        return self.beta * self.power / scale_hat


def _rows(x: object, size: object, alpha: object, beta: object, k: object,
          channel_axis: object) -> _Rows:
    xa = as_float64("x", x)
    check_ndim("x", xa, 2)
    c = check_axis("channel_axis", channel_axis, xa.ndim)
    n = check_int("size", size, minimum=1)
    a = check_real("alpha", alpha, minimum=0.0)
    b = check_real("beta", beta)
    # A negative k could make scale negative, and a negative base to a non-integer power is
    # NaN; no framework default needs it, so the domain stops at k >= 0.
    kv = check_real("k", k, minimum=0.0)
    check_nonempty_reduction("x", xa.shape, (c,))
    kept = tuple(i for i in range(xa.ndim) if i != c)
    layout = Layout(shape=xa.shape, perm=(*kept, c), stat_shape=tuple(xa.shape[i] for i in kept),
                    n=xa.shape[c], param_axes=())
    x2 = layout.to_rows(xa)
    scale, scale_lo = _scale(x2, n, a, kv)
    return _Rows(layout=layout, x=x2, size=n, alpha=a, beta=b, scale=scale, scale_lo=scale_lo,
                 power=np.power(scale, -b))


def layout(shape: tuple[int, ...], *, size: int, channel_axis: int = 1) -> Layout:
    """The layout :func:`forward` uses: one row per channel fiber, windows inside it.

    >>> layout((2, 5, 3), size=3).stat_shape, layout((2, 5, 3), size=3).n
    ((2, 3), 5)
    """
    with np.errstate(all="ignore"):
        return _rows(np.ones(shape), size, 0.0, 0.0, 1.0, channel_axis).layout


def window(channel: int, *, channels: int, size: int) -> tuple[int, ...]:
    """The channels whose squares enter ``scale[channel]``, read from the windowing code.

    >>> window(0, channels=5, size=3), window(2, channels=5, size=4), window(4, channels=5, size=4)
    ((0, 1), (0, 1, 2, 3), (2, 3, 4))
    """
    c = check_int("channels", channels, minimum=1)
    n = check_int("size", size, minimum=1)
    if not 0 <= channel < c:
        raise ValueError(f"argument 'channel': got {channel}, expected an index in [0, {c - 1}]")
    ids = np.arange(1.0, c + 1.0)[None, :]              # channel j is marked j + 1, padding 0
    marks = _windows(ids, n, n // 2)[channel]
    return tuple(int(m) - 1 for m in marks if m > 0)


def forward(x: object, *, size: int, alpha: float, beta: float, k: float,
            channel_axis: int = 1) -> dict[str, FloatArray]:
    """Return ``{"y", "scale"}``; see the module docstring for the definition."""
    with np.errstate(all="ignore"):
        r = _rows(x, size, alpha, beta, k, channel_axis)
        y = r.x * r.power
        # (scale + lo)^(-beta) = scale^(-beta) (1 - beta lo/scale) to first order in 2^-53;
        # lo is exactly 0 wherever scale is 0 or not finite.
        rel = np.where(r.scale_lo == 0.0, 0.0, r.scale_lo / r.scale)
        y = y - (r.beta * rel) * y
    return {"y": r.layout.from_rows(y), "scale": r.layout.from_rows(r.scale)}


def _jvp_rows(r: _Rows, t2: FloatArray) -> FloatArray:
    # t p - (2 alpha/n) x q A(x t) with q = beta p / scale, written in x/s and scale/s^2
    _, xh, sh = r.hat()
    return t2 * r.power - r.two_a * xh * r.bp_over(sh) * r.window(xh * t2)


def _vjp_rows(r: _Rows, g2: FloatArray) -> FloatArray:
    _, xh, sh = r.hat()
    return g2 * r.power - r.two_a * xh * r.window_t(g2 * xh * r.bp_over(sh))


def vjp(x: object, *, cotangent: object, size: int, alpha: float, beta: float, k: float,
        channel_axis: int = 1) -> dict[str, FloatArray]:
    """Gradient of ``sum(g * y)``: ``g scale^(-beta) - (2 alpha/size) x A^T(g x q)``."""
    with np.errstate(all="ignore"):
        r = _rows(x, size, alpha, beta, k, channel_axis)
        g2 = r.layout.to_rows(cotangent_like(cotangent, r.layout.shape))
        return {"x": r.layout.from_rows(_vjp_rows(r, g2))}


def jvp(x: object, *, tangent: Mapping[str, object], size: int, alpha: float, beta: float,
        k: float, channel_axis: int = 1) -> FloatArray:
    """Directional derivative ``t scale^(-beta) - (2 alpha/size) x q A(x t)``."""
    with np.errstate(all="ignore"):
        r = _rows(x, size, alpha, beta, k, channel_axis)
        t = directions("tangent", tangent, {"x": r.layout.from_rows(r.x)})["x"]
        assert t is not None
        return r.layout.from_rows(_jvp_rows(r, r.layout.to_rows(t)))


def second_order(x: object, *, cotangent: object, tangent: Mapping[str, object], size: int,
                 alpha: float, beta: float, k: float, channel_axis: int = 1
                 ) -> dict[str, FloatArray]:
    """Derivative of :func:`vjp` (``cotangent`` held fixed) along ``tangent``."""
    with np.errstate(all="ignore"):
        r = _rows(x, size, alpha, beta, k, channel_axis)
        g2 = r.layout.to_rows(cotangent_like(cotangent, r.layout.shape))
        t = directions("tangent", tangent, {"x": r.layout.from_rows(r.x)})["x"]
        assert t is not None
        t2 = r.layout.to_rows(t)
        if r.beta == 0.0:  # y = x: the VJP is constant in x
            return {"x": np.zeros_like(r.layout.from_rows(r.x))}
        sc, xh, sh = r.hat()
        bq = r.bp_over(sh)  # beta p / scale_hat
        d = r.window(xh * t2) / sh  # s * (A(x t) / scale)
        # (A v)' terms of the derivative of g p - (2a/n) x A^T(g x q) along t, each scaled by
        # s so that nothing underflows; the bracket is divided by s once at the end
        bracket = (-r.two_a * g2 * bq * sh * d
                   - r.two_a * t2 * r.window_t(g2 * xh * bq)
                   - r.two_a * xh * r.window_t(g2 * bq * (t2 - (r.beta + 1.0) * r.two_a * xh * d)))
        dv = bracket / sc
        return {"x": r.layout.from_rows(dv)}
