"""gradient_normalization in PyTorch, composed: PyTorch has no gradient-normalization operator.

A ``torch.autograd.Function`` whose forward is the identity (a copy of ``x``) and whose backward
returns the incoming gradient normalized over the given axes::

    grad_x = F.normalize(g, p=2, dim=axes, eps=eps)      # g / max(||g||_2, eps)

``F.normalize`` accepts a tuple of dims and computes ``input / input.norm(p, dim,
keepdim=True).clamp_min(eps)`` (torch 2.13.0, torch/nn/functional.py): the spec's floor, not
eps added to the norm. float16 and bfloat16 gradients are normalized in float32 and rounded once,
the spec's precision contract for every composition. The backward is not differentiable
(``once_differentiable``): the method has no second order (its reference module declares it
not applicable).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from .._hyper import real as _float

API = ("composed (PyTorch has no gradient normalization): a torch.autograd.Function with the "
       "identity forward and F.normalize(g, p=2, dim=axes, eps) as its backward; see "
       "adapters/torch_adapter/gradient_normalization.py; float32 for 16-bit gradients")
"""What the report shows for this method."""

_HALF = (torch.float16, torch.bfloat16)


def axes_of(hyper: Mapping[str, Any], ndim: int) -> tuple[int, ...]:
    """The normalized axes from ``hyper["axis"]``: an int, a list or a string such as "1,2"."""
    raw = hyper.get("axis")
    if raw is None:
        raise ValueError("argument 'axis': missing, expected the normalized axes")
    items = ([int(a) for a in raw.split(",")] if isinstance(raw, str)
             else [raw] if isinstance(raw, int) else list(raw))
    axes = []
    for a in items:
        if not -ndim <= int(a) < ndim:
            raise ValueError(f"argument 'axis': got {raw!r}, expected axes of a {ndim}-d input")
        axes.append(int(a) % ndim)
    if not axes or len(set(axes)) != len(axes):
        raise ValueError(f"argument 'axis': got {raw!r}, expected distinct axes")
    return tuple(sorted(axes))


class GradientNormalization(torch.autograd.Function):  # type: ignore[misc, unused-ignore]
    """Identity forward; the gradient normalized to unit L2 norm over ``axes`` backward."""

    @staticmethod
    def forward(x: Tensor, axes: tuple[int, ...], eps: float) -> Tensor:  # type: ignore[override, unused-ignore]
        return x.clone()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        _, ctx.axes, ctx.eps = inputs

    @staticmethod
    @once_differentiable  # type: ignore[untyped-decorator, unused-ignore]
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override, unused-ignore]
        wide = g.float() if g.dtype in _HALF else g
        out = F.normalize(wide, p=2.0, dim=ctx.axes, eps=ctx.eps)
        return out.to(g.dtype), None, None


def gradient_normalization(t: Mapping[str, Tensor | None], hyper: Mapping[str, Any],
                           want_stats: bool) -> tuple[Tensor, dict[str, Tensor]]:
    """``(y, {})`` with ``y = x`` whose backward normalizes the gradient."""
    x = t.get("x")
    if x is None:
        raise ValueError("argument 'inputs': got no 'x', expected the input array under 'x'")
    eps = _float(hyper, "eps")
    if not eps >= 0.0:
        raise ValueError(f"argument 'eps': got {eps!r}, expected a number >= 0")
    y = GradientNormalization.apply(x, axes_of(hyper, x.dim()), eps)
    assert isinstance(y, Tensor)
    return y, {}
