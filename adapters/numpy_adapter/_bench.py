"""The numpy adapter's benchmarking extension (see :mod:`normspec.adapters.bench`).

The inputs are loaded into the compute dtype once; a timed call is the method's own forward
(and VJP) in that dtype, with the output rounded to the storage dtype as a framework writes
it. NumPy runs synchronously, so no synchronization is needed. The copy roofline is
``np.copyto`` between two buffers of the storage dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..bench import Prepared
from ..protocol import Array
from ._precision import precision


class NumpyBench:
    """Mixin of :class:`~normspec.adapters.numpy_adapter.NumpyAdapter`: one variant, ``"numpy"``."""

    def bench_variants(self, device: str) -> Mapping[str, str | None]:
        """``{"numpy": None}`` on cpu; NumPy has no other device."""
        return {"numpy": None if device == "cpu" else f"NumPy runs on cpu only, not {device!r}"}

    def bench_prepare(self, method: str, inputs: Mapping[str, Array | None],
                      hyper: Mapping[str, Any], *, dtype: str, device: str, variant: str,
                      backward: bool, cotangent: Array | None) -> Prepared:
        """Load once; each call runs forward (and vjp) in the compute dtype."""
        me: Any = self
        impl, prec, loaded, hyper = me._prepare(method, inputs, hyper, dtype, device)
        numerics = me.numerics
        storage = prec.storage
        g = None if cotangent is None else prec.load("cotangent", cotangent)

        def run() -> object:
            with np.errstate(all="ignore"):
                out = impl.forward(numerics, prec, loaded, hyper)
                y = np.asarray(out["y"]).astype(storage)
                if backward:
                    grads = impl.vjp(numerics, prec, loaded, hyper, g)
                    return [np.asarray(v).astype(storage) for v in grads.values()]
            return y

        return Prepared(run, None, note="NumPy formulas in the compute dtype, single call")

    def bench_copy(self, nbytes: int, *, dtype: str, device: str) -> Callable[[], object]:
        """``np.copyto`` of ``nbytes`` bytes of ``dtype``."""
        storage = precision(dtype).storage
        n = max(1, nbytes // storage.itemsize)
        src = np.ones(n, dtype=storage)
        dst = np.empty_like(src)

        def run() -> object:
            np.copyto(dst, src)
            return dst

        return run


__all__ = ["NumpyBench"]
