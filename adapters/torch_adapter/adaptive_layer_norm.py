"""adaptive_layer_norm in PyTorch, composed: PyTorch has no adaLN operator.

DiT's and diffusers' modules are compositions of the same primitives, which this translation
uses in DiT's order::

    u = F.silu(cond)                       (activation "silu"; cond itself for "none")
    m = F.linear(u, weight.T, bias)        (weight is (K, P*D) in the spec, (P*D, K) in torch)
    shift, scale[, gate] = m.chunk(P, dim=1)
    z = F.layer_norm(x, [D], eps=eps)      (no affine)
    y = z * (1 + scale[:, None]) + shift[:, None]         (then gate[:, None] * y when gated)

For float16 and bfloat16 the composition runs in float32 and rounds ``y`` once, as PyTorch's own
normalization kernels do in their opmath type; autograd differentiates through the casts. The
statistics are ``torch.native_layer_norm``'s ``mean`` and ``rstd`` and the chunks of ``m``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._hyper import real as _float
from .._hyper import required as _required

API = ("composed: F.silu(cond), F.linear(u, weight.T, bias).chunk(P, 1) into (shift, scale, "
       "gate) as DiT, F.layer_norm(x, [D]) without affine, z * (1 + scale) + shift, times the "
       "gate when gated; in float32 for 16-bit inputs")
"""What the report shows for this method: PyTorch has no adaptive layer norm."""


def adaptive_layer_norm(t: Mapping[str, Tensor | None], hyper: Mapping[str, Any],
                        want_stats: bool) -> tuple[Tensor, dict[str, Tensor]]:
    """``(y, statistics)``, rounded once to x's dtype; see the module docstring."""
    from .methods import _x

    x = _x(t)
    cond, weight, bias = t.get("cond"), t.get("weight"), t.get("bias")
    if cond is None or weight is None:
        raise ValueError("argument 'inputs': got no 'cond' or 'weight', expected both")
    gated = _required(hyper, "gated")
    activation = _required(hyper, "activation")
    if not isinstance(gated, bool) or activation not in ("silu", "none"):
        raise ValueError(f"argument 'hyper': got gated={gated!r}, activation={activation!r}, "
                         "expected a bool and 'silu' or 'none'")
    eps = _float(hyper, "eps")
    compute = torch.promote_types(x.dtype, torch.float32)
    xc, cc, wc = x.to(compute), cond.to(compute), weight.to(compute)
    u = F.silu(cc) if activation == "silu" else cc
    m = F.linear(u, wc.T, None if bias is None else bias.to(compute))
    chunks = m.chunk(3 if gated else 2, dim=1)
    view = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
    shift, scale = chunks[0].reshape(view), chunks[1].reshape(view)
    d = x.shape[-1]
    y = F.layer_norm(xc, [d], eps=eps) * (1 + scale) + shift
    if gated:
        y = chunks[2].reshape(view) * y
    y = y.to(x.dtype)  # rounded once to the dtype under test; autograd runs through the cast
    if not want_stats:
        return y, {}
    _, mean, rstd = torch.native_layer_norm(xc, [d], None, None, eps)
    lead = x.shape[:-1]
    stats = {"mean": mean.reshape(lead), "rstd": rstd.reshape(lead), "shift": chunks[0],
             "scale": chunks[1]}
    if gated:
        stats["gate"] = chunks[2]
    return y, {k: v.to(x.dtype) for k, v in stats.items()}
