"""qk_norm in PyTorch, composed: PyTorch has no QK-norm operator.

The translation is what model code writes (HF Qwen3/OLMo-2 attention, QKNorm's reference code)::

    l2:   qhat = F.normalize(q, p=2, dim=-1, eps=eps)           (max(||q||, eps), QKNorm)
    rms:  qhat = F.rms_norm(q, [Dh], q_weight, eps=eps)          (per head, weight (Dh,) shared)
          qhat = F.rms_norm(q_tokens, [H, Dh], q_weight, eps=eps) (hidden axes, OLMo-2)
    y = (logit_scale * gain) * torch.matmul(qhat, khat.transpose(-2, -1))

with ``(B, T, H, Dh)`` inputs transposed to ``(B, H, T, Dh)`` for the product (and, for the
hidden axes, ``(B, H, T, Dh)`` inputs to ``(B, T, H, Dh)`` for the norm). For float16 and
bfloat16 the composition runs in float32 and rounds ``y`` once, as fused attention kernels
accumulate the logits in float32. The statistics are ``qhat`` and ``khat``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._hyper import real as _float
from .._hyper import required as _required

API = ("composed: F.normalize(p=2, dim=-1) (l2) or F.rms_norm over [Dh] or [H, Dh] (rms) on "
       "q and k, then (logit_scale * gain) * torch.matmul(qhat, khat.mT); in float32 for "
       "16-bit inputs")
"""What the report shows for this method: PyTorch has no QK-norm operator."""


def _norm(a: Tensor, w: Tensor | None, rms: bool, hidden: bool, bthd: bool, eps: float
          ) -> Tensor:
    if not rms:
        return F.normalize(a, p=2.0, dim=-1, eps=eps)
    if not hidden:
        return F.rms_norm(a, [a.shape[-1]], w, eps=eps)
    tokens = a if bthd else a.transpose(1, 2)
    out = F.rms_norm(tokens, [tokens.shape[2], tokens.shape[3]], w, eps=eps)
    return out if bthd else out.transpose(1, 2)


def qk_norm(t: Mapping[str, Tensor | None], hyper: Mapping[str, Any],
            want_stats: bool) -> tuple[Tensor, dict[str, Tensor]]:
    """``(y, statistics)``, rounded once to x's dtype; see the module docstring."""
    from .methods import _x

    q = _x(t)
    k = t.get("k")
    if k is None:
        raise ValueError("argument 'inputs': got no 'k', expected the keys")
    variant, layout = _required(hyper, "variant"), _required(hyper, "layout")
    norm_axes = _required(hyper, "norm_axes")
    if variant not in ("l2", "rms") or layout not in ("bhtd", "bthd") or \
            norm_axes not in ("head", "hidden"):
        raise ValueError(f"argument 'hyper': got variant={variant!r}, layout={layout!r}, "
                         f"norm_axes={norm_axes!r}")
    eps, c = _float(hyper, "eps"), _float(hyper, "logit_scale")
    compute = torch.promote_types(q.dtype, torch.float32)
    rms, hidden, bthd = variant == "rms", norm_axes == "hidden", layout == "bthd"

    def cast(v: Tensor | None) -> Tensor | None:
        return None if v is None else v.to(compute)

    qhat = _norm(q.to(compute), cast(t.get("q_weight")), rms, hidden, bthd, eps)
    khat = _norm(k.to(compute), cast(t.get("k_weight")), rms, hidden, bthd, eps)
    qb, kb = (qhat.transpose(1, 2), khat.transpose(1, 2)) if bthd else (qhat, khat)
    gain = cast(t.get("gain"))
    factor: Tensor | float = c if gain is None else c * gain
    y = (factor * torch.matmul(qb, kb.transpose(-2, -1))).to(q.dtype)
    if not want_stats:
        return y, {}
    return y, {"q_hat": qhat.to(q.dtype), "k_hat": khat.to(q.dtype)}
