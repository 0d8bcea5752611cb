"""global_response_norm in PyTorch, composed: PyTorch has no GRN operator.

Composed the way the ConvNeXt-V2 code (``models/utils.py``, class ``GRN``) and timm's
``GlobalResponseNorm`` write it, generalised to any channel axis and any number of spatial
axes, in the dtype under test::

    gx = torch.linalg.vector_norm(x, 2, dim=spatial, keepdim=True)   # what torch.norm calls
    nx = gx / (gx.mean(dim=channel, keepdim=True) + eps)
    y  = weight * (x * nx) + bias + x

``vector_norm``'s backward is 0 at a zero vector (it masks ``norm == 0``), the spec's
subgradient, so a zero channel needs no guard. The statistics gx and nx are returned (N, C).
float16 and bfloat16 inputs are computed in float32 and ``y`` rounded once, as the spec's
precision contract asks of every composition (PyTorch's own kernels use that opmath type).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .._hyper import axis as _axis
from .._hyper import real as _float

API = ("composed (PyTorch has no GRN operator): torch.linalg.vector_norm over the spatial "
       "axes, its channel mean plus eps, weight * (x * nx) + bias + x, as the ConvNeXt-V2 code "
       "and timm's GlobalResponseNorm write it; see adapters/torch_adapter/"
       "global_response_norm.py; float32 for 16-bit inputs")
"""What the report shows for this method."""


def global_response_norm(t: Mapping[str, Tensor | None], hyper: Mapping[str, Any],
                         want_stats: bool) -> tuple[Tensor, dict[str, Tensor]]:
    """``(y, {"gx", "nx"})``; see the module docstring."""
    x, w, b = t.get("x"), t.get("weight"), t.get("bias")
    if x is None or w is None or b is None:
        raise ValueError("argument 'inputs': global_response_norm needs 'x', 'weight' and 'bias'")
    c = _axis(hyper, "channel_axis", x.dim())
    if c == 0:
        raise ValueError("argument 'channel_axis': got the batch axis 0, expected another axis")
    spatial = [i for i in range(1, x.dim()) if i != c]
    view = [1] * x.dim()
    view[c] = -1
    out_dtype = x.dtype
    if x.dtype in (torch.float16, torch.bfloat16):
        # the spec's precision contract: 16-bit inputs are computed in float32 and y rounded
        # once (in half, vector_norm's autograd formulas square and divide in half and leave
        # its range for |x| ~ 300 or 1e-3)
        x, w, b = x.float(), w.float(), b.float()
    gx = torch.linalg.vector_norm(x, 2, dim=spatial, keepdim=True)
    nx = gx / (gx.mean(dim=c, keepdim=True) + _float(hyper, "eps"))
    y = (w.view(view) * (x * nx) + b.view(view) + x).to(out_dtype)
    if not want_stats:
        return y, {}
    shape = (x.shape[0], x.shape[c])
    # the statistics in the dtype under test, as PyTorch's own norm layers return theirs
    return y, {"gx": torch.movedim(gx, c, 1).reshape(shape).to(out_dtype),
               "nx": torch.movedim(nx, c, 1).reshape(shape).to(out_dtype)}
