"""power_norm in PyTorch, composed: PyTorch has no power-mean normalization (p != 2).

``p = 2`` is ``F.rms_norm`` (plus the bias, which PyTorch's RMSNorm lacks). Otherwise, over
the trailing axes ``axis..ndim-1``, in the dtype under test (float32 for 16-bit inputs, ``y``
rounded once, the opmath rule of PyTorch's own norm kernels)::

    s   = 2^e near amax(|x|)               (detached: the result does not depend on s)
    v   = x / s                            (exact)
    phi = where(v == 0, 0, where(v == 0, 1, |v|) ** p)
    q   = (mean(phi) + eps s^-p)^(-1/p)    where s >= 1 or eps == 0
        = s (s^p mean(phi) + eps)^(-1/p)   elsewhere
    y   = v q weight + bias

Scaling by ``s`` keeps ``|v|^p`` inside float32 for every input (``|x|^4`` of ``1e15`` does
not fit it). The double ``where`` gives ``phi`` derivatives 0 at ``v = 0`` in every order, the
spec's convention: ``|v| ** p`` alone has autograd derivative ``p |v|^(p-1) sign(v) = inf * 0
= NaN`` at 0 for ``p < 1`` (and ``NaN`` second derivatives for ``p < 2``). The statistics
``mean_power = s^p mean(phi)`` and ``rscale = q / s`` are returned in the compute type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._hyper import axis as _axis
from .._hyper import real as _float

API = ("composed (PyTorch has no power normalization): |x / s|^p with a double torch.where "
       "(derivative 0 at x = 0), torch.mean, pow(-1/p), s = 2^e near amax(|x|) detached; "
       "F.rms_norm for p = 2; the bias added; float32 for 16-bit inputs; see "
       "adapters/torch_adapter/power_norm.py")
"""What the report shows for this method."""


def power_norm(t: Mapping[str, Tensor | None], hyper: Mapping[str, Any],
               want_stats: bool) -> tuple[Tensor, dict[str, Tensor]]:
    """``(y, {"mean_power", "rscale"})`` (no statistics at p = 2); see the module docstring."""
    x, w, b = t.get("x"), t.get("weight"), t.get("bias")
    if x is None:
        raise ValueError("argument 'inputs': got no 'x', expected the input array under 'x'")
    axis = _axis(hyper, "axis", x.dim())
    p, eps = _float(hyper, "p"), _float(hyper, "eps")
    if not 0.0 < p < float("inf"):
        raise ValueError(f"argument 'p': got {p!r}, expected a finite number > 0")
    if p == 2.0:
        y = F.rms_norm(x, list(x.shape[axis:]), w, eps=eps)
        return (y if b is None else y + b), {}
    out_dtype = x.dtype
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
        w = None if w is None else w.float()
        b = None if b is None else b.float()
    dims = tuple(range(axis, x.dim()))
    peak = x.detach().abs().amax(dim=dims, keepdim=True)
    _, e = torch.frexp(torch.where(peak > 0, peak, torch.ones_like(peak)))
    s = torch.ldexp(torch.ones_like(peak), e)
    v = x / s
    zero = v == 0
    safe = torch.where(zero, torch.ones_like(v), v.abs())
    phi = torch.where(zero, torch.zeros_like(v), safe ** p)
    mean = phi.mean(dim=dims, keepdim=True)
    wide = (s >= 1) | (eps == 0.0)
    one = torch.ones_like(s)
    # each branch sees a harmless s where the other is selected: torch.where passes a zero
    # cotangent to the unselected branch, and 0 times an infinite local derivative is NaN
    s_wide, s_narrow = torch.where(wide, s, one), torch.where(wide, one, s)
    scaled_eps = eps * s_wide ** (-p) if eps > 0 else torch.zeros_like(s)
    q_wide = (mean + scaled_eps) ** (-1.0 / p)
    r_narrow = (s_narrow ** p * mean + eps) ** (-1.0 / p)
    q = torch.where(wide, q_wide, r_narrow * s)
    y = v * q
    if eps == 0.0:
        # a zero set without eps is 0 * inf: NaN in y and, as the spec says, in every
        # derivative (the guarded phi alone would give the derivative g * inf there)
        nan = torch.full_like(s, float("nan"))
        y = y * torch.where(mean == 0, nan, one).detach()
    if w is not None:
        y = y * w
    if b is not None:
        y = y + b
    if not want_stats:
        return y.to(out_dtype), {}
    lead = x.shape[:axis]
    return y.to(out_dtype), {"mean_power": (mean * s ** p).reshape(lead),
                             "rscale": (q / s).reshape(lead)}
