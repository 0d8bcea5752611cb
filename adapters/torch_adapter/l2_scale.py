"""fix_norm in PyTorch, composed: PyTorch has no FixNorm layer; it is ``F.normalize`` times g.

``y = weight * F.normalize(x, p=2, dim=axis, eps=eps)``, with ``weight`` one scalar tensor
(an ``nn.Parameter`` of shape ``()`` in a model). ``F.normalize`` divides by
``norm.clamp_min(eps)``: the spec's floor, and ``clamp_min`` passes the gradient at
``norm == eps`` (the spec's unclamped branch). The statistic ``norm`` is not exposed by
``F.normalize`` and is left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor

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


TRANSLATIONS: dict[str, tuple[tuple[str, ...], str, Any]] = {
    "fix_norm": (("x", "weight"), FIX_NORM_API, fix_norm),
}
"""name -> (primals, api, run): the rows methods.py registers."""
COMPOSED = {"fix_norm": True}
