"""The jax adapter's distributed methods: host devices of a child process, shard_map and psum.

JAX fixes its device count when it starts, and the adapter's own worker runs on the one host
device (its compiled programs and their store assume it). So the distributed computation runs in
a dedicated child process (:mod:`._devices`) started with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` and ``JAX_PLATFORMS=cpu``: four CPU
devices, a 1-d mesh over the first ``W``, one shard per device. The child is started on first
use, kept for later calls, and ends with the worker (:mod:`normspec.adapters._children`).

``shard_map`` needs equal shard shapes, so uneven shards are padded to the largest one and carry
a validity mask. Two variants, chosen per case (:func:`plan`):

* **Flax** (``native``): ``flax.linen.BatchNorm(axis_name=...)`` inside ``shard_map`` where it
  computes the spec: training on equal, non-empty shards (its ``lax.pmean`` of per-device means
  weights devices equally, which is weighting by count only when the counts are equal), and
  evaluation (elementwise; padded rows are dropped). The unbiased running update is composed
  (Flax stores the biased variance), as in the single-device batch_norm translation.
* **psum** (``composed``): uneven or empty shards in training. Counts and sums, then sums of
  squared deviations over the valid rows, ``lax.psum``-ed across the mesh: the count-weighted
  merge. Flax cannot express it: with a ``mask`` its per-device masked means are still averaged
  with equal weights, and an all-padding device's mean is 0/0 = NaN (spec page, framework
  mapping; repro in tests/test_jax_sync_batch_norm.py).

Gradients are ``jax.vjp``/``jax.jvp`` of the ``shard_map``-ed function; the transpose of a
replicated parameter is JAX's own psum, so parameter gradients arrive summed over devices.
Running statistics come back once per device and are checked to agree.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._children import ChildError, Children
from ..protocol import DTYPES, Array, Support

METHODS = ("sync_batch_norm",)
"""Methods this module runs on several devices."""

DEVICES = 4
"""Host devices of the child process: the largest world size it runs."""

REQUEST_TIMEOUT_S = 50.0
"""Seconds one call may take in the child, compiling included (below the runner's 60 s)."""

_FLAX = ("flax.linen.BatchNorm(axis_name='workers') in jax.shard_map over {w} host devices "
         "(--xla_force_host_platform_device_count={d}, in a child process)")
_PSUM = ("jax.shard_map over {w} host devices, shards padded to equal shape with a validity "
         "mask; counts and sums, then squared deviations, lax.psum-ed (the count-weighted "
         "merge), because Flax's BatchNorm(axis_name=...) averages per-device means with equal "
         "weights (lax.pmean), which is wrong for unequal valid counts, and an all-padding "
         "device's masked mean is 0/0 = NaN")
_UNBIASED = ("; the running update with running_var_estimator='unbiased' is composed from the "
             "psum-ed moments with the global count (Flax stores the biased variance)")


def shard_sizes(inputs: Mapping[str, Any], hyper: Mapping[str, Any]) -> list[int]:
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


def plan(sizes: list[int], hyper: Mapping[str, Any], tracking: bool) -> tuple[str, bool]:
    """``(variant, composed_update)``: ``"flax"`` or ``"psum"``, and whether the running
    update is composed (the unbiased estimator under Flax)."""
    training = bool(hyper.get("training", False))
    equal = len(set(sizes)) == 1 and sizes[0] > 0
    if training and not equal:
        return "psum", False
    unbiased = training and tracking and hyper.get("running_var_estimator") == "unbiased"
    return "flax", unbiased


class DistributedJax:
    """The child process with :data:`DEVICES` host devices, and the calls run there."""

    def __init__(self) -> None:
        self._child: Children | None = None
        self.timing: dict[str, float] = {}

    def support(self, method: str, dtype: str, device: str) -> Support:
        if method not in METHODS:
            return Support(False, reason=f"unknown distributed method {method!r}")
        if dtype not in DTYPES:
            return Support(False, reason=f"unknown dtype {dtype!r}")
        if device != "cpu":
            return Support(False, reason=f"device {device!r}: the distributed JAX methods run on "
                                         f"{DEVICES} forced host devices (CPU) only")
        if os.name != "posix":
            return Support(False, reason="the device process needs POSIX pipes (pass_fds)")
        return Support(True, "native", _FLAX.format(w="W", d=DEVICES))

    def case_support(self, method: str, inputs: Mapping[str, Any], hyper: Mapping[str, Any],
                     *, dtype: str, device: str) -> Support:
        base = self.support(method, dtype, device)
        if not base.supported:
            return base
        sizes = shard_sizes(inputs, hyper)
        if len(sizes) > DEVICES:
            return Support(False, reason=f"world size {len(sizes)} declined: the device process "
                                         f"has {DEVICES} host devices")
        variant, composed_update = plan(sizes, hyper, inputs.get("running_mean") is not None)
        if variant == "psum":
            return Support(True, "composed", _PSUM.format(w=len(sizes)))
        reason = _FLAX.format(w=len(sizes), d=DEVICES)
        return (Support(True, "composed", reason + _UNBIASED) if composed_update
                else Support(True, "native", reason))

    def _group(self) -> Children:
        if self._child is None:
            flags = os.environ.get("XLA_FLAGS", "")
            flags = " ".join(f for f in flags.split()
                             if not f.startswith("--xla_force_host_platform_device_count"))
            env: dict[str, str | None] = {
                "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={DEVICES}".strip(),
                "JAX_PLATFORMS": "cpu"}
            self._child = Children("normspec.adapters.jax_adapter._devices", 1, lambda i: [],
                                   env)
        return self._child

    def call(self, op: str, method: str, inputs: Mapping[str, Array | None],
             hyper: Mapping[str, Any], *, dtype: str, device: str,
             cotangent: Array | None = None, tangent: Mapping[str, Array] | None = None
             ) -> dict[str, Array]:
        """Run ``op`` in the device process; results in the contract's form (see the module
        docstring). Records the child's compile/run split in :attr:`timing`."""
        self.timing = {}
        support = self.case_support(method, inputs, hyper, dtype=dtype, device=device)
        if not support.supported:
            raise ValueError(f"argument 'method'/'device': {method} on {device} is not run "
                             f"here: {support.reason}")
        message = {"op": op, "method": method, "dtype": dtype, "hyper": dict(hyper),
                   "inputs": {k: None if v is None else np.asarray(v) for k, v in inputs.items()},
                   "cotangent": cotangent, "tangent": tangent}
        start = time.perf_counter()
        try:
            (answer,) = self._group().request([message], REQUEST_TIMEOUT_S)
        except ChildError as exc:
            raise RuntimeError(f"{method} {op} in the JAX device process failed: {exc}") from None
        timing = answer.pop("__timing__", {})
        if timing:
            waited = time.perf_counter() - start - sum(timing.values())
            self.timing = {"compile_s": timing["compile_s"] + max(waited, 0.0),
                           "run_s": timing["run_s"]}
        out: dict[str, Array] = answer
        return out


DISTRIBUTED = DistributedJax()
"""The adapter's device process (one per adapter worker)."""
