"""The optional benchmarking extension of the adapter contract (``normspec bench``).

A conformance-only adapter needs none of this: ``normspec bench`` then times the protocol's own
``forward`` (and ``forward`` + ``vjp``), conversions from and to float64 NumPy included, and
says so in every result (``timing = "protocol"``). An adapter that wants its kernels timed alone
adds three methods (see :class:`Benchmarkable`):

* ``bench_variants(device)``: the ways it can run, e.g. ``{"eager": None, "compile": None}``;
  a variant mapped to a string is not runnable here and the string says why (no C++ compiler
  for ``torch.compile``, no derivatives in ONNX Runtime...). Results of a variant are labelled
  ``<adapter>/<variant>``.
* ``bench_prepare(method, inputs, hyper, *, dtype, device, variant, backward, cotangent)``:
  convert the inputs to the framework's tensors on the device **once**, compile whatever has to
  be compiled, and return a :class:`Prepared` whose ``run()`` performs one call (forward, or
  forward then backward when ``backward`` is true) and returns only when the device has
  finished it (``torch.cuda.synchronize()``, ``jax.block_until_ready``). Time spent compiling
  goes into ``Prepared.compile_s`` and never into a timed call.
* ``bench_copy(nbytes, *, dtype, device)``: a plain copy of a buffer of ``nbytes`` bytes in the
  same framework on the same device, returned as a callable with the same synchronization: the
  roofline each result is a percentage of.

The arguments mean what they mean in :class:`normspec.adapters.Adapter`: float64 NumPy inputs
holding values representable in ``dtype``, canonical hyperparameters. ``backward`` asks for
the gradient of ``sum(cotangent * y)`` with respect to every differentiable input present, as
``vjp`` computes it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .protocol import Array


@dataclass(frozen=True)
class Prepared:
    """One prepared call: ``run()`` executes it once and returns when the device is done."""

    run: Callable[[], object]
    compile_s: float | None = None
    """Seconds spent compiling (JAX ``lower`` + ``compile``, torch.compile's first call);
    None when nothing was compiled."""
    note: str = ""
    """What runs, shown with the result (e.g. ``"jax.jit, lowered and compiled ahead"``)."""


@runtime_checkable
class Benchmarkable(Protocol):
    """An adapter that can time its own kernels (all three methods, or none)."""

    def bench_variants(self, device: str) -> Mapping[str, str | None]:
        """Variant name -> None when it runs on ``device``, else the reason it does not."""
        ...

    def bench_prepare(self, method: str, inputs: Mapping[str, Array | None],
                      hyper: Mapping[str, Any], *, dtype: str, device: str, variant: str,
                      backward: bool, cotangent: Array | None) -> Prepared:
        """Put the inputs on the device, compile, and return the call to time."""
        ...

    def bench_copy(self, nbytes: int, *, dtype: str, device: str) -> Callable[[], object]:
        """A synchronized copy of an ``nbytes`` buffer of ``dtype`` on ``device``."""
        ...


def is_benchmarkable(adapter: object) -> bool:
    """Whether ``adapter`` implements the extension (structurally, as the protocol is)."""
    return isinstance(adapter, Benchmarkable)


__all__ = ["Benchmarkable", "Prepared", "is_benchmarkable"]
