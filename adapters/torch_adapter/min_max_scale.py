"""min_max_scale in PyTorch, composed: PyTorch has no fitted min-max scaler.

Fit (training): ``torch.amin``/``torch.amax`` over the reduction axes (their gradient splits
equally among tied extremes, the spec's subgradient); apply (evaluation): the given
``data_min`` and ``data_max``. Then ``r = where(hi - lo == 0, 1, hi - lo)``,
``y = a + (b - a) (x - lo) / r`` and, under ``clip``, ``torch.clamp(y, a, b)`` (slope 1 at the
ends, as the spec). In float32 for 16-bit inputs; the state is returned in float32 and taken
unrounded (see standardize.py for why). Every derivative is autograd's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .._hyper import real as _float
from .._hyper import required as _required
from .standardize import axes_of

API = ("composed: torch.amin and torch.amax over the reduction axes (fit) or the given "
       "data_min and data_max (apply), then a + (b - a) (x - min) / (max - min), divisor 1 for "
       "a constant feature, torch.clamp under clip")
"""What the report shows for this method: PyTorch has no fitted scaler."""


def min_max_scale(t: Mapping[str, Tensor | None], hyper: Mapping[str, Any],
                  want_stats: bool) -> tuple[Tensor, dict[str, Tensor]]:
    """``(y, statistics)``; see the module docstring."""
    from .methods import _x

    x = _x(t)
    dims = axes_of(hyper, x.dim())
    a, b = _float(hyper, "range_min"), _float(hyper, "range_max")
    if not a < b:
        raise ValueError(f"argument 'hyper['range_max']': got {b!r} with range_min={a!r}, "
                         "expected range_min < range_max")
    compute = torch.promote_types(x.dtype, torch.float32)
    xc = x.to(compute)
    keep = [1 if i in dims else s for i, s in enumerate(xc.shape)]
    training = bool(_required(hyper, "training"))
    if training:
        lo, hi = torch.amin(xc, dim=dims, keepdim=True), torch.amax(xc, dim=dims, keepdim=True)
    else:
        m, v = t.get("data_min"), t.get("data_max")
        if m is None or v is None:
            raise ValueError("argument 'inputs': got no fitted extremes, expected 'data_min' "
                             "and 'data_max' to apply (training=False)")
        lo, hi = m.to(compute).reshape(keep), v.to(compute).reshape(keep)
    span = hi - lo
    r = torch.where(span == 0, torch.ones_like(span), span)
    y = a + (b - a) * ((xc - lo) / r)
    if bool(_required(hyper, "clip")):
        y = torch.clamp(y, a, b)
    kept = [n for i, n in enumerate(xc.shape) if i not in dims]
    stats = ({"data_min": lo.reshape(kept), "data_max": hi.reshape(kept)}
             if want_stats and training else {})
    return y.to(x.dtype), stats
