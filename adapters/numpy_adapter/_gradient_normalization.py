"""Gradient normalization: ``y = x``; the VJP is ``g / max(||g||_2, eps)`` over ``axis``.

The method is defined by its backward pass, so it has a forward and a VJP only (its JVP and
second order are declared not applicable by the spec and never called). The norm is a pairwise
sum of squares in the compute dtype (float32 for 16-bit dtypes), the squares taken of ``g``
divided by its row maximum (a power of two), so huge and tiny gradients neither overflow nor
underflow. Each numerical step is a method of :class:`GradNormSteps`; a mutant replaces one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._numerics import Numerics, hyper_value
from ._precision import Num, Precision, reduce_sum

_METHOD = "gradient_normalization"


class GradNormSteps:
    """The numerical steps of gradient_normalization, each replaceable by a mutant."""

    def gradnorm_forward(self, x: Num, axes: tuple[int, ...], eps: Any) -> Num:
        """The forward pass: the identity."""
        return x

    def gradnorm_axes(self, axes: tuple[int, ...], ndim: int) -> tuple[int, ...]:
        """The axes the gradient's norm runs over: those given."""
        return axes

    def gradnorm_divisor(self, norm: Num, eps: Any) -> Num:
        """``max(norm, eps)``: the floor, not ``norm + eps``."""
        out: Num = np.maximum(norm, eps)
        return out

    def gradnorm_backward(self, g: Num, divisor: Num) -> Num:
        """The gradient that leaves: ``g`` over its divisor."""
        return g / divisor


_DEFAULT = GradNormSteps()


def _steps(nx: Numerics) -> GradNormSteps:
    return nx if isinstance(nx, GradNormSteps) else _DEFAULT


def _axes(hyper: Mapping[str, Any], ndim: int) -> tuple[int, ...]:
    raw = hyper_value(hyper, "axis", _METHOD)
    if isinstance(raw, str):  # the catalogs' scalar form "1,2,3"
        raw = [int(part) for part in raw.split(",")]
    elif isinstance(raw, (int, np.integer)) and not isinstance(raw, bool):
        raw = [raw]
    if any(not -ndim <= int(q) < ndim for q in raw):
        raise ValueError(f"argument 'axis': got {raw!r}, expected axes of a {ndim}-d input")
    axes = tuple(sorted({int(q) % ndim for q in raw}))
    if not axes or len(axes) != len(raw):
        raise ValueError(f"argument 'axis': got {raw!r}, expected distinct axes")
    return axes


def _eps(prec: Precision, hyper: Mapping[str, Any]) -> Any:
    eps = float(hyper_value(hyper, "eps", _METHOD))
    if not eps >= 0.0:
        raise ValueError(f"argument 'eps': got {eps!r}, expected a number >= 0")
    return prec.scalar(eps)


def _norm(g: Num, axes: tuple[int, ...]) -> Num:
    """``||g||_2`` over ``axes`` (kept as size-1 axes), scaled by the row maximum."""
    top = np.max(np.abs(g), axis=axes, keepdims=True)
    ok = np.isfinite(top) & (top > 0)
    # a power of two: dividing by it is exact, and squares of g / scale lie in [2^-2, 1]
    scale = np.where(ok, np.exp2(np.floor(np.log2(np.where(ok, top, 1)))), 1).astype(g.dtype)
    u = g / scale
    norm: Num = np.sqrt(reduce_sum(u * u, axes)) * scale
    return norm


@dataclass(frozen=True)
class GradientNormalization:
    """The gradient_normalization method (see the module docstring)."""

    primals: tuple[str, ...] = ("x",)
    state: tuple[str, ...] = ()

    def forward(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                hyper: Mapping[str, Any]) -> dict[str, Num]:
        x = inputs["x"]
        assert x is not None
        return {"y": _steps(nx).gradnorm_forward(x, _axes(hyper, x.ndim), _eps(prec, hyper))}

    def vjp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], g: Num) -> dict[str, Num]:
        x = inputs["x"]
        assert x is not None
        steps = _steps(nx)
        axes = steps.gradnorm_axes(_axes(hyper, x.ndim), x.ndim)
        divisor = steps.gradnorm_divisor(_norm(g, axes), _eps(prec, hyper))
        return {"x": steps.gradnorm_backward(g, divisor)}

    def jvp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], t: Mapping[str, Num]) -> Num:
        raise NotImplementedError("gradient_normalization has no JVP: the spec declares it not "
                                  "applicable (the method is defined by its backward pass)")

    def second_order(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                     hyper: Mapping[str, Any], g: Num, t: Mapping[str, Num]
                     ) -> dict[str, Num]:
        raise NotImplementedError("gradient_normalization has no second order: the spec "
                                  "declares it not applicable (its VJP is nonlinear in g)")


GRADIENT_NORMALIZATION = GradientNormalization()
