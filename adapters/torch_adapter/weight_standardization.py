"""weight_standardization in PyTorch, composed: PyTorch has no weight-standardization operator.

Composed the way Big Transfer's ``StdConv2d`` writes it, generalised to any kept (output
channel) axis, in the dtype under test::

    var, mean = torch.var_mean(w, dim=others, keepdim=True, correction=0)   # biased
    y = (w - mean) / torch.sqrt(var + eps)

timm's ``StdConv2d`` computes the same through ``F.batch_norm`` on the ``(1, O, n)`` view (its
training-mode batch statistics are biased too). float16 and bfloat16 inputs are computed in
float32 and ``y`` rounded once, as the spec's precision contract asks of every composition.
The statistics are returned in the dtype under test, shape ``(O,)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .._hyper import axis as _axis
from .._hyper import real as _float

API = ("composed (PyTorch has no weight standardization): torch.var_mean(correction=0) over "
       "every axis but kept_axis and (w - mean) / torch.sqrt(var + eps), as Big Transfer's "
       "StdConv2d writes it; float32 for 16-bit inputs; see "
       "adapters/torch_adapter/weight_standardization.py")
"""What the report shows for this method."""


def weight_standardization(t: Mapping[str, Tensor | None], hyper: Mapping[str, Any],
                           want_stats: bool) -> tuple[Tensor, dict[str, Tensor]]:
    """``(y, {"mean", "var", "rstd"})``; see the module docstring."""
    x = t.get("x")
    if x is None:
        raise ValueError("argument 'inputs': weight_standardization needs 'x' (the weight)")
    k = _axis(hyper, "kept_axis", x.dim())
    others = [i for i in range(x.dim()) if i != k]
    out_dtype = x.dtype
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    var, mean = torch.var_mean(x, dim=others, keepdim=True, correction=0)
    std = torch.sqrt(var + _float(hyper, "eps"))
    y = ((x - mean) / std).to(out_dtype)
    if not want_stats:
        return y, {}
    flat = (x.shape[k],)
    return y, {"mean": mean.reshape(flat).to(out_dtype), "var": var.reshape(flat).to(out_dtype),
               "rstd": (1.0 / std).reshape(flat).to(out_dtype)}
