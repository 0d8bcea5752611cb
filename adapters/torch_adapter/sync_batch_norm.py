"""sync_batch_norm on one rank of a torch.distributed process group (runs in a rank process).

Each rank holds its shard of the batch and the replicated parameters and state; statistics
cross ranks through real collectives of the process group (gloo on the CPU, NCCL on CUDA).

* **Composed** (the CPU, and the derivatives PyTorch's module lacks): ``nn.SyncBatchNorm``
  refuses CPU tensors, so the layer is composed from torch primitives and
  :class:`AllReduceSum`, a differentiable ``torch.distributed.all_reduce`` (SUM) whose backward
  and forward-mode rules are all-reduces too (the sum over ranks is linear), so
  ``torch.func.vjp``, ``torch.func.jvp`` and forward-over-reverse all run through it. The
  count-weighted merge is evaluated in its closed form with two all-reduces: the ranks' counts
  and sums (``n``, ``mean = sum x / n``), then the ranks' ``sum (x - mean)^2`` (``M2``), which is
  ``sum_i M2_i + n_i (mean_i - mean)^2`` without rounding ``mean_i``. Statistics are computed in
  the opmath type (float32 for float16/bfloat16, as PyTorch's kernels do) and ``y`` is rounded
  once to the dtype under test; the running statistics are kept in the opmath type.
* **Native** (CUDA with NCCL): ``torch.nn.SyncBatchNorm`` in training mode on the given state
  (``torch.func.functional_call``): PyTorch's own all_gather of ``(mean, invstd, count)``,
  ``batch_norm_gather_stats_with_counts`` and its backward. Its gradients of ``weight`` and
  ``bias`` are local (DDP all-reduces them), so they are summed over ranks here. It has no
  forward-mode rule, so JVP and second order are not run natively (the adapter declares them).
  Not run in this project's CI (no CUDA machine); written against torch 2.13.0's source.

Parameter gradients are all-reduced (summed) after the local VJP; every quantity that must be
the same on every rank is returned by every rank, and the adapter checks that they agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.func import functional_call

from .._hyper import axis as _axis
from .._hyper import integer as _int
from .._hyper import real as _float
from .._hyper import required as _required
from . import autodiff
from .methods import Translation, batch_stat_factor, running_var_estimator

Tensors = Mapping[str, Tensor | None]
PRIMALS = ("x", "weight", "bias")
STATE = ("running_mean", "running_var")
_HALF = (torch.float16, torch.bfloat16)


_GROUP: list[Any] = [None]
"""The process group of the request being served (None: the default group)."""


class AllReduceSum(torch.autograd.Function):  # type: ignore[misc, unused-ignore]
    """``torch.distributed.all_reduce(SUM)`` on a copy, differentiable in both modes."""

    @staticmethod
    def forward(t: Tensor) -> Tensor:
        out = t.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=_GROUP[0])
        return out

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        """Nothing to save: the map is linear."""

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        # d(sum_r t_r)/d t_q = I for every rank q: each rank's cotangent is the sum of all.
        out: Tensor = AllReduceSum.apply(grad)  # type: ignore[no-untyped-call, unused-ignore]
        return out

    @staticmethod
    def jvp(ctx: Any, tangent: Tensor) -> Tensor:
        out: Tensor = AllReduceSum.apply(tangent)  # type: ignore[no-untyped-call, unused-ignore]
        return out


def all_reduce_sum(t: Tensor) -> Tensor:
    out: Tensor = AllReduceSum.apply(t)  # type: ignore[no-untyped-call, unused-ignore]
    return out


def _opmath(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in _HALF else dtype


def _view(t: Tensor | None, ndim: int) -> Tensor | None:
    """A per-channel vector shaped to broadcast against a channels-at-axis-1 tensor."""
    return None if t is None else t.reshape((1, -1) + (1,) * (ndim - 2))


def composed(t: Tensors, hyper: Mapping[str, Any], want_stats: bool
             ) -> tuple[Tensor, dict[str, Tensor]]:
    """The composed layer on this rank's shard ``t["x"]`` (see the module docstring)."""
    x = t["x"]
    assert x is not None
    c = _axis(hyper, "channel_axis", x.dim(), default=1)
    eps = _float(hyper, "eps")
    training = bool(_required(hyper, "training"))
    acc = _opmath(x.dtype)
    xm = torch.movedim(x, c, 1).to(acc)
    dims = tuple(i for i in range(xm.dim()) if i != 1)
    w, b = _view(t.get("weight"), xm.dim()), _view(t.get("bias"), xm.dim())
    rm, rv = t.get("running_mean"), t.get("running_var")
    stats: dict[str, Tensor] = {}
    if not training:
        if rm is None or rv is None:
            raise ValueError("argument 'inputs': got no running statistics with training=False, "
                             "expected 'running_mean' and 'running_var'")
        center, std = _view(rm.to(acc), xm.dim()), _view(torch.sqrt(rv.to(acc) + eps),
                                                         xm.dim())
        assert center is not None
        assert std is not None
        z = (xm - center) / std
    else:
        channels = xm.shape[1]
        local = torch.cat([xm.sum(dims), torch.full((1,), xm.numel() // max(channels, 1),
                                                    dtype=acc, device=xm.device)])
        total = all_reduce_sum(local)
        sums, count = total[:channels], total[channels:]
        mean = sums / count
        mean_view = _view(mean, xm.dim())
        assert mean_view is not None
        d = xm - mean_view
        var = all_reduce_sum((d * d).sum(dims)) / count
        # d / sqrt(var + eps), not d * rsqrt(var + eps): the derivative of rsqrt,
        # -(var + eps)^(-3/2) / 2, leaves float32 for spreads below ~1e-13 or above ~1e13,
        # while sqrt's and the division's stay in range wherever the result does.
        std_c = torch.sqrt(var + eps)
        std = _view(std_c, xm.dim())
        assert std is not None
        z = d / std
        if want_stats:
            stats = {"mean": mean, "var": var, "rstd": 1.0 / std_c}
            if rm is not None and rv is not None:
                stats.update(_update(rm.to(acc), rv.to(acc), mean.detach(), var.detach(),
                                     int(count.item()), hyper))
    y = z if w is None else z * w.to(acc)
    y = y if b is None else y + b.to(acc)
    return torch.movedim(y.to(x.dtype), 1, c), stats


def _update(rm: Tensor, rv: Tensor, mean: Tensor, var: Tensor, n: int,
            hyper: Mapping[str, Any]) -> dict[str, Tensor]:
    """The running update every rank applies, with the global count ``n``."""
    tracked = _int(hyper, "num_batches_tracked", default=0)
    momentum = batch_stat_factor(hyper)
    f = 1.0 / (tracked + 1) if momentum is None else momentum
    if running_var_estimator(hyper) == "unbiased":
        if n <= 1:
            raise ValueError(f"argument 'x': got {n} value(s) per channel over all ranks, expected "
                             "at least 2 for running_var_estimator='unbiased'")
        var = var * (n / (n - 1))
    # PyTorch's own running-statistics form: f * new + (1 - f) * old
    return {"running_mean": f * mean + (1.0 - f) * rm, "running_var": f * var + (1.0 - f) * rv,
            "num_batches_tracked": torch.tensor(float(tracked + 1), dtype=torch.float64)}


def native(t: Tensors, hyper: Mapping[str, Any], want_stats: bool
           ) -> tuple[Tensor, dict[str, Tensor]]:
    """``nn.SyncBatchNorm`` (CUDA, NCCL) on this rank's shard; see the module docstring."""
    x = t["x"]
    assert x is not None
    c = _axis(hyper, "channel_axis", x.dim(), default=1)
    eps = _float(hyper, "eps")
    training = bool(_required(hyper, "training"))
    xm = torch.movedim(x, c, 1)
    rm, rv = t.get("running_mean"), t.get("running_var")
    tracking = training and rm is not None and rv is not None
    momentum = batch_stat_factor(hyper) if tracking else 0.0
    module = nn.SyncBatchNorm(xm.shape[1], eps=eps, momentum=momentum, affine=False,
                              track_running_stats=rm is not None,
                              process_group=_GROUP[0], device=x.device, dtype=x.dtype)
    module.train(training)
    params: dict[str, Tensor] = {k: v for k in ("weight", "bias") if (v := t.get(k)) is not None}
    count = torch.tensor(_int(hyper, "num_batches_tracked", default=0), dtype=torch.long,
                         device=x.device)
    if rm is not None and rv is not None:
        # the module updates these buffers in place: they are this call's copies
        params.update(running_mean=rm.to(x.dtype).clone(), running_var=rv.to(x.dtype).clone(),
                      num_batches_tracked=count)
    y = functional_call(module, params, (xm,))
    assert isinstance(y, Tensor)
    stats: dict[str, Tensor] = {}
    if tracking and want_stats and rm is not None and rv is not None:
        if running_var_estimator(hyper) == "unbiased":
            stats = {k: params[k] for k in ("running_mean", "running_var")}
            stats["num_batches_tracked"] = params["num_batches_tracked"].to(torch.float64)
        else:
            # PyTorch has no biased running variance: the update is composed (labelled so)
            stats = _biased_native_update(xm.detach(), rm, rv, hyper)
    return torch.movedim(y, 1, c), stats


def _biased_native_update(xm: Tensor, rm: Tensor, rv: Tensor, hyper: Mapping[str, Any]
                          ) -> dict[str, Tensor]:
    acc = _opmath(xm.dtype)
    xa = xm.to(acc)
    dims = tuple(i for i in range(xa.dim()) if i != 1)
    channels = xa.shape[1]
    local = torch.cat([xa.sum(dims), torch.full((1,), xa.numel() // max(channels, 1),
                                                dtype=acc, device=xa.device)])
    dist.all_reduce(local, group=_GROUP[0])
    mean, count = local[:channels] / local[channels:], local[channels:]
    d = xa - mean.reshape((1, -1) + (1,) * (xa.dim() - 2))
    m2 = (d * d).sum(dims)
    dist.all_reduce(m2, group=_GROUP[0])
    return _update(rm.to(acc), rv.to(acc), mean, m2 / count, int(count.item()), hyper)


COMPOSED = Translation(PRIMALS, STATE, "torch.distributed all_reduce (composed)", composed)
NATIVE = Translation(PRIMALS, STATE, "torch.nn.SyncBatchNorm", native)


def _tensor(value: Any, dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.tensor(np.asarray(value, dtype=np.float64)).to(device=device, dtype=dtype)


def _numpy(t: Tensor) -> np.ndarray:
    out: np.ndarray = t.detach().to(device="cpu", dtype=torch.float64).numpy()
    return out


def run(message: Mapping[str, Any], device: torch.device, groups: Mapping[int, Any]
        ) -> dict[str, np.ndarray]:
    """One request on this rank: ``message`` holds ``op``, ``dtype``, ``native``, ``world``
    (the ranks taking part, ``0..world-1``), ``inputs`` (this rank's shard of ``x``;
    parameters and state replicated), ``hyper`` and the local ``cotangent``/``tangent``.
    Returns this rank's results as float64 arrays."""
    _GROUP[0] = groups[int(message["world"])]
    try:
        return _run(message, device)
    finally:
        _GROUP[0] = None


def _run(message: Mapping[str, Any], device: torch.device) -> dict[str, np.ndarray]:
    op, dtype = message["op"], getattr(torch, message["dtype"])
    translation = NATIVE if message["native"] else COMPOSED
    inputs, hyper = message["inputs"], message["hyper"]
    state_dtype = dtype if message["native"] else _opmath(dtype)
    tensors: dict[str, Tensor | None] = {
        k: None if inputs.get(k) is None else _tensor(inputs[k], dtype, device) for k in PRIMALS}
    tensors.update({k: None if inputs.get(k) is None else _tensor(inputs[k], state_dtype, device)
                    for k in STATE})
    live = tuple(k for k in PRIMALS if tensors[k] is not None)
    primals = [t for k in live if (t := tensors[k]) is not None]
    if op == "forward":
        with torch.no_grad():
            y, stats = translation.run(tensors, hyper, True)
        return {"y": _numpy(y), **{k: _numpy(v) for k, v in stats.items()}}
    fn = autodiff.bind(translation, live, {k: tensors[k] for k in STATE}, hyper)
    if op == "jvp":
        tangent = [_tensor(message["tangent"][k], dtype, device) for k in live]
        return {"y": _numpy(autodiff.jvp(fn, primals, tangent))}
    g = _tensor(message["cotangent"], dtype, device)
    if op == "vjp":
        grads = autodiff.vjp(fn, primals, g)
    elif op == "second_order":
        tangent = [_tensor(message["tangent"][k], dtype, device) for k in live]
        grads = autodiff.second_order(fn, primals, g, tangent)
    else:
        raise ValueError(f"argument 'op': got {op!r}, expected forward, vjp, jvp or second_order")
    out = {}
    for name, grad in zip(live, grads, strict=True):
        if name != "x":
            # Replicated parameters: their gradient is the sum of every rank's (linear, so the
            # second order sums the same way), summed in the opmath type and rounded once.
            wide = grad.to(_opmath(grad.dtype)).contiguous()
            dist.all_reduce(wide, op=dist.ReduceOp.SUM, group=_GROUP[0])
            grad = wide.to(grad.dtype)
        out[name] = _numpy(grad)
    return out
