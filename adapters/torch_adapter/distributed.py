"""The torch adapter's distributed methods: W rank processes, real torch.distributed collectives.

The adapter receives the full batch and ``shard_sizes`` (the contract's "Distributed methods",
docs/adapter-authors.md). It runs shard ``i`` on rank ``i`` of a process group of
``W = len(shard_sizes)`` processes and returns:

* ``y``, the gradient of ``x`` and the JVP: the ranks' results concatenated in shard order;
* parameter gradients: already summed over the ranks by an all-reduce, returned once after
  checking that every rank holds the same values;
* statistics and running state: returned once after checking that every rank agrees (a
  mismatch raises: the contract says they are the same everywhere).

Process groups: on the CPU the gloo backend, one process per rank with one thread each; on
CUDA, NCCL with one GPU per rank (so ``W`` is at most the number of GPUs). The ranks are
started on first use (at least :data:`POOL_SIZE` of them on the CPU) and kept for later calls,
since starting a torch process takes seconds; a case of ``W`` workers runs on ranks ``0..W-1``
through their subgroup, and a larger ``W`` restarts the pool larger. Rendezvous is a
``file://`` store in a private temporary folder, and gloo is pinned to the loopback interface.
Ranks end when the adapter's worker closes the group, exits, or dies
(:mod:`normspec.adapters._children`).
"""

from __future__ import annotations

import itertools
import os
import sys
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._children import ChildError, Children
from ..protocol import DTYPES, Array, Support

METHODS = ("sync_batch_norm",)
"""Methods this module runs (each on real ranks)."""

MAX_CPU_WORLD = 8
"""The largest world size run on the CPU: each rank is a torch process."""

POOL_SIZE = 4
"""Ranks started at once on the CPU: a case of W <= 4 workers runs on ranks 0..W-1 through
their subgroup, so the catalog's world sizes 2, 3 and 4 share one start (each start of a torch
process costs seconds)."""

REQUEST_TIMEOUT_S = 50.0
"""Seconds one call may take on the ranks (below the runner's default per-call 60 s, so that a
hang is reported with the ranks' own output rather than as a killed worker)."""

_COMPOSED = ("composed from torch primitives and torch.distributed all_reduce (gloo) across {w} "
             "rank processes, because nn.SyncBatchNorm refuses CPU tensors ('SyncBatchNorm "
             "expected input tensor to be on GPU or XPU or privateuseone'): counts and sums, then "
             "sums of squared deviations, all-reduced; a differentiable all_reduce for vjp, jvp "
             "and second order; parameter gradients all-reduced")
_NATIVE = ("torch.nn.SyncBatchNorm over NCCL across {w} GPUs (one per rank); parameter "
           "gradients all-reduced by the adapter (PyTorch leaves them local for DDP)")
_NATIVE_NO_FORWARD_AD = ("torch.nn.SyncBatchNorm's autograd.Function defines no jvp (no "
                         "forward-mode AD), and its backward all-reduces with the in-place "
                         "torch.distributed.all_reduce, which autograd does not differentiate")


def _torch() -> Any:
    import torch

    return torch


def world_size(inputs: Mapping[str, Any], hyper: Mapping[str, Any]) -> list[int]:
    """The shard sizes of a call (an int64 input; the reference's keyword also works)."""
    raw = inputs.get("shard_sizes", hyper.get("shard_sizes"))
    if raw is None:
        raise ValueError("argument 'inputs': got no 'shard_sizes', expected the size of each "
                         "worker's shard of the batch axis")
    arr = np.asarray(raw)
    if arr.dtype.kind not in "iu" or arr.ndim != 1 or arr.size == 0 or bool(np.any(arr < 0)):
        raise ValueError(f"argument 'shard_sizes': got {arr.tolist()!r} (dtype {arr.dtype}), "
                         "expected a non-empty 1-d array of integers >= 0")
    return [int(s) for s in arr]


class DistributedTorch:
    """Process groups by (device, world size), and the four calls of a distributed method."""

    def __init__(self) -> None:
        self._groups: dict[str, Children] = {}

    def _cuda_ok(self) -> tuple[bool, str]:
        torch = _torch()
        import torch.distributed as dist

        if not torch.cuda.is_available():
            return False, "torch.cuda.is_available() is False"
        if not dist.is_nccl_available():
            return False, "torch.distributed.is_nccl_available() is False"
        return True, ""

    def support(self, method: str, dtype: str, device: str) -> Support:
        import torch.distributed as dist

        if method not in METHODS:
            return Support(False, reason=f"unknown distributed method {method!r}")
        if dtype not in DTYPES:
            return Support(False, reason=f"unknown dtype {dtype!r}")
        if not dist.is_available():
            return Support(False, reason="torch.distributed is not available in this build")
        if sys.platform == "win32":
            return Support(False, reason="the rank processes need POSIX pipes (pass_fds)")
        if device == "cpu":
            if not dist.is_gloo_available():
                return Support(False, reason="torch.distributed.is_gloo_available() is False")
            return Support(True, "composed", _COMPOSED.format(w="W"))
        if device == "cuda":
            ok, why = self._cuda_ok()
            if not ok:
                return Support(False, reason=f"device 'cuda' unavailable: {why}")
            return Support(True, "native", _NATIVE.format(w="W"),
                           not_implemented=dict.fromkeys(("jvp", "second_order"),
                                                         _NATIVE_NO_FORWARD_AD))
        return Support(False, reason=f"unknown device {device!r}")

    def case_support(self, method: str, inputs: Mapping[str, Any], hyper: Mapping[str, Any],
                     *, dtype: str, device: str) -> Support:
        """:meth:`support` for this case's world size; declines what it cannot run."""
        base = self.support(method, dtype, device)
        if not base.supported:
            return base
        w = len(world_size(inputs, hyper))
        if device == "cpu":
            if w > MAX_CPU_WORLD:
                return Support(False, reason=f"world size {w} declined: the CPU process group "
                                             f"runs at most {MAX_CPU_WORLD} rank processes")
            return Support(True, "composed", _COMPOSED.format(w=w))
        gpus = _torch().cuda.device_count()
        if w > gpus:
            return Support(False, reason=f"world size {w} declined: NCCL needs one GPU per rank "
                                         f"and {gpus} are visible")
        native = Support(True, "native", _NATIVE.format(w=w),
                         not_implemented=dict(base.not_implemented))
        if (hyper.get("training") and inputs.get("running_mean") is not None
                and hyper.get("running_var_estimator") == "biased"):
            return Support(True, "composed", native.reason + "; the biased running-variance "
                           "update is composed from all-reduced sums (PyTorch stores the "
                           "unbiased one)", not_implemented=dict(base.not_implemented))
        return native

    def _group(self, device: str, w: int) -> Children:
        """The device's ranks, at least ``w`` of them (a larger group replaces a smaller)."""
        group = self._groups.get(device)
        if group is not None and group.count < w:
            group.close()
            group = None
        if group is None:
            size = max(w, POOL_SIZE if device == "cpu" else 1)
            backend = "gloo" if device == "cpu" else "nccl"
            store: dict[str, str] = {}

            def argv(rank: int) -> list[str]:
                # a fresh rendezvous file for every start of the group (rank 0 comes first)
                if rank == 0:
                    store["path"] = os.path.join(tempfile.mkdtemp(prefix="normspec-torch-pg-"),
                                                 "store")
                return [str(rank), str(size), store["path"], backend, device]

            env: dict[str, str | None] = {"OMP_NUM_THREADS": "1"}
            if device == "cpu" and sys.platform.startswith("linux"):
                env["GLOO_SOCKET_IFNAME"] = os.environ.get("GLOO_SOCKET_IFNAME", "lo")
            group = Children("normspec.adapters.torch_adapter._rank", size, argv, env)
            self._groups[device] = group
        return group

    def call(self, op: str, method: str, inputs: Mapping[str, Array | None],
             hyper: Mapping[str, Any], *, dtype: str, device: str,
             cotangent: Array | None = None, tangent: Mapping[str, Array] | None = None
             ) -> dict[str, Array]:
        """Run ``op`` of ``method`` on W ranks; see the module docstring for what comes back."""
        support = self.case_support(method, inputs, hyper, dtype=dtype, device=device)
        if not support.supported or op in support.not_implemented:
            raise ValueError(f"argument 'op': {op} of {method} on {device} is not run here: "
                             f"{support.not_implemented.get(op, support.reason)}")
        sizes = world_size(inputs, hyper)
        x = inputs.get("x")
        if x is None:
            raise ValueError("argument 'inputs': got no 'x', expected the full batch")
        if sum(sizes) != x.shape[0]:
            raise ValueError(f"argument 'shard_sizes': got {sizes}, expected sizes that sum to "
                             f"the batch size {x.shape[0]}")
        hyper = {k: v for k, v in hyper.items() if k != "shard_sizes"}
        if (count := inputs.get("num_batches_tracked")) is not None:
            hyper["num_batches_tracked"] = int(np.asarray(count).item())
        bounds = np.concatenate([[0], np.cumsum(sizes)]).tolist()
        common = {k: v for k, v in inputs.items()
                  if k not in ("x", "shard_sizes", "num_batches_tracked") and v is not None}
        messages = []
        for lo, hi in itertools.pairwise(bounds):
            message: dict[str, Any] = {
                "op": op, "dtype": dtype, "native": device != "cpu", "hyper": hyper,
                "world": len(sizes),
                "inputs": {**common, "x": np.asarray(x)[lo:hi]}}
            if cotangent is not None:
                message["cotangent"] = np.asarray(cotangent)[lo:hi]
            if tangent is not None:
                message["tangent"] = {k: np.asarray(v)[lo:hi] if k == "x" else np.asarray(v)
                                      for k, v in tangent.items()}
                message["tangent"].setdefault("x", np.zeros_like(np.asarray(x)[lo:hi]))
                for k in ("weight", "bias"):
                    if inputs.get(k) is not None:
                        message["tangent"].setdefault(k, np.zeros_like(np.asarray(inputs[k])))
            messages.append(message)
        try:
            answers = self._group(device, len(sizes)).request(messages, REQUEST_TIMEOUT_S)
        except ChildError as exc:
            raise RuntimeError(f"{method} {op} on {len(sizes)} ranks failed: {exc}") from None
        return assemble(answers)


def assemble(answers: list[dict[str, Array]]) -> dict[str, Array]:
    """One result from the ranks': ``y``/``x`` concatenated in rank order, everything else
    checked to be identical on every rank (NaN equal to NaN) and returned once."""
    out: dict[str, Array] = {}
    for key in answers[0]:
        values = [np.asarray(a[key]) for a in answers]
        if key in ("y", "x"):
            out[key] = np.concatenate(values, axis=0)
            continue
        for rank, value in enumerate(values[1:], start=1):
            if not np.array_equal(value, values[0], equal_nan=True):
                raise ValueError(f"{key!r} differs between rank 0 and rank {rank}: "
                                 f"{values[0].tolist()} vs {value.tolist()}; a distributed "
                                 "method must give every rank the same value")
        out[key] = values[0]
    return out


DISTRIBUTED = DistributedTorch()
"""The adapter's process groups (one instance per adapter worker process)."""
