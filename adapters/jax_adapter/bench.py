"""The JAX adapter's benchmarking extension (see :mod:`normspec.adapters.bench`).

One variant, ``jit``: the adapter's translation (the code the conformance run checks) under
``jax.jit``, forward ``(primals, state) -> (y, stats)`` or forward+backward ``(primals, state,
g) -> (y, grads)`` through ``jax.vjp``. The program is lowered and compiled ahead
(``jit(f).lower(*args).compile()``) and that time is reported as ``compile_s``; it may be a load
from JAX's persistent compilation cache when the adapter's cache is on. Every timed call ends
in ``jax.block_until_ready``. The copy roofline is a jitted negation (one read and one write per
element): XLA may elide a plain identity, a negation it cannot.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..bench import Prepared
from ..protocol import Array


class JaxBench:
    """Mixin of :class:`~normspec.adapters.jax_adapter.JaxAdapter`."""

    def bench_variants(self, device: str) -> Mapping[str, str | None]:
        """``jit`` on every device JAX has."""
        me: Any = self
        return {"jit": None if device in me.devices() else
                f"device {device!r} unavailable to JAX"}

    def bench_prepare(self, method: str, inputs: Mapping[str, Array | None],
                      hyper: Mapping[str, Any], *, dtype: str, device: str, variant: str,
                      backward: bool, cotangent: Array | None) -> Prepared:
        """Arrays on the device once, the program compiled ahead; ``run()`` blocks."""
        import jax

        from . import _runtime
        from .adapter import _prepare
        from .methods import TRANSLATIONS

        if variant != "jit":
            raise ValueError(f"argument 'variant': got {variant!r}, expected 'jit'")
        call = _prepare(method, inputs, hyper, dtype, device)
        fn = TRANSLATIONS[method].build(_runtime.NUMPY_DTYPES[dtype], **dict(call.hyper))
        args: tuple[Any, ...]
        step: Callable[..., Any]
        if backward:
            if cotangent is None:
                raise ValueError("argument 'cotangent': got None, expected an array for the "
                                 "backward pass")

            def both(primals: Any, state: Any, g: Any) -> Any:
                y, pull = jax.vjp(lambda p: fn(p, state)[0], primals)
                return y, pull(g)[0]

            step = both
            g = _runtime.to_jax("cotangent", cotangent, call.np_dtype, call.device)
            args = (call.primals, call.state, g)
        else:
            def forward(primals: Any, state: Any) -> Any:
                return fn(primals, state)

            step = forward
            args = (call.primals, call.state)
        start = time.perf_counter()
        executable = jax.jit(step).lower(*args).compile()
        compile_s = time.perf_counter() - start
        wait: Any = jax.block_until_ready

        def run() -> object:
            return wait(executable(*args))

        return Prepared(run, compile_s, note="jax.jit, lowered and compiled ahead")

    def bench_copy(self, nbytes: int, *, dtype: str, device: str) -> Callable[[], object]:
        """A jitted negation of an ``nbytes`` buffer (one read, one write per element)."""
        import jax

        from . import _runtime

        _runtime.enable_x64()
        dt = _runtime.check_dtype(dtype)
        n = max(1, nbytes // dt.itemsize)
        src = jax.device_put(np.ones(n, dtype=dt), _runtime.jax_device(device))
        executable = jax.jit(lambda a: -a).lower(src).compile()
        wait: Any = jax.block_until_ready

        def run() -> object:
            return wait(executable(src))

        return run


__all__ = ["JaxBench"]
