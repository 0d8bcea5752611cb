"""The shared core of the moment-based normalizations, with its closed-form derivatives.

For one reduction set of ``n`` values (one row of a :class:`~._layout.Layout`)::

    mean  = (1/n) sum_i x_i                      (centered methods; 0 otherwise)
    d_i   = x_i - mean
    var   = (1/n) sum_i d_i^2                    (biased; the mean square when not centered)
    rstd  = 1 / sqrt(var + eps)
    z_i   = d_i * rstd
    y     = z * weight + bias                    (weight and bias broadcast per the layout)

The Jacobian of ``z`` with respect to ``x`` is symmetric::

    J = rstd * (I - [centered] 1 1^T / n - z z^T / n)

so the JVP and the VJP share one formula. Differentiating the VJP ``J g`` along a tangent ``t``
with ``z' = J t`` and ``rstd' = -rstd^2 mean(z t)`` gives::

    (J g)' = (rstd'/rstd) J g - rstd (z' mean(z g) + z mean(z' g))

``d`` is computed with a correction pass (``x - mean0 - mean(x - mean0)``) and correctly rounded
sums, which keeps it accurate to a few ulp of the spread even when ``|mean|/std`` is 1e8.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._checks import FloatArray, ieee
from ._layout import Layout, row_mean


@dataclass(frozen=True)
class Moments:
    """Per-row statistics and the normalized rows, all from one input."""

    z: FloatArray
    mean: FloatArray
    var: FloatArray
    rstd: FloatArray


def _pow2_row_scale(d: FloatArray) -> FloatArray:
    """A power of two near each row's largest finite magnitude (1 for rows with none).

    Dividing by it is exact, so squares neither overflow (|d| up to 1e308) nor underflow.
    """
    finite = np.where(np.isfinite(d), np.abs(d), 0.0)
    peak = finite.max(axis=1) if d.shape[1] else np.zeros(d.shape[0])
    _, exponent = np.frexp(np.where(peak > 0, peak, 1.0))
    # 2^1024 is not a float64: the largest rows are scaled by 2^1023 (|d/s| <= 2)
    return np.ldexp(1.0, np.minimum(exponent, 1023))


def moments(x2: FloatArray, eps: float, center: bool) -> Moments:
    with np.errstate(all="ignore"):  # NaN and Inf propagate as IEEE says; no warnings
        if center:
            mean0 = row_mean(x2)
            shifted = x2 - mean0[:, None]
            correction = row_mean(shifted)
            d = shifted - correction[:, None]
            # mean0 is already within ~1 ulp of the true mean; the correction only serves d,
            # whose accuracy it improves, and adding it back would round at the scale of x.
            mean = mean0
        else:
            d = x2
            mean = np.zeros(x2.shape[0])
        s = _pow2_row_scale(d)
        ds = d / s[:, None]
        ms = row_mean(ds * ds)
        # rstd = 1/sqrt(s^2 ms + eps) evaluated without forming s^2 ms when it could overflow
        # (s >= 1) or lose eps (eps == 0 with s < 1); q = s * rstd is the scaled rows' rstd.
        wide = (s >= 1.0) | (eps == 0.0)
        q = np.where(wide, 1.0 / np.sqrt(ms + eps / s / s), 0.0)
        rstd_narrow = 1.0 / np.sqrt(s * s * ms + eps)
        rstd = np.where(wide, q / s, rstd_narrow)
        q = np.where(wide, q, rstd_narrow * s)
        var = (s * ms) * s  # overflows only when the variance itself does
        return Moments(z=ds * q[:, None], mean=mean, var=var, rstd=rstd)


def _apply_jacobian(m: Moments, v2: FloatArray, center: bool) -> FloatArray:
    """``J v`` for the symmetric Jacobian above (serves as JVP and as VJP)."""
    inner = v2 - m.z * row_mean(m.z * v2)[:, None]
    if center:
        inner = inner - row_mean(v2)[:, None]
    return m.rstd[:, None] * inner


def _second_order_rows(m: Moments, g2: FloatArray, t2: FloatArray, center: bool) -> FloatArray:
    z_dot = _apply_jacobian(m, t2, center)
    rstd_dot_over_rstd = -m.rstd * row_mean(m.z * t2)
    return rstd_dot_over_rstd[:, None] * _apply_jacobian(m, g2, center) - m.rstd[:, None] * (
        z_dot * row_mean(m.z * g2)[:, None] + m.z * row_mean(z_dot * g2)[:, None]
    )


@dataclass(frozen=True)
class AffineNorm:
    """A moment normalization over ``layout`` followed by an optional per-feature affine."""

    layout: Layout
    eps: float
    center: bool

    def _w(self, weight: FloatArray | None) -> FloatArray | float:
        return 1.0 if weight is None else self.layout.param_view(weight)

    @ieee
    def forward(self, x: FloatArray, weight: FloatArray | None, bias: FloatArray | None
                ) -> tuple[FloatArray, Moments]:
        m = moments(self.layout.to_rows(x), self.eps, self.center)
        y = self.layout.from_rows(m.z) * self._w(weight)
        if bias is not None:
            y = y + self.layout.param_view(bias)
        return y, m

    def outputs(self, x: FloatArray, weight: FloatArray | None, bias: FloatArray | None
                ) -> dict[str, FloatArray]:
        """``y`` and the statistics under the spec's names, in the layout's statistic shape.

        Centered: ``mean``, ``var``, ``rstd``; uncentered: ``mean_square``, ``rrms``.
        """
        y, m = self.forward(x, weight, bias)
        stat = self.layout.stats_from_rows
        if self.center:
            return {"y": y, "mean": stat(m.mean), "var": stat(m.var), "rstd": stat(m.rstd)}
        return {"y": y, "mean_square": stat(m.var), "rrms": stat(m.rstd)}

    @ieee
    def vjp(self, x: FloatArray, weight: FloatArray | None, bias: FloatArray | None,
            g: FloatArray) -> dict[str, FloatArray]:
        lay = self.layout
        m = moments(lay.to_rows(x), self.eps, self.center)
        grads = {"x": lay.from_rows(_apply_jacobian(m, lay.to_rows(g * self._w(weight)),
                                                    self.center))}
        if weight is not None:
            grads["weight"] = lay.param_sum(g * lay.from_rows(m.z))
        if bias is not None:
            grads["bias"] = lay.param_sum(g)
        return grads

    @ieee
    def jvp(self, x: FloatArray, weight: FloatArray | None, bias: FloatArray | None,
            t: dict[str, FloatArray | None]) -> FloatArray:
        lay = self.layout
        m = moments(lay.to_rows(x), self.eps, self.center)
        tx = t["x"]
        assert tx is not None
        out = lay.from_rows(_apply_jacobian(m, lay.to_rows(tx), self.center)) * self._w(weight)
        tw, tb = t.get("weight"), t.get("bias")
        if tw is not None:
            out = out + lay.from_rows(m.z) * lay.param_view(tw)
        if tb is not None:
            out = out + lay.param_view(tb)
        return out

    @ieee
    def second_order(self, x: FloatArray, weight: FloatArray | None, bias: FloatArray | None,
                     g: FloatArray, t: dict[str, FloatArray | None]) -> dict[str, FloatArray]:
        """Derivative of :meth:`vjp` (with ``g`` fixed) along the primal tangent ``t``."""
        lay = self.layout
        m = moments(lay.to_rows(x), self.eps, self.center)
        tx, tw = t["x"], t.get("weight")
        assert tx is not None
        t2 = lay.to_rows(tx)
        gw2 = lay.to_rows(g * self._w(weight))
        dx = _second_order_rows(m, gw2, t2, self.center)
        if tw is not None:
            # the VJP for x is linear in weight: its derivative along tw is J (g * tw)
            dx = dx + _apply_jacobian(m, lay.to_rows(g * lay.param_view(tw)), self.center)
        out = {"x": lay.from_rows(dx)}
        if weight is not None:
            z_dot = lay.from_rows(_apply_jacobian(m, t2, self.center))
            out["weight"] = lay.param_sum(g * z_dot)
        if bias is not None:
            out["bias"] = np.zeros_like(bias)
        return out
