"""A complete minimal normspec adapter: a hand-written RMSNorm kernel in PyTorch.

This is the adapter the adapter-author guide walks through, and a test runs it through
``normspec run``. Replace ``my_rms_norm`` with your own kernel (a Triton or CUDA extension, a
compiled graph, ...), keep the rest. Run it with::

    normspec run --adapter docs/examples/minimal_adapter.py:ADAPTER --method rms_norm

What the contract asks for (see ``normspec.adapters.protocol``):

* a ``name`` and ``versions()``: the name labels the reports and names the ledger file
  (``<name>.toml``), the versions are recorded in every report;
* ``devices()`` and ``support(method, dtype, device)``: say what you implement, and why not the
  rest; an unsupported combination is reported as a skip with your reason;
* ``forward``, ``vjp``, ``jvp`` and ``second_order``, taking and returning float64 NumPy arrays.
  Convert the inputs to *your* dtype first (exact: the vectors round inputs to the dtype under
  test) and convert the results back to float64 after computing in that dtype.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from normspec.adapters import Support

Array = np.ndarray


def my_rms_norm(x: Any, weight: Any, bias: Any, eps: float, axis: int) -> Any:
    """The kernel under test: y = x / sqrt(mean(x^2 over axes axis..) + eps) * weight + bias.

    Like most fused kernels it accumulates in float32 for 16-bit inputs. It also rescales each
    row by ``s = max(max|x|, sqrt(eps))`` first, ``y = z / sqrt(mean(z^2) + eps / s^2)`` with
    ``z = x / s``: the spec's ``huge`` and ``tiny`` cases have squares that overflow or
    underflow the dtype, and the naive formula fails them. ``s`` is held constant for autodiff
    (``y`` does not depend on it mathematically), so the derivatives stay exact.
    """
    import torch

    dims = tuple(range(axis % x.ndim, x.ndim))
    acc = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    floor = torch.tensor(eps, dtype=acc.dtype, device=acc.device).sqrt()
    s = torch.maximum(acc.detach().abs().amax(dim=dims, keepdim=True), floor)
    # All-zero rows with eps = 0, and rows holding Inf or NaN: no rescaling (IEEE propagation).
    s = torch.where(torch.isfinite(s) & (s > 0), s, torch.ones_like(s))
    z = acc / s
    # eps / s / s, not eps / s^2: s^2 may underflow to 0 (0 / 0 when eps = 0).
    y = (z * torch.rsqrt(z.square().mean(dim=dims, keepdim=True) + eps / s / s)).to(x.dtype)
    y = y * weight if weight is not None else y
    return y + bias if bias is not None else y


class MinimalAdapter:
    """RMSNorm only, on the CPU (and CUDA when present), in every dtype."""

    name = "minimal"

    def versions(self) -> dict[str, str]:
        import torch

        return {"torch": torch.__version__}

    def devices(self) -> tuple[str, ...]:
        import torch

        return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)

    def support(self, method: str, dtype: str, device: str) -> Support:
        if method != "rms_norm":
            return Support(False, reason="this example implements rms_norm only")
        if device not in self.devices():
            return Support(False, reason=f"device {device!r} is not available")
        # Composed: built from torch primitives, not torch's own RMSNorm operator.
        return Support(True, kind="composed", reason="my_rms_norm, torch.func for derivatives")

    # Conversions: exact into the dtype under test, exact back to float64 (a widening).

    @staticmethod
    def _tensor(a: Array | None, dtype: str, device: str) -> Any:
        import torch

        if a is None:
            return None
        return torch.from_numpy(np.asarray(a, np.float64)).to(getattr(torch, dtype)).to(device)

    @staticmethod
    def _array(t: Any) -> Array:
        import torch

        return np.asarray(t.detach().to("cpu", torch.float64).numpy())

    def _function(self, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
                  dtype: str, device: str) -> tuple[Any, tuple[str, ...], tuple[Any, ...]]:
        """The kernel as a function of the primals that are present, and those primals."""
        names = tuple(n for n in ("x", "weight", "bias") if inputs.get(n) is not None)
        primals = tuple(self._tensor(inputs[n], dtype, device) for n in names)
        # The spec's canonical hyperparameters, translated explicitly: eps and axis as given.
        eps, axis = float(hyper["eps"]), int(hyper["axis"])

        def f(*p: Any) -> Any:
            named = dict(zip(names, p, strict=False))
            return my_rms_norm(named["x"], named.get("weight"), named.get("bias"), eps, axis)

        return f, names, primals

    def forward(self, method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
                *, dtype: str, device: str) -> dict[str, Array]:
        f, _, primals = self._function(inputs, hyper, dtype, device)
        # Statistics (mean_square, rrms) are optional: this kernel does not expose them.
        return {"y": self._array(f(*primals))}

    def vjp(self, method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
            cotangent: Array, *, dtype: str, device: str) -> dict[str, Array]:
        import torch

        f, names, primals = self._function(inputs, hyper, dtype, device)
        _, pullback = torch.func.vjp(f, *primals)
        grads = pullback(self._tensor(cotangent, dtype, device))
        return {n: self._array(g) for n, g in zip(names, grads, strict=False)}

    def jvp(self, method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
            tangent: Mapping[str, Array], *, dtype: str, device: str) -> Array:
        import torch

        f, names, primals = self._function(inputs, hyper, dtype, device)
        tangents = tuple(self._tangent(tangent, n, p, dtype, device)
                         for n, p in zip(names, primals, strict=False))
        _, out = torch.func.jvp(f, primals, tangents)
        return self._array(out)

    def second_order(self, method: str, inputs: Mapping[str, Array | None],
                     hyper: Mapping[str, Any], cotangent: Array, tangent: Mapping[str, Array],
                     *, dtype: str, device: str) -> dict[str, Array]:
        import torch

        f, names, primals = self._function(inputs, hyper, dtype, device)
        g = self._tensor(cotangent, dtype, device)

        def gradients(*p: Any) -> Any:
            return torch.func.vjp(f, *p)[1](g)

        tangents = tuple(self._tangent(tangent, n, p, dtype, device)
                         for n, p in zip(names, primals, strict=False))
        _, out = torch.func.jvp(gradients, primals, tangents)
        return {n: self._array(d) for n, d in zip(names, out, strict=False)}

    def _tangent(self, tangent: Mapping[str, Array], name: str, primal: Any, dtype: str,
                 device: str) -> Any:
        import torch

        # A missing tangent means zero, as in the reference.
        t = tangent.get(name)
        return torch.zeros_like(primal) if t is None else self._tensor(t, dtype, device)


ADAPTER = MinimalAdapter()
"""The instance ``normspec run --adapter .../minimal_adapter.py:ADAPTER`` loads."""
