"""mixed_eval_batch_norm in PyTorch, composed: PyTorch has no alpha-mixed evaluation.

With the channel axis moved to 1 and ``dims`` every other axis::

    mean_b, var_b = torch.mean(x, dims), torch.var(x, dims, correction=0)
    mean = alpha * mean_b + (1 - alpha) * running_mean
    var  = alpha * var_b + (1 - alpha) * running_var + alpha (1 - alpha) (mean_b - running_mean)^2
    y = (x - mean) / torch.sqrt(var + eps) * weight + bias

``F.batch_norm`` cannot take the mixed statistics: in evaluation it treats ``running_mean`` and
``running_var`` as constants (no gradient reaches them), and the batch part must carry the
gradient. For float16 and bfloat16 the composition runs in float32 and rounds ``y`` once, as
PyTorch's own normalization kernels do in their opmath type; autograd differentiates through
the casts. Every derivative is autograd's; the running statistics stay constants.

Two choices a composition must make, both measured on torch 2.13.0 (CPU):

* ``torch.mean``, not the mean of ``torch.var_mean``: the latter's Welford update returns NaN
  for a channel holding an infinity, where the spec's mean (and ``torch.mean``) is +-inf.
* Division by ``torch.sqrt(var + eps)``, not multiplication by ``torch.rsqrt``: autograd
  differentiates ``rsqrt(v)`` as ``-v^(-3/2) / 2``, which underflows float32 for a variance
  near 1e30 (inputs near 1e15, the catalog's ``huge`` scale): the input gradient then loses
  every digit. Dividing keeps each backward factor in range.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .._hyper import axis as _axis
from .._hyper import real as _float

API = ("composed: torch.mean and torch.var(correction=0) batch statistics mixed with the "
       "running ones (alpha weights the batch; the variance of the mixture), then (x - mean) / "
       "torch.sqrt(var + eps) * weight + bias, in float32 for 16-bit inputs")
"""What the report shows for this method: PyTorch has no mixed-statistics evaluation."""


def _alpha(hyper: Mapping[str, Any]) -> float:
    a = _float(hyper, "alpha")
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"argument 'hyper['alpha']': got {a!r}, expected a number in [0, 1]")
    return a


def mixed_eval_batch_norm(t: Mapping[str, Tensor | None], hyper: Mapping[str, Any],
                          want_stats: bool) -> tuple[Tensor, dict[str, Tensor]]:
    """``(y, statistics)`` (in the compute dtype); see the module docstring."""
    from .methods import _x

    x = _x(t)
    c = _axis(hyper, "channel_axis", x.dim(), default=1)
    eps, a = _float(hyper, "eps"), _alpha(hyper)
    rm, rv = t.get("running_mean"), t.get("running_var")
    if rm is None or rv is None:
        raise ValueError("argument 'inputs': got no running statistics, expected "
                         "'running_mean' and 'running_var'")
    compute = torch.promote_types(x.dtype, torch.float32)
    xm = torch.movedim(x, c, 1).to(compute)
    dims = tuple(i for i in range(xm.dim()) if i != 1)
    view = [1] * xm.dim()
    view[1] = xm.shape[1]
    mean_b, var_b = torch.mean(xm, dim=dims), torch.var(xm, dim=dims, correction=0)
    rmc, rvc = rm.to(compute), rv.to(compute)
    gap = mean_b - rmc
    mean = a * mean_b + (1.0 - a) * rmc
    var = a * var_b + (1.0 - a) * rvc + (a * (1.0 - a)) * (gap * gap)
    std = torch.sqrt(var + eps)
    y = (xm - mean.reshape(view)) / std.reshape(view)
    w, b = t.get("weight"), t.get("bias")
    if w is not None:
        y = y * w.to(compute).reshape(view)
    if b is not None:
        y = y + b.to(compute).reshape(view)
    stats = ({"mean": mean, "var": var, "rstd": 1.0 / std, "batch_mean": mean_b,
              "batch_var": var_b} if want_stats else {})
    return torch.movedim(y.to(x.dtype), 1, c), stats
