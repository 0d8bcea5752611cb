"""local_contrast_norm in PyTorch, composed (PyTorch has no local contrast normalization).

Composed from framework primitives: the channel mean, a zero-padded Gaussian convolution with
``F.conv1d/2d/3d`` (separable: one ``k``-tap pass per spatial axis, 1 to 3 spatial axes), the
border renormalized by the same convolution of a ones map, ``torch.sqrt`` and
``torch.maximum`` (whose backward splits a tie 1/2-1/2, the spec's convention). 16-bit inputs
are computed in float32 and ``y`` rounded once. ``torch.sqrt``'s backward at 0 is
``grad / 0``: where sigma is 0 the gradient is NaN, not the spec's 0 (unregistered; to ledger).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._hyper import axis as _axis

API = ("composed (PyTorch has no local contrast normalization): channel mean, separable "
       "Gaussian F.conv{1,2,3}d with zero padding (renormalized by the convolution of ones), "
       "torch.sqrt, torch.maximum; see adapters/torch_adapter/local_contrast_norm.py")

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _smooth(u: Tensor, taps: Tensor) -> Tensor:
    """Zero-padded 'same' convolution of ``u`` (N, 1, *spatial) along every spatial axis."""
    dims = u.dim() - 2
    conv = _CONV[dims]
    k = taps.numel()
    for axis in range(dims):
        shape = [1, 1] + [k if i == axis else 1 for i in range(dims)]
        pad = [(k - 1) // 2 if i == axis else 0 for i in range(dims)]
        u = conv(u, taps.reshape(shape), padding=pad)
    return u


def local_contrast_norm(t: Mapping[str, Tensor | None], hyper: Mapping[str, Any],
                        want_stats: bool) -> tuple[Tensor, dict[str, Tensor]]:
    """``(y, {"sigma", "floor"})``; see the module docstring."""
    x = t.get("x")
    if x is None:
        raise ValueError("argument 'inputs': got no 'x'")
    out_dtype = x.dtype
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    c = _axis(hyper, "channel_axis", x.dim())
    xm = torch.movedim(x, c, 1)
    k, s = int(hyper["kernel_size"]), float(hyper["window_sigma"])
    grid = torch.arange(k, dtype=x.dtype) - (k - 1) / 2
    taps = torch.exp(-(grid * grid) / (2 * s * s))
    taps = taps / taps.sum()
    ones = torch.ones((1, 1, *xm.shape[2:]), dtype=x.dtype)
    mass = _smooth(ones, taps)
    renorm = hyper["border"] == "renormalize"

    def window(u: Tensor) -> Tensor:
        out = _smooth(u, taps)
        return out / mass if renorm else out

    v = xm - window(xm.mean(dim=1, keepdim=True))
    sigma = torch.sqrt(window((v * v).mean(dim=1, keepdim=True)))
    spatial = tuple(range(2, xm.dim()))
    floor_h = hyper["divisor_floor"]
    floor = (sigma.mean(dim=spatial, keepdim=True) if isinstance(floor_h, str)
             else torch.full((xm.shape[0], 1, *[1] * len(spatial)), float(floor_h),
                             dtype=x.dtype))
    y = torch.movedim(v / torch.maximum(floor, sigma), 1, c).to(out_dtype)
    if not want_stats:
        return y, {}
    return y, {"sigma": sigma[:, 0].to(out_dtype), "floor": floor.reshape(-1).to(out_dtype)}
