"""adaptive_instance_norm in PyTorch, composed: PyTorch has no AdaIN operator.

The content is standardized by ``F.instance_norm`` (input statistics, biased variance, eps
inside the square root). For ``variance_estimator="unbiased"`` the exact identity::

    (x - mean) / sqrt(M2/(n-1) + eps) = sqrt((n-1)/n) * (x - mean) / sqrt(M2/n + eps (n-1)/n)

turns it into the unbiased standardization: ``F.instance_norm`` with eps ``eps (n-1)/n``, times
``sqrt((n-1)/n)``. The style's statistics come from ``torch.mean`` and ``torch.var`` (with
``correction`` 1 or 0) over the spatial axes, ``std = torch.sqrt(var + eps)``, as the paper's
PyTorch port computes them. Gradients reach both inputs through autograd. No statistics are
returned: PyTorch exposes none of its own here.

float16 and bfloat16 inputs are composed in float32 and ``y`` is rounded once to the dtype: that
is PyTorch's own convention for these types inside its normalization kernels (the ``opmath``
type), which a composition of separate operators would otherwise lose at every intermediate
(``torch.mean`` and ``torch.var`` of a half tensor return half values, so an offset style loses
its spread and a huge one overflows in the square).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._hyper import axis as _axis
from .._hyper import real as _float
from .._hyper import required as _required

API = ("composed (PyTorch has no AdaIN), in float32 for 16-bit dtypes: F.instance_norm for the "
       "content (eps (n-1)/n and a factor sqrt((n-1)/n) for the unbiased estimator), "
       "torch.mean/torch.var(correction) and torch.sqrt(var + eps) for the style; see "
       "adapters/torch_adapter/adaptive_instance_norm.py")
"""What the report shows for this method."""


def _estimator(hyper: Mapping[str, Any]) -> str:
    est = _required(hyper, "variance_estimator")
    if est not in ("biased", "unbiased"):
        raise ValueError(f"argument 'hyper['variance_estimator']': got {est!r}, expected "
                         "'biased' or 'unbiased'")
    return str(est)


def adaptive_instance_norm(t: Mapping[str, Tensor | None], hyper: Mapping[str, Any],
                           want_stats: bool) -> tuple[Tensor, dict[str, Tensor]]:
    """``(y, {})``; see the module docstring."""
    x, style = t.get("x"), t.get("style")
    if x is None or style is None:
        raise ValueError("argument 'inputs': expected both 'x' and 'style'")
    dtype = x.dtype
    opmath = torch.promote_types(dtype, torch.float32)
    x, style = x.to(opmath), style.to(opmath)
    c = _axis(hyper, "channel_axis", x.dim(), default=1)
    cs = _axis(hyper, "channel_axis", style.dim(), default=1)
    eps = _float(hyper, "eps")
    unbiased = _estimator(hyper) == "unbiased"
    xm = torch.movedim(x, c, 1)
    n = math.prod(xm.shape[2:])
    if unbiased:
        k = (n - 1) / n
        x_hat = F.instance_norm(xm, None, None, None, None, use_input_stats=True, eps=eps * k)
        x_hat = x_hat * math.sqrt(k)
    else:
        x_hat = F.instance_norm(xm, None, None, None, None, use_input_stats=True, eps=eps)
    sm = torch.movedim(style, cs, 1)
    spatial = tuple(range(2, sm.dim()))
    s_mean = torch.mean(sm, dim=spatial, keepdim=True)
    s_var = torch.var(sm, dim=spatial, correction=1 if unbiased else 0, keepdim=True)
    s_std = torch.sqrt(s_var + eps)
    view = (xm.shape[0], xm.shape[1]) + (1,) * (xm.dim() - 2)
    y = x_hat * s_std.reshape(view) + s_mean.reshape(view)
    return torch.movedim(y, 1, c).to(dtype), {}
