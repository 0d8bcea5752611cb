"""The built-in ``numpy`` adapter: the spec's straightforward formulas in the dtype under test.

This is the calibration baseline of the tolerance model: a careful implementation written the way
an implementer would write it, independent of :mod:`normspec.reference` (which is the oracle
and must not grade itself). Statistics use two passes (the mean, then the mean of squared
deviations), sums are pairwise, and the derivatives are the closed-form formulas given in each
method module's docstring.

Precision model:

* ``float64`` and ``float32``: every operation runs in that dtype.
* ``float16`` and ``bfloat16`` (from ``ml_dtypes``): inputs are widened exactly to float32, the
  statistics, reductions and elementwise arithmetic run in float32, and each result is rounded
  once to the dtype. This is what real frameworks do for these types: PyTorch computes in its
  ``opmath`` type (float32 for half and bfloat16), Flax forces float32 reductions
  (``force_float32_reductions``), and Keras' normalization layers upcast to at least float32.
* Outputs and gradients are returned as float64 arrays holding the values rounded to the dtype,
  so the output rounding is visible to the comparison. Statistics and running state are
  returned in the compute type (float32 for half inputs), where frameworks keep them; the
  ``num_batches_tracked`` counter is an integer and is returned exactly.
* Inputs must be exactly representable in the dtype (the golden vectors round them first); a
  value that is not raises ValueError rather than being rounded silently.
* NaN and Inf propagate as IEEE arithmetic says; NumPy's floating-point warnings are silenced
  inside the computation.

The numerical steps where implementations differ are methods of :class:`Numerics`; the mutation
self-test (tests/mutants/) builds wrong adapters by replacing one of them::

    >>> import numpy as np
    >>> out = ADAPTER.forward("layer_norm", {"x": np.array([[1.0, 2.0, 3.0]])},
    ...                       {"axis": -1, "eps": 0.0}, dtype="float16", device="cpu")
    >>> out["y"].tolist()
    [[-1.224609375, 0.0, 1.224609375]]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ml_dtypes
import numpy as np

from ..protocol import DTYPES, Array, Support
from ._adaptive_instance_norm import ADAPTIVE_INSTANCE_NORM
from ._adaptive_layer_norm import ADAPTIVE_LAYER_NORM
from ._batch_instance_norm import BATCH_INSTANCE_NORM
from ._batch_norm import BATCH_NORM
from ._batch_renorm import BATCH_RENORM
from ._bench import NumpyBench
from ._conditional_instance_norm import CONDITIONAL_INSTANCE_NORM
from ._geometry import Geometry
from ._ghost_batch_norm import GHOST_BATCH_NORM
from ._global_response_norm import GLOBAL_RESPONSE_NORM
from ._gradient_normalization import GRADIENT_NORMALIZATION
from ._gradnorm import GRADNORM
from ._l2_scale import FIX_NORM, SCALE_NORM, UNIT_NORM
from ._lp_norm import LP_NORM
from ._lrn import LOCAL_RESPONSE_NORM
from ._min_max_scale import MIN_MAX_SCALE
from ._mixed_eval import MIXED_EVAL_BATCH_NORM
from ._moments import GROUP_NORM, INSTANCE_NORM, LAYER_NORM, RMS_NORM
from ._numerics import MethodImpl, Normalized, Numerics
from ._power_norm import POWER_NORM
from ._precision import Num, Precision, precision
from ._qk_norm import QK_NORM
from ._sequence_batch_norm import SEQUENCE_BATCH_NORM
from ._spectral_norm import SPECTRAL_NORM
from ._standardize import STANDARDIZE
from ._sync_batch_norm import SYNC_BATCH_NORM
from ._weight_norm import WEIGHT_NORM
from ._weight_standardization import WEIGHT_STANDARDIZATION

METHODS: dict[str, MethodImpl] = {
    "batch_norm": BATCH_NORM,
    "layer_norm": LAYER_NORM,
    "rms_norm": RMS_NORM,
    "power_norm": POWER_NORM,
    "instance_norm": INSTANCE_NORM,
    "group_norm": GROUP_NORM,
    "lp_norm": LP_NORM,
    "fix_norm": FIX_NORM,
    "scale_norm": SCALE_NORM,
    "unit_norm": UNIT_NORM,
    "local_response_norm": LOCAL_RESPONSE_NORM,
    "ghost_batch_norm": GHOST_BATCH_NORM,
    "batch_renorm": BATCH_RENORM,
    "sync_batch_norm": SYNC_BATCH_NORM,
    "mixed_eval_batch_norm": MIXED_EVAL_BATCH_NORM,
    "batch_instance_norm": BATCH_INSTANCE_NORM,
    "adaptive_instance_norm": ADAPTIVE_INSTANCE_NORM,
    "conditional_instance_norm": CONDITIONAL_INSTANCE_NORM,
    "sequence_batch_norm": SEQUENCE_BATCH_NORM,
    "adaptive_layer_norm": ADAPTIVE_LAYER_NORM,
    "standardize": STANDARDIZE,
    "global_response_norm": GLOBAL_RESPONSE_NORM,
    "min_max_scale": MIN_MAX_SCALE,
    "spectral_norm": SPECTRAL_NORM,
    "qk_norm": QK_NORM,
    "gradnorm": GRADNORM,
    "gradient_normalization": GRADIENT_NORMALIZATION,
    "weight_norm": WEIGHT_NORM,
    "weight_standardization": WEIGHT_STANDARDIZATION,
}
"""The methods this adapter implements."""

class NumpyAdapter(NumpyBench):
    """NumPy formulas in the dtype under test; see the module docstring.

    ``numerics`` supplies the numerical steps; the default is the careful choice for each.
    """

    def __init__(self, name: str = "numpy", numerics: Numerics | None = None) -> None:
        self.name = name
        self.numerics = Numerics() if numerics is None else numerics

    def __repr__(self) -> str:
        return f"NumpyAdapter(name={self.name!r}, numerics={type(self.numerics).__name__})"

    def versions(self) -> dict[str, str]:
        """The NumPy and ml_dtypes versions."""
        return {"numpy": np.__version__, "ml_dtypes": ml_dtypes.__version__}

    def devices(self) -> tuple[str, ...]:
        """NumPy runs on the host CPU only."""
        return ("cpu",)

    def support(self, method: str, dtype: str, device: str) -> Support:
        """Every method in every dtype on cpu, computed by this adapter's own formulas."""
        if method not in METHODS:
            return Support(False, reason=f"unknown method {method!r}; known: {list(METHODS)}")
        if dtype not in DTYPES:
            return Support(False, reason=f"unknown dtype {dtype!r}; known: {list(DTYPES)}")
        if device not in self.devices():
            return Support(False, reason=f"device {device!r} unavailable; NumPy runs on cpu only")
        how = ("computed in float32, rounded to " + dtype
               if dtype in ("float16", "bfloat16") else "computed in " + dtype)
        return Support(True, "native", reason=f"NumPy two-pass formulas, {how}")

    def forward(self, method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
                *, dtype: str, device: str) -> dict[str, Array]:
        """``{"y", statistics..., updated state...}`` per the reference's names."""
        impl, prec, loaded, hyper = self._prepare(method, inputs, hyper, dtype, device)
        with np.errstate(all="ignore"):
            out = impl.forward(self.numerics, prec, loaded, hyper)
        # y is rounded to the dtype; statistics and running state stay in the compute type
        # (float32 for half inputs), as frameworks keep them: a float16 variance of |x| = 300
        # would overflow, and mixed-precision training keeps batch-norm buffers in float32.
        return {key: (prec.result(value) if key == "y"
                      else np.asarray(value, dtype=np.float64)) for key, value in out.items()}

    def vjp(self, method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
            cotangent: Array, *, dtype: str, device: str) -> dict[str, Array]:
        """Gradient of ``sum(cotangent * y)`` for each differentiable input that is not None."""
        impl, prec, loaded, hyper = self._prepare(method, inputs, hyper, dtype, device)
        g = prec.load("cotangent", cotangent)
        _check_cotangent(impl, g, loaded, hyper)
        with np.errstate(all="ignore"):
            grads = impl.vjp(self.numerics, prec, loaded, hyper, g)
        return {key: prec.result(value) for key, value in grads.items()}

    def jvp(self, method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
            tangent: Mapping[str, Array], *, dtype: str, device: str) -> Array:
        """Directional derivative of ``y`` along ``tangent``; missing keys are zero."""
        impl, prec, loaded, hyper = self._prepare(method, inputs, hyper, dtype, device)
        t = _tangent(impl, prec, loaded, tangent)
        with np.errstate(all="ignore"):
            return prec.result(impl.jvp(self.numerics, prec, loaded, hyper, t))

    def second_order(self, method: str, inputs: Mapping[str, Array | None],
                     hyper: Mapping[str, Any], cotangent: Array, tangent: Mapping[str, Array],
                     *, dtype: str, device: str) -> dict[str, Array]:
        """Derivative of :meth:`vjp` (``cotangent`` fixed) along ``tangent``."""
        impl, prec, loaded, hyper = self._prepare(method, inputs, hyper, dtype, device)
        g = prec.load("cotangent", cotangent)
        _check_cotangent(impl, g, loaded, hyper)
        t = _tangent(impl, prec, loaded, tangent)
        with np.errstate(all="ignore"):
            out = impl.second_order(self.numerics, prec, loaded, hyper, g, t)
        return {key: prec.result(value) for key, value in out.items()}

    def _prepare(self, method: str, inputs: Mapping[str, Array | None],
                 hyper: Mapping[str, Any], dtype: str, device: str
                 ) -> tuple[MethodImpl, Precision, dict[str, Num | None], Mapping[str, Any]]:
        if method not in METHODS:
            raise ValueError(f"argument 'method': got {method!r}, expected one of {list(METHODS)}")
        if device not in self.devices():
            raise ValueError(f"argument 'device': got {device!r}, expected one of {self.devices()}")
        impl, prec = METHODS[method], precision(dtype)
        if "num_batches_tracked" in inputs:
            # The step counter is state and arrives with it, as a 0-d array; the translation
            # reads it the way the reference takes it, as an integer keyword.
            inputs = dict(inputs)
            count = inputs.pop("num_batches_tracked")
            hyper = {**hyper, "num_batches_tracked": int(np.asarray(count).item())}
        constants = tuple(getattr(impl, "constants", ()))
        known = set(impl.primals) | set(impl.state) | set(constants)
        unknown = sorted(set(inputs) - known)
        if unknown:
            raise ValueError(
                f"argument 'inputs': got keys {unknown} that {method} does not take, expected a "
                f"subset of {sorted(known)}"
            )
        if inputs.get("x") is None:
            raise ValueError(f"argument 'inputs': got no 'x', expected the input of {method}")
        loaded: dict[str, Num | None] = {}
        for key in (*impl.primals, *impl.state):
            # state may also arrive as a keyword, the way the reference takes it
            value = inputs.get(key, hyper.get(key) if key in impl.state else None)
            load = prec.load_state if key in impl.state else prec.load
            loaded[key] = None if value is None else load(f"inputs[{key!r}]", value)
        for key in constants:
            # integer and boolean inputs (shard sizes, masks) are read as they are, never
            # converted to the dtype under test; the reference takes them by keyword too
            value = inputs.get(key, hyper.get(key))
            loaded[key] = None if value is None else np.asarray(value)
        return impl, prec, loaded, hyper


def _check_cotangent(impl: MethodImpl, g: Num, loaded: Mapping[str, Num | None],
                     hyper: Mapping[str, Any]) -> None:
    """The cotangent has y's shape: x's, or what a method with ``output_shape`` says."""
    shape_of = getattr(impl, "output_shape", None)
    if shape_of is None:
        _check_like("cotangent", g, loaded["x"])
    elif g.shape != shape_of(loaded, hyper):
        raise ValueError(f"argument 'cotangent': got shape {g.shape}, expected "
                         f"{shape_of(loaded, hyper)}")


def _check_like(name: str, value: Num, like: Num | None) -> None:
    assert like is not None
    if value.shape != like.shape:
        raise ValueError(f"argument {name!r}: got shape {value.shape}, expected {like.shape}")


def _tangent(impl: MethodImpl, prec: Precision, loaded: Mapping[str, Num | None],
             tangent: Mapping[str, Array]) -> dict[str, Num]:
    """Load the tangent; keys must be differentiable inputs that are present."""
    allowed = [k for k in impl.primals if loaded.get(k) is not None]
    unknown = sorted(set(tangent) - set(allowed))
    if unknown:
        raise ValueError(
            f"argument 'tangent': got keys {unknown}, expected a subset of the differentiable "
            f"inputs present {allowed}"
        )
    out: dict[str, Num] = {}
    for key, value in tangent.items():
        arr = prec.load(f"tangent[{key!r}]", value)
        _check_like(f"tangent[{key!r}]", arr, loaded[key])
        out[key] = arr
    return out


def make_adapter(name: str = "numpy", numerics: Numerics | None = None) -> NumpyAdapter:
    """A :class:`NumpyAdapter`; ``numerics`` replaces the default numerical steps."""
    return NumpyAdapter(name=name, numerics=numerics)


ADAPTER = make_adapter()
"""The ``numpy`` adapter instance (entry point ``normspec.adapters.numpy_adapter:ADAPTER``)."""

__all__ = ["ADAPTER", "METHODS", "Geometry", "Normalized", "Numerics", "NumpyAdapter",
           "Precision", "make_adapter"]
