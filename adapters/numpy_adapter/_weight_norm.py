"""Weight normalization, in the dtype under test (float32 for 16-bit storage).

``x`` is the direction ``v``; per slice (one index of ``kept_axis``, or the whole tensor for
``kept_axis="none"``), with the normalized axes ``R``::

    sq = sum_R x^2,  r = 1 / sqrt(sq + eps),  u = x r,  w = g u
    vjp:  c = sum_R w_bar u,  g_bar = c,  x_bar = g r (w_bar - u c)
    jvp:  a = sum_R u t_x,  w' = t_g u + g r (t_x - u a)
    second order:  u' = r (t_x - u a),  c' = sum_R w_bar u',  g_bar' = c',
                   x_bar' = (t_g r - g r^2 a) (w_bar - u c) - g r (u' c + u c')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._geometry import normalize_axis
from ._numerics import Numerics, hyper_value
from ._precision import Num, Precision, reduce_sum

_METHOD = "weight_norm"


class WeightNormSteps:
    """The numerical steps of weight_norm that implementations get wrong."""

    def wn_norm_axes(self, kept_axis: object, ndim: int) -> tuple[int, ...]:
        """The axes one norm runs over: all but ``kept_axis`` (Python's rules: -1 is the last
        axis), or all of them for ``"none"``."""
        kept = _kept_axes(kept_axis, ndim)
        return tuple(i for i in range(ndim) if i not in kept)

    def wn_inverse_norm(self, sq: Num, eps: Any) -> Num:
        """``1 / sqrt(sum x^2 + eps)``: eps inside the root."""
        one = sq.dtype.type(1)
        out: Num = one / np.sqrt(sq + eps)
        return out

    def wn_norm_differentiated(self) -> bool:
        """Whether gradients flow through the norm (they do: it is a function of x)."""
        return True


def _kept_axes(kept_axis: object, ndim: int) -> tuple[int, ...]:
    if isinstance(kept_axis, str):
        if kept_axis != "none":
            raise ValueError(f"argument 'kept_axis': got {kept_axis!r}, expected an integer "
                             "axis or 'none'")
        return ()
    return (normalize_axis("kept_axis", kept_axis, ndim),)


_DEFAULT = WeightNormSteps()


def _steps(nx: Numerics) -> WeightNormSteps:
    return nx if isinstance(nx, WeightNormSteps) else _DEFAULT


@dataclass(frozen=True)
class _Slices:
    axes: tuple[int, ...]
    """The normalized axes."""
    x: Num
    g: Num
    sq: Num
    r: Num
    u: Num
    through_norm: bool

    def total(self, a: Num) -> Num:
        return reduce_sum(a, self.axes)


def _prepare(nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
             hyper: Mapping[str, Any]) -> _Slices:
    x, g = inputs["x"], inputs["g"]
    if x is None or g is None:
        raise ValueError("argument 'inputs': weight_norm needs 'x' (the direction) and 'g'")
    steps = _steps(nx)
    kept_axis = hyper_value(hyper, "kept_axis", _METHOD)
    kept = _kept_axes(kept_axis, x.ndim)
    axes = steps.wn_norm_axes(kept_axis, x.ndim)
    want = tuple(d if i in kept else 1 for i, d in enumerate(x.shape))
    if g.shape != want:
        raise ValueError(f"argument 'inputs': got g of shape {g.shape}, expected {want}")
    eps = prec.scalar(float(hyper_value(hyper, "eps", _METHOD)))
    sq = reduce_sum(x * x, axes)
    r = steps.wn_inverse_norm(sq, eps)
    return _Slices(axes=axes, x=x, g=g, sq=sq, r=r, u=x * r,
                   through_norm=steps.wn_norm_differentiated())


@dataclass(frozen=True)
class WeightNorm:
    """The weight_norm method (see the module docstring)."""

    primals: tuple[str, ...] = ("x", "g")
    state: tuple[str, ...] = ()

    def forward(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                hyper: Mapping[str, Any]) -> dict[str, Num]:
        s = _prepare(nx, prec, inputs, hyper)
        return {"y": s.g * s.u, "norm": np.sqrt(s.sq)}

    def vjp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], g: Num) -> dict[str, Num]:
        s = _prepare(nx, prec, inputs, hyper)
        c = s.total(g * s.u)
        proj = g - s.u * c if s.through_norm else g
        return {"x": s.g * s.r * proj, "g": c}

    def jvp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], t: Mapping[str, Num]) -> Num:
        s = _prepare(nx, prec, inputs, hyper)
        tx = t.get("x", np.zeros_like(s.x))
        tg = t.get("g", np.zeros_like(s.g))
        a = s.total(s.u * tx)
        proj = tx - s.u * a if s.through_norm else tx
        out: Num = tg * s.u + s.g * s.r * proj
        return out

    def second_order(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                     hyper: Mapping[str, Any], g: Num, t: Mapping[str, Num]) -> dict[str, Num]:
        s = _prepare(nx, prec, inputs, hyper)
        tx = t.get("x", np.zeros_like(s.x))
        tg = t.get("g", np.zeros_like(s.g))
        a = s.total(s.u * tx)
        c = s.total(g * s.u)
        if not s.through_norm:
            # x_bar = g r w_bar with r held constant: its derivative is t_g r w_bar
            return {"x": tg * s.r * g, "g": s.total(g * s.r * tx)}
        du = s.r * (tx - s.u * a)
        dc = s.total(g * du)
        dx = (tg * s.r - s.g * s.r * s.r * a) * (g - s.u * c) - s.g * s.r * (du * c + s.u * dc)
        return {"x": dx, "g": dc}


WEIGHT_NORM = WeightNorm()
