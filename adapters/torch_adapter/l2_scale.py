"""fix_norm and scale_norm in PyTorch, composed: PyTorch has neither layer.

fix_norm is ``F.normalize`` times g. scale_norm is written as a model writes ScaleNorm
(Nguyen and Salazar's code: ``x * (g / torch.norm(x, dim=-1, keepdim=True).clamp(min=eps))``)
with ONE ``nn.Parameter`` g handed to M module instances, one per index of ``x``'s module axis;
each instance is called through ``torch.func.functional_call`` with the tensor under test in
place of the shared parameter, so autograd sums g's gradient over the modules as it does in a
model. float16 and bfloat16 inputs are computed in float32 and ``y`` rounded once (the spec's
precision contract for compositions); the statistic ``norm`` is returned in the dtype under test.

``y = weight * F.normalize(x, p=2, dim=axis, eps=eps)``, with ``weight`` one scalar tensor
(an ``nn.Parameter`` of shape ``()`` in a model). ``F.normalize`` divides by
``norm.clamp_min(eps)``: the spec's floor, and ``clamp_min`` passes the gradient at
``norm == eps`` (the spec's unclamped branch). The statistic ``norm`` is not exposed by
``F.normalize`` and is left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from .._hyper import axis as _axis
from .._hyper import real as _float

FIX_NORM_API = ("composed (PyTorch has no FixNorm layer): weight * F.normalize(x, p=2, dim=axis, "
                "eps=eps), weight a 0-d tensor; see adapters/torch_adapter/l2_scale.py")
"""What the report shows for fix_norm."""


def _xw(t: Mapping[str, Tensor | None], method: str) -> tuple[Tensor, Tensor]:
    x, w = t.get("x"), t.get("weight")
    if x is None or w is None:
        raise ValueError(f"argument 'inputs': {method} needs 'x' and 'weight'")
    if w.dim() != 0:
        raise ValueError(f"argument 'weight': got shape {tuple(w.shape)}, expected shape ()")
    return x, w


def fix_norm(t: Mapping[str, Tensor | None], hyper: Mapping[str, Any], want_stats: bool
             ) -> tuple[Tensor, dict[str, Tensor]]:
    """``(weight * F.normalize(x, 2, axis, eps), {})``."""
    x, w = _xw(t, "fix_norm")
    dim = _axis(hyper, "axis", x.dim())
    return w * F.normalize(x, p=2.0, dim=dim, eps=_float(hyper, "eps")), {}


SCALE_NORM_API = ("composed (PyTorch has no ScaleNorm layer): M ScaleNorm modules sharing one "
                  "nn.Parameter g, each x * (g / torch.linalg.vector_norm(x, dim=-1)"
                  ".clamp(min=eps)) as the paper's code, called with torch.func.functional_call; "
                  "float32 for 16-bit inputs; see adapters/torch_adapter/l2_scale.py")
"""What the report shows for scale_norm."""


class ScaleNormModule(nn.Module):  # type: ignore[misc, unused-ignore]
    """One ScaleNorm module of a model; ``g`` is the model's shared parameter, not a copy."""

    def __init__(self, g: nn.Parameter, eps: float) -> None:
        super().__init__()
        self.g = g
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        norm = torch.linalg.vector_norm(x, 2, dim=-1, keepdim=True)
        out: Tensor = x * (self.g / norm.clamp(min=self.eps))
        return out


def scale_norm(t: Mapping[str, Tensor | None], hyper: Mapping[str, Any], want_stats: bool
               ) -> tuple[Tensor, dict[str, Tensor]]:
    """``(stack of the M modules' outputs, {"norm"})``."""
    x, w = _xw(t, "scale_norm")
    if x.dim() < 2:
        raise ValueError(f"argument 'x': got shape {tuple(x.shape)}, expected (M, ..., D)")
    out_dtype = x.dtype
    if x.dtype in (torch.float16, torch.bfloat16):
        x, w = x.float(), w.float()
    shared = nn.Parameter(torch.ones((), dtype=x.dtype, device=x.device))
    modules = [ScaleNormModule(shared, _float(hyper, "eps")) for _ in range(x.shape[0])]
    y = torch.stack([functional_call(mod, {"g": w}, (x[m],)) for m, mod in enumerate(modules)])
    if not want_stats:
        return y.to(out_dtype), {}
    norm = torch.linalg.vector_norm(x.detach(), 2, dim=-1)
    return y.to(out_dtype), {"norm": norm.to(out_dtype)}


UNIT_NORM_API = "torch.nn.functional.normalize"
"""unit_norm is PyTorch's own operator: ``F.normalize(x, p=2, dim=axis, eps=eps)``."""


def unit_norm(t: Mapping[str, Tensor | None], hyper: Mapping[str, Any], want_stats: bool
              ) -> tuple[Tensor, dict[str, Tensor]]:
    """``F.normalize(x, p=2, dim=axis, eps=eps)`` (nGPT's code: ``x / x.norm(p=2, dim=...)``)."""
    x = t.get("x")
    if x is None:
        raise ValueError("argument 'inputs': unit_norm needs 'x'")
    dim = _axis(hyper, "axis", x.dim())
    return F.normalize(x, p=2.0, dim=dim, eps=_float(hyper, "eps")), {}


TRANSLATIONS: dict[str, tuple[tuple[str, ...], str, Any]] = {
    "unit_norm": (("x",), UNIT_NORM_API, unit_norm),
    "fix_norm": (("x", "weight"), FIX_NORM_API, fix_norm),
    "scale_norm": (("x", "weight"), SCALE_NORM_API, scale_norm),
}
"""name -> (primals, api, run): the rows methods.py registers."""
COMPOSED = {"fix_norm": True, "scale_norm": True, "unit_norm": False}
