"""standardize in PyTorch, composed: PyTorch has no fitted feature scaler.

Fit (training) with ``dims`` the reduction axes, in float32 for 16-bit inputs::

    mean = torch.mean(x, dims);  var = torch.var(x, dims, correction=ddof)
    y = (x - mean) / s(var),  s = sqrt(var + eps) (inside) or sqrt(var) + eps (outside)

and ``s = 1`` where ``var == 0`` under ``zero_variance="unit_scale"``. Apply (evaluation) reads
the given ``mean`` and ``var``. Every derivative is autograd's. Three choices a composition
must make:

* Constant features are found exactly (``amax == amin``) and get their value as mean and a
  zero variance: a rounded mean can miss the constant by an ulp and leave ``y = +-1`` where
  the spec has 0. The mean keeps ``torch.mean``'s gradient (``amax`` only lends its value).
* ``sqrt`` of the variance through a double ``torch.where``: autograd's ``sqrt`` at 0 gives
  ``0 * inf = NaN`` even in an unselected branch, where the spec's derivative at a constant
  feature is finite (``(I - 11/n) / eps`` outside, ``I - 11/n`` for a unit scale).
* Division by the denominator, not a product with ``rsqrt`` (its derivative underflows float32
  at the catalog's huge scale).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .._hyper import real as _float
from .._hyper import required as _required

API = ("composed: torch.mean and torch.var(correction=ddof) over the reduction axes (fit) or "
       "the given mean and var (apply), then (x - mean) / sqrt(var + eps) or "
       "/ (sqrt(var) + eps), scale 1 for constant features under unit_scale")
"""What the report shows for this method: PyTorch has no fitted scaler."""


def axes_of(hyper: Mapping[str, Any], ndim: int) -> tuple[int, ...]:
    """The reduction axes from an int, a list or the catalogs' string ``"0,2,3"``."""
    raw = _required(hyper, "axis")
    if isinstance(raw, str):
        raw = [int(part) for part in raw.split(",")]
    elif isinstance(raw, int) and not isinstance(raw, bool):
        raw = [raw]
    axes = sorted({int(a) % ndim for a in raw})
    if not axes or len(axes) != len(raw):
        raise ValueError(f"argument 'hyper['axis']': got {raw!r}, expected distinct axes")
    return tuple(axes)


def _choice(hyper: Mapping[str, Any], name: str, choices: tuple[str, str]) -> bool:
    """Whether ``hyper[name]`` is the first of ``choices``."""
    value = _required(hyper, name)
    if value not in choices:
        raise ValueError(f"argument 'hyper[{name!r}]': got {value!r}, expected one of "
                         f"{list(choices)}")
    return bool(value == choices[0])


def standardize(t: Mapping[str, Tensor | None], hyper: Mapping[str, Any],
                want_stats: bool) -> tuple[Tensor, dict[str, Tensor]]:
    """``(y, statistics)``; see the module docstring."""
    from .methods import _x

    x = _x(t)
    dims = axes_of(hyper, x.dim())
    ddof = _required(hyper, "ddof")
    if ddof not in (0, 1) or isinstance(ddof, bool):
        raise ValueError(f"argument 'hyper['ddof']': got {ddof!r}, expected 0 or 1")
    eps = _float(hyper, "eps")
    inside = _choice(hyper, "eps_placement", ("inside_sqrt", "outside_sqrt"))
    unit = not _choice(hyper, "zero_variance", ("ieee", "unit_scale"))
    compute = torch.promote_types(x.dtype, torch.float32)
    xc = x.to(compute)
    keep = [1 if i in dims else s for i, s in enumerate(xc.shape)]
    if bool(_required(hyper, "training")):
        mean = torch.mean(xc, dim=dims, keepdim=True)
        var = torch.var(xc, dim=dims, correction=int(ddof), keepdim=True)
        hi, lo = torch.amax(xc, dim=dims, keepdim=True), torch.amin(xc, dim=dims, keepdim=True)
        const = hi == lo
        mean = torch.where(const, hi.detach() + (mean - mean.detach()), mean)
        var = torch.where(const, torch.zeros_like(var), var)
    else:
        m, v = t.get("mean"), t.get("var")
        if m is None or v is None:
            raise ValueError("argument 'inputs': got no fitted statistics, expected 'mean' and "
                             "'var' to apply (training=False)")
        mean, var = m.to(compute).reshape(keep), v.to(compute).reshape(keep)
    flat = (var == 0) if unit else torch.zeros_like(var, dtype=torch.bool)
    one = torch.ones_like(var)
    if inside:
        s = torch.sqrt(torch.where(flat, one, var + eps))
    else:
        pos = ~(var == 0)   # NaN stays on the sqrt branch and propagates
        s = torch.where(pos, torch.sqrt(torch.where(pos, var, one)), torch.zeros_like(var)) + eps
    s = torch.where(flat, one, s)
    y = (xc - mean) / s
    kept = [n for i, n in enumerate(xc.shape) if i not in dims]
    stats = ({"mean": mean.reshape(kept), "var": var.reshape(kept), "rstd": (1.0 / s).reshape(kept)}
             if want_stats and bool(hyper["training"]) else {})
    return y.to(x.dtype), stats
