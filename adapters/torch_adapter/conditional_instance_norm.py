"""conditional_instance_norm in PyTorch, composed: PyTorch has no conditional instance norm.

``F.instance_norm`` (input statistics, no affine) standardizes ``x``; each sample's rows are
gathered with ``weight[style]`` and ``bias[style]`` (advanced indexing, whose backward is an
``index_put_`` with ``accumulate=True``: the scatter-add of the spec, rows no sample selects get
0); ``y = x_hat * weight[style] + bias[style]`` with the rows broadcast over space. float16 and
bfloat16 are composed in float32 and rounded once (PyTorch's ``opmath`` convention inside its
normalization kernels). No statistics are returned: PyTorch exposes none here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._hyper import axis as _axis
from .._hyper import real as _float

API = ("composed (PyTorch has no conditional instance norm), in float32 for 16-bit dtypes: "
       "F.instance_norm without affine, then weight[style] and bias[style] gathered by "
       "indexing (its backward accumulates: the scatter-add); see "
       "adapters/torch_adapter/conditional_instance_norm.py")
"""What the report shows for this method."""


def conditional_instance_norm(t: Mapping[str, Tensor | None], hyper: Mapping[str, Any],
                              want_stats: bool) -> tuple[Tensor, dict[str, Tensor]]:
    """``(y, {})``; see the module docstring."""
    x, w, b, style = t.get("x"), t.get("weight"), t.get("bias"), t.get("style")
    if x is None or w is None or b is None or style is None:
        raise ValueError("argument 'inputs': expected 'x', the (S, C) tables 'weight' and "
                         "'bias', and the int64 'style'")
    dtype = x.dtype
    opmath = torch.promote_types(dtype, torch.float32)
    c = _axis(hyper, "channel_axis", x.dim(), default=1)
    xm = torch.movedim(x.to(opmath), c, 1)
    x_hat = F.instance_norm(xm, None, None, None, None, use_input_stats=True,
                            eps=_float(hyper, "eps"))
    index = style.to(torch.int64)
    view = (xm.shape[0], xm.shape[1]) + (1,) * (xm.dim() - 2)
    y = x_hat * w.to(opmath)[index].reshape(view) + b.to(opmath)[index].reshape(view)
    return torch.movedim(y, 1, c).to(dtype), {}
