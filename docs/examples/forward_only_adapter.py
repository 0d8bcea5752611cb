"""A forward-only normspec adapter: an RMSNorm inference kernel in plain NumPy.

The adapter-author guide walks through it in "Forward-only and partial adapters", and a test
runs it through ``normspec run``. It stands for an implementation without derivatives: an
inference runtime, a compiled graph, a forward kernel. Run it with::

    normspec run --adapter docs/examples/forward_only_adapter.py:ADAPTER --method rms_norm

What it shows, beyond the minimal example:

* ``Support.forward_only``: the derivative checks are declared not implemented. They are
  reported as ``skip`` with the reason, ``vjp``, ``jvp`` and ``second_order`` are never called,
  and a run where everything implemented passes exits with status 0;
* ``not_produced``: one quantity the kernel cannot return (``forward/mean_square``) is skipped
  with its reason, and the other quantities of the check are still compared;
* ``case_support``: cases outside the kernel's domain (``eps = 0``) are declined, with the
  reason, before any other call of the case is made.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ml_dtypes
import numpy as np
import numpy.typing as npt
from normspec.adapters import Support

Array = npt.NDArray[np.float64]

NO_DERIVATIVES = "an inference kernel: it computes no derivatives"
NO_MEAN_SQUARE = "the kernel keeps only rrms, the statistic a backward pass would reuse"
NEEDS_EPS = "the kernel requires eps > 0 (it has no guard against an all-zero row)"

STORAGE: dict[str, np.dtype[Any]] = {
    "float64": np.dtype(np.float64),
    "float32": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
}
"""The array type the kernel reads and writes for each dtype under test."""


def rms_norm_kernel(x: npt.NDArray[Any], weight: npt.NDArray[Any] | None,
                    bias: npt.NDArray[Any] | None, eps: float,
                    axis: int) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """The kernel under test: ``(y, rrms)``, y = x * rrms * weight + bias, rrms = 1 /
    sqrt(mean(x^2) + eps) over the axes ``axis..ndim-1``.

    ``y`` comes back in the dtype of ``x``, rounded once. ``rrms`` stays in the compute type,
    as a fused kernel saves it for its backward pass.
    """
    if eps <= 0:
        raise ValueError(f"argument 'eps': got {eps!r}, expected a number > 0")
    # 16-bit inputs accumulate in float32, as the precision contract asks: a float16 square
    # overflows above |x| = 256.
    compute = np.dtype(np.float32) if x.dtype.itemsize == 2 else x.dtype
    xc = x.astype(compute)
    dims = tuple(range(axis % x.ndim, x.ndim))
    # NaN and Inf propagate as IEEE arithmetic says; NumPy's warnings about them are noise here.
    with np.errstate(all="ignore"):
        mean_square = np.mean(xc * xc, axis=dims, keepdims=True)
        rrms = 1 / np.sqrt(mean_square + compute.type(eps))
        y = xc * rrms
        if weight is not None:
            y = y * weight.astype(compute)
        if bias is not None:
            y = y + bias.astype(compute)
    return y.astype(x.dtype), rrms


class ForwardOnlyAdapter:
    """RMSNorm forward on the CPU, in every dtype; no derivatives."""

    name = "forward-only"

    def versions(self) -> dict[str, str]:
        return {"numpy": np.__version__, "ml_dtypes": ml_dtypes.__version__}

    def devices(self) -> tuple[str, ...]:
        return ("cpu",)

    def support(self, method: str, dtype: str, device: str) -> Support:
        if method != "rms_norm":
            return Support(False, reason="this example implements rms_norm only")
        if device not in self.devices() or dtype not in STORAGE:
            return Support(False, reason=f"({dtype!r}, {device!r}) is not available")
        # Native: the kernel itself computes every value; the adapter only converts arrays.
        return Support.forward_only(NO_DERIVATIVES, kind="native",
                                    reason="rms_norm_kernel, float32 accumulation for 16-bit",
                                    not_produced={"forward/mean_square": NO_MEAN_SQUARE})

    def case_support(self, method: str, inputs: Mapping[str, Array | None],
                     hyper: Mapping[str, Any], *, dtype: str, device: str) -> Support:
        """:meth:`support`, refined for one case: cases with ``eps = 0`` are declined."""
        base = self.support(method, dtype, device)
        if base.supported and float(hyper["eps"]) <= 0:
            return Support(False, reason=NEEDS_EPS)
        return base

    def forward(self, method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
                *, dtype: str, device: str) -> dict[str, Array]:
        x = _load(inputs["x"], dtype)
        weight, bias = inputs.get("weight"), inputs.get("bias")
        axis = int(hyper["axis"])
        y, rrms = rms_norm_kernel(x, None if weight is None else _load(weight, dtype),
                                  None if bias is None else _load(bias, dtype),
                                  float(hyper["eps"]), axis)
        # rrms goes back in the compute type (float32 for 16-bit inputs), not rounded to the
        # dtype under test; the reference reports it with shape x.shape[:axis].
        stat_shape = x.shape[:axis % x.ndim]
        return {"y": y.astype(np.float64), "rrms": rrms.astype(np.float64).reshape(stat_shape)}

    # Never called: support() declares the derivative checks not implemented. The methods exist
    # because the loader checks every attribute of the protocol.

    def vjp(self, method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
            cotangent: Array, *, dtype: str, device: str) -> dict[str, Array]:
        raise NotImplementedError(NO_DERIVATIVES)

    def jvp(self, method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
            tangent: Mapping[str, Array], *, dtype: str, device: str) -> Array:
        raise NotImplementedError(NO_DERIVATIVES)

    def second_order(self, method: str, inputs: Mapping[str, Array | None],
                     hyper: Mapping[str, Any], cotangent: Array, tangent: Mapping[str, Array],
                     *, dtype: str, device: str) -> dict[str, Array]:
        raise NotImplementedError(NO_DERIVATIVES)


def _load(a: Array | None, dtype: str) -> npt.NDArray[Any]:
    # Exact: the vectors round every input to the dtype under test first.
    if a is None:
        raise ValueError("argument 'inputs': got no 'x', expected the input array under 'x'")
    return np.asarray(a, dtype=np.float64).astype(STORAGE[dtype])


ADAPTER = ForwardOnlyAdapter()
"""The instance ``normspec run --adapter .../forward_only_adapter.py:ADAPTER`` loads."""
