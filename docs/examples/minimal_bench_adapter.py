"""The minimal adapter, extended for ``normspec bench``: the three optional methods of the
benchmarking extension (``normspec.adapters.bench``). The guide walks through it, and a test
benchmarks it. Run it with::

    normspec bench --adapter docs/examples/minimal_bench_adapter.py:ADAPTER --method rms_norm

* ``bench_variants(device)``: the ways the kernel can run; ``None`` means "runs here", a string
  says why not (it is shown as a skip);
* ``bench_prepare(...)``: convert the inputs once, compile if needed, and return a ``Prepared``
  whose ``run()`` performs one call and returns only when the device is done;
* ``bench_copy(nbytes, ...)``: a plain copy of that many bytes, with the same synchronization:
  the roofline every result is a percentage of.

Without them the adapter still benchmarks, through ``forward``/``vjp`` with the float64
conversions included (reported as variant ``protocol``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from normspec.adapters import registry
from normspec.adapters.bench import Prepared

Array = Any
# The guide's minimal adapter, loaded the way `normspec run` loads an adapter file.
MinimalAdapter = type(registry.load(f"{Path(__file__).with_name('minimal_adapter.py')}:ADAPTER"))


class MinimalBenchAdapter(MinimalAdapter):
    """The minimal RMSNorm adapter, benchmarkable."""

    name = "minimal-bench"

    def bench_variants(self, device: str) -> Mapping[str, str | None]:
        return {"eager": None if device in self.devices() else f"no device {device!r}"}

    def bench_prepare(self, method: str, inputs: Mapping[str, Array | None],
                      hyper: Mapping[str, Any], *, dtype: str, device: str, variant: str,
                      backward: bool, cotangent: Array | None) -> Prepared:
        import torch

        # Once, outside the timed call: the tensors in the dtype under test on the device.
        f, _, primals = self._function(inputs, hyper, dtype, device)
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        if backward:
            g = self._tensor(cotangent, dtype, device)
            leaves = [p.detach().requires_grad_(True) for p in primals]

            def run() -> object:
                grads = torch.autograd.grad(f(*leaves), leaves, grad_outputs=g)
                sync()  # the time must include the kernels, not only their launch
                return grads
        else:
            def run() -> object:
                with torch.no_grad():
                    y = f(*primals)
                sync()
                return y

        return Prepared(run, compile_s=None, note="my_rms_norm, eager")

    def bench_copy(self, nbytes: int, *, dtype: str, device: str) -> Callable[[], object]:
        import torch

        tdtype = getattr(torch, dtype)
        n = max(1, nbytes // torch.empty((), dtype=tdtype).element_size())
        src = torch.ones(n, dtype=tdtype, device=device)
        dst = torch.empty_like(src)
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

        def run() -> object:
            dst.copy_(src)
            sync()
            return dst

        return run


ADAPTER = MinimalBenchAdapter()
"""The instance ``normspec bench --adapter .../minimal_bench_adapter.py:ADAPTER`` loads."""
