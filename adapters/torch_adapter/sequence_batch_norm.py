"""sequence_batch_norm in PyTorch, which has no masked batch norm: a labelled composition.

* ``statistics="sequence"``: the valid frames ``x[mask]`` (shape ``(M, C)``, the layout of
  ``PackedSequence.data``) go through ``torch.nn.functional.batch_norm``, and the result is
  scattered back with zeros at the padding, which is what ``pack_padded_sequence`` ->
  ``nn.BatchNorm1d`` -> ``pad_packed_sequence`` computes (that route itself refuses
  zero-length sequences). Torch's kernel computes the statistics, the normalization and, for
  ``running_var_estimator="unbiased"``, the running update with ``n = M``;
  ``batch_stat_weight`` is PyTorch's momentum (the cumulative factor ``1/(k+1)`` is passed as
  that step's momentum, as ``nn.BatchNorm`` does with ``momentum=None``). The biased update is
  composed from ``torch.var_mean(correction=0)``. A batch without valid frames is not sent to
  torch (``y = 0``, state unchanged); one valid frame in training is refused by torch
  ("Expected more than 1 value per channel when training"), as for batch_norm.
* ``statistics="frame"``: no torch operator normalizes per time step, so the statistics are
  masked sums over the batch axis (``torch.where`` replaces padding, never multiplies it by 0),
  two passes, in float32 for float16/bfloat16 inputs (torch's opmath type) and the input's
  dtype otherwise. A time step without valid frames divides by 1 instead of 0 and reports NaN
  statistics; its positions are all padding, so nothing non-finite enters the graph.

Checked against torch 2.13.0 (CPU build).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .._hyper import axis as _axis
from .._hyper import integer as _int
from .._hyper import real as _float
from .._hyper import required as _required

Tensors = Mapping[str, Tensor | None]
Result = tuple[Tensor, dict[str, Tensor]]

API = ("composed: torch.nn.functional.batch_norm on the valid frames gathered by the mask "
       "(sequence-wise; the PackedSequence.data layout) or masked sums over the batch axis "
       "(frame-wise), scattered back with zeros at padded positions")
REASON = ("PyTorch has no masked batch norm: nn.BatchNorm1d on PackedSequence.data gives the "
          "sequence-wise statistics only (and pack_padded_sequence refuses zero-length "
          "sequences); frame-wise statistics have no torch operator")
_HALF = (torch.float16, torch.bfloat16)


def _mask(t: Tensors, hyper: Mapping[str, Any], shape: tuple[int, ...], device: torch.device
          ) -> Tensor:
    given = t.get("mask")
    raw = given if given is not None else hyper.get("mask")
    if raw is None:
        raise ValueError("argument 'inputs': got no 'mask', expected a bool array (N, T)")
    mask = raw if isinstance(raw, Tensor) else torch.as_tensor(np.asarray(raw))
    if mask.dtype != torch.bool:
        mask = mask != 0  # a mask that travelled as 0/1 values
    if tuple(mask.shape) != shape:
        raise ValueError(f"argument 'inputs['mask']': got shape {tuple(mask.shape)}, expected "
                         f"{shape}")
    return mask.to(device)


def _factor(hyper: Mapping[str, Any]) -> float:
    """The weight of the new batch: ``batch_stat_weight``, or ``1/(k+1)`` when cumulative."""
    value = _required(hyper, "batch_stat_weight")
    if value == "cumulative":
        return 1.0 / (_int(hyper, "num_batches_tracked", default=0) + 1)
    f = _float(hyper, "batch_stat_weight")
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"argument 'hyper['batch_stat_weight']': got {value!r}, expected a "
                         "number in [0, 1] or 'cumulative'")
    return f


def _estimator(hyper: Mapping[str, Any]) -> str:
    value = _required(hyper, "running_var_estimator")
    if value not in ("biased", "unbiased"):
        raise ValueError(f"argument 'hyper['running_var_estimator']': got {value!r}, expected "
                         "'biased' or 'unbiased'")
    return str(value)


def _counter(hyper: Mapping[str, Any], device: torch.device) -> Tensor:
    return torch.tensor(_int(hyper, "num_batches_tracked", default=0) + 1, dtype=torch.long,
                        device=device)


def _sequence(xv: Tensor, mask: Tensor, w: Tensor | None, b: Tensor | None, rm: Tensor | None,
              rv: Tensor | None, hyper: Mapping[str, Any], training: bool, eps: float
              ) -> Result:
    index = mask.nonzero(as_tuple=True)
    valid = xv[index]  # (M, C), the valid frames in (n, t) order
    state: dict[str, Tensor] = {}
    if not training:
        yv = F.batch_norm(valid, rm, rv, w, b, training=False, momentum=0.0, eps=eps)
    elif rm is None or rv is None:
        yv = F.batch_norm(valid, None, None, w, b, training=True, momentum=0.0, eps=eps)
    elif valid.shape[0] == 0:
        # nothing to normalize and nothing seen: the running statistics stay
        yv = valid
        state = {"running_mean": rm, "running_var": rv,
                 "num_batches_tracked": _counter(hyper, xv.device)}
    else:
        f = _factor(hyper)
        if _estimator(hyper) == "unbiased":
            new_m, new_v = rm.clone(), rv.clone()
            yv = F.batch_norm(valid, new_m, new_v, w, b, training=True, momentum=f, eps=eps)
        else:
            yv = F.batch_norm(valid, None, None, w, b, training=True, momentum=0.0, eps=eps)
            var, mean = torch.var_mean(valid.detach(), dim=0, correction=0)
            # PyTorch's own update form: f * new + (1 - f) * old
            new_m, new_v = f * mean + (1.0 - f) * rm, f * var + (1.0 - f) * rv
        state = {"running_mean": new_m, "running_var": new_v,
                 "num_batches_tracked": _counter(hyper, xv.device)}
    return xv.new_zeros(xv.shape).index_put(index, yv), state


def _frame(xv: Tensor, mask: Tensor, w: Tensor | None, b: Tensor | None, rm: Tensor | None,
           rv: Tensor | None, hyper: Mapping[str, Any], training: bool, eps: float,
           first: bool) -> Result:
    acc = torch.float32 if xv.dtype in _HALF else xv.dtype
    xa, m = xv.to(acc), mask[:, :, None]
    stats: dict[str, Tensor] = {}

    def out(s: Tensor) -> Tensor:  # a (T, C) statistic in the caller's layout
        return s.transpose(0, 1) if first else s

    if training:
        count = m.sum(dim=0, keepdim=True).to(acc)
        seen = count > 0
        safe = torch.clamp(count, min=1.0)
        mean = torch.where(m, xa, 0.0).sum(dim=0, keepdim=True) / safe
        d = torch.where(m, xa - mean, 0.0)
        var = (d * d).sum(dim=0, keepdim=True) / safe
        rstd = torch.rsqrt(var + eps)
        z = d * rstd
        nan = torch.full_like(mean, float("nan"))
        stats = {k: out(torch.where(seen, v, nan)[0].detach())
                 for k, v in (("mean", mean), ("var", var), ("rstd", rstd.expand_as(mean)))}
        if rm is not None and rv is not None:
            f = _factor(hyper)
            sample = var * (count / torch.clamp(count - 1, min=1.0)) if _estimator(
                hyper) == "unbiased" else var
            old_m, old_v = out(rm).to(acc), out(rv).to(acc)
            new_m = torch.where(seen[0], f * mean[0] + (1.0 - f) * old_m, old_m)
            new_v = torch.where(seen[0], f * sample[0] + (1.0 - f) * old_v, old_v)
            stats.update(running_mean=out(new_m.detach()).to(rm.dtype),
                         running_var=out(new_v.detach()).to(rv.dtype),
                         num_batches_tracked=_counter(hyper, xv.device))
    else:
        if rm is None or rv is None:
            raise ValueError("argument 'inputs': got no running statistics with training=False, "
                             "expected 'running_mean' and 'running_var'")
        z = (xa - out(rm).to(acc)) * torch.rsqrt(out(rv).to(acc) + eps)
    z = torch.where(m, z, 0.0)
    y = z if w is None else z * w.to(acc)
    y = y if b is None else y + b.to(acc)
    return torch.where(m, y, 0.0).to(xv.dtype), stats


def sequence_batch_norm(t: Tensors, hyper: Mapping[str, Any], want_stats: bool) -> Result:
    """See the module docstring; ``(y, stats)`` with ``y`` in the caller's layout."""
    x = t.get("x")
    if x is None:
        raise ValueError("argument 'inputs': got no 'x', expected the input array under 'x'")
    if x.dim() != 3:
        raise ValueError(f"argument 'inputs['x']': got shape {tuple(x.shape)}, expected 3-d")
    c = _axis(hyper, "channel_axis", 3, default=-1)
    if c == 0:
        raise ValueError("argument 'hyper['channel_axis']': got 0, expected 1, 2 or -1")
    first = c == 1
    xv = x.movedim(1, 2) if first else x
    mask = _mask(t, hyper, tuple(xv.shape[:2]), x.device)
    training = _required(hyper, "training")
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"argument 'hyper['training']': got {training!r}, expected a bool")
    statistics = _required(hyper, "statistics")
    args = (xv, mask, t.get("weight"), t.get("bias"), t.get("running_mean"),
            t.get("running_var"), hyper, bool(training), _float(hyper, "eps"))
    if statistics == "sequence":
        y, stats = _sequence(*args)
    elif statistics == "frame":
        y, stats = _frame(*args, first)
    else:
        raise ValueError(f"argument 'hyper['statistics']': got {statistics!r}, expected "
                         "'frame' or 'sequence'")
    return (y.movedim(2, 1) if first else y), stats
