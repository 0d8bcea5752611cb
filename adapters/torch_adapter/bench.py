"""The torch adapter's benchmarking extension (see :mod:`normspec.adapters.bench`).

Two variants:

* ``eager``: the adapter's own translation (the same code the conformance run checks), on
  tensors placed on the device once; forward under ``torch.no_grad``, forward+backward through
  ``torch.autograd.grad`` with the stored cotangent.
* ``compile``: the same function through ``torch.compile(dynamic=False)``. Its first call
  compiles (forward, or forward and backward through AOTAutograd) and is reported as
  ``compile_s``, never timed. Inductor needs a C++ compiler on the CPU and Triton on CUDA;
  without one the variant is skipped with that reason.

Every call ends in ``torch.cuda.synchronize()`` on CUDA, so the time is the kernels' time, not
the launch's. The copy roofline is ``Tensor.copy_`` between two buffers of the dtype.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..bench import Prepared
from ..protocol import Array


def compiler_missing(device: str) -> str | None:
    """Why ``torch.compile`` cannot run on ``device`` here, or None when it can."""
    if device.startswith("cuda"):
        if importlib.util.find_spec("triton") is None:
            return "torch.compile on CUDA needs Triton, which is not installed"
        return None
    cxx = os.environ.get("CXX") or next(
        (c for c in ("g++", "c++", "clang++") if shutil.which(c)), None)
    if cxx is None or shutil.which(cxx) is None:
        return ("torch.compile on the CPU needs a C++ compiler (Inductor generates C++); none "
                "found (g++, c++, clang++ or $CXX)")
    return None


def _sync(torch: Any, device: Any) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


class TorchBench:
    """Mixin of :class:`~normspec.adapters.torch_adapter.TorchAdapter`."""

    def bench_variants(self, device: str) -> Mapping[str, str | None]:
        """``eager`` wherever the adapter runs; ``compile`` where Inductor has a compiler."""
        me: Any = self
        if device not in me.devices():
            why = f"device {device!r} unavailable to torch"
            return {"eager": why, "compile": why}
        return {"eager": None, "compile": compiler_missing(device)}

    def bench_prepare(self, method: str, inputs: Mapping[str, Array | None],
                      hyper: Mapping[str, Any], *, dtype: str, device: str, variant: str,
                      backward: bool, cotangent: Array | None) -> Prepared:
        """Tensors on the device once; ``run()`` is one synchronized call."""
        import torch

        from . import autodiff

        if variant not in ("eager", "compile"):
            raise ValueError(f"argument 'variant': got {variant!r}, expected 'eager' or "
                             f"'compile'")
        me: Any = self
        call = me._prepare(method, inputs, hyper, dtype, device)
        fn = autodiff.bind(call.translation, call.live, call.constants, call.hyper)
        if variant == "compile":
            # One compiled function at a time: dynamo's per-code-object cache would otherwise
            # fill up across methods and shapes and fall back to eager without a word.
            torch._dynamo.reset()
            fn = torch.compile(fn, dynamic=False)
        sync = _sync(torch, call.device)
        primals = call.primal_values()
        if backward:
            if cotangent is None:
                raise ValueError("argument 'cotangent': got None, expected an array for the "
                                 "backward pass")
            g = call.tensor("cotangent", cotangent)
            leaves = [p.detach().requires_grad_(True) for p in primals]

            def run() -> object:
                y = fn(*leaves)
                grads = torch.autograd.grad(y, leaves, grad_outputs=g, allow_unused=True)
                sync()
                return grads
        else:
            def run() -> object:
                with torch.no_grad():
                    y = fn(*primals)
                sync()
                return y

        compile_s = None
        if variant == "compile":
            start = time.perf_counter()
            run()  # compiles (and runs once): reported apart, never timed
            compile_s = time.perf_counter() - start
        how = "torch.compile(dynamic=False)" if variant == "compile" else "eager"
        return Prepared(run, compile_s, note=f"{how}, {call.translation.api}")

    def bench_copy(self, nbytes: int, *, dtype: str, device: str) -> Callable[[], object]:
        """``dst.copy_(src)`` of ``nbytes`` bytes, synchronized."""
        import torch

        tdtype = getattr(torch, dtype)
        dev = torch.device(device)
        n = max(1, nbytes // torch.empty((), dtype=tdtype).element_size())
        src = torch.ones(n, dtype=tdtype, device=dev)
        dst = torch.empty_like(src)
        sync = _sync(torch, dev)

        def run() -> object:
            dst.copy_(src)
            sync()
            return dst

        return run


__all__ = ["TorchBench", "compiler_missing"]
