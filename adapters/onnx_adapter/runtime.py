"""Run a single-node model: ONNX Runtime sessions and onnx's ReferenceEvaluator, cached.

Both backends take the feeds as float64 NumPy arrays (exactly representable in the dtype under
test), convert them to the model's element type, run, and return the outputs as NumPy arrays
in the type the runtime produced. onnx and onnxruntime are imported inside the methods only.

One model (and one ONNX Runtime session or ReferenceEvaluator) is built per distinct
:class:`~.translate.NodeSpec` and kept in a small LRU cache, so the cases of one shape and
hyperparameter set do not rebuild it.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol

import numpy as np

from ..protocol import Array
from .model import build, element_type, input_names
from .translate import OPSET, NodeSpec

Runner = Callable[[Sequence[Array | None]], list[np.ndarray]]
CACHE_SIZE = 64
"""Models kept per backend; a conformance run has a few hundred distinct nodes at most."""


def numpy_type(dtype: str) -> Any:
    """The NumPy scalar type that holds ``dtype`` (ml_dtypes for bfloat16)."""
    if dtype == "bfloat16":
        import ml_dtypes

        return ml_dtypes.bfloat16
    types = {"float64": np.float64, "float32": np.float32, "float16": np.float16}
    if dtype not in types:
        raise ValueError(f"argument 'dtype': got {dtype!r}, expected one of "
                         f"{[*types, 'bfloat16']}")
    return types[dtype]


def to_dtype(name: str, value: Array, dtype: str) -> np.ndarray:
    """``value`` in ``dtype``; the contract makes this exact, and an inexact one is refused."""
    out = np.ascontiguousarray(np.asarray(value, dtype=np.float64).astype(numpy_type(dtype)))
    if not np.array_equal(out.astype(np.float64), value, equal_nan=True):
        raise ValueError(f"argument 'inputs[{name!r}]': got values that are not representable "
                         f"in {dtype}, expected inputs rounded to the dtype under test")
    return out


def first_line(exc: BaseException) -> str:
    """A one-line description of a runtime failure, for support reasons and messages."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


class Backend(Protocol):
    """What the adapter needs from a runtime."""

    label: str

    def versions(self) -> dict[str, str]: ...

    def devices(self) -> tuple[str, ...]: ...

    def runner(self, spec: NodeSpec, device: str) -> Runner: ...


class _Cache:
    """A bounded least-recently-used map from (spec, device) to a runner."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._size = size
        self._items: OrderedDict[tuple[NodeSpec, str], Runner] = OrderedDict()
        self.builds = 0
        """How many runners were built (tests read it to see the cache work)."""

    def get(self, key: tuple[NodeSpec, str], make: Callable[[], Runner]) -> Runner:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        runner = make()
        self.builds += 1
        self._items[key] = runner
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return runner


class OrtBackend:
    """ONNX Runtime: CPUExecutionProvider, and CUDAExecutionProvider as device ``"cuda"``.

    Sessions run with one intra-op thread (reductions in a reproducible order, and no
    oversubscription of the runner's worker processes) and, on CUDA, with the CPU fallback
    disabled: a node without a CUDA kernel fails the session instead of silently running on
    the CPU under the name ``cuda``. Inputs and outputs are bound as OrtValues because
    onnxruntime's NumPy conversion has no bfloat16; bfloat16 crosses as its uint16 bit pattern.
    """

    label = "onnxruntime"
    PROVIDERS: ClassVar[dict[str, str]] = {"cpu": "CPUExecutionProvider",
                                           "cuda": "CUDAExecutionProvider"}

    def __init__(self) -> None:
        self.cache = _Cache()

    def versions(self) -> dict[str, str]:
        import onnx
        import onnxruntime

        return {"onnxruntime": str(onnxruntime.__version__), "onnx": str(onnx.__version__),
                "opset": str(OPSET), "intra_op_threads": "1"}

    def devices(self) -> tuple[str, ...]:
        import onnxruntime

        available = set(onnxruntime.get_available_providers())
        return tuple(d for d, p in self.PROVIDERS.items() if p in available)

    def runner(self, spec: NodeSpec, device: str) -> Runner:
        if device not in self.PROVIDERS:
            raise ValueError(f"argument 'device': got {device!r}, expected one of "
                             f"{list(self.PROVIDERS)}")
        return self.cache.get((spec, device), lambda: self._make(spec, device))

    def _make(self, spec: NodeSpec, device: str) -> Runner:
        import onnxruntime as ort

        model = build(spec)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        # Declined kernels are reported through exceptions; ORT's own error log (severity 3)
        # would only repeat them on stderr, so it logs fatal errors only.
        options.log_severity_level = 4
        if device != "cpu":
            options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
        session = ort.InferenceSession(model.SerializeToString(), sess_options=options,
                                       providers=[self.PROVIDERS[device]])
        names = input_names(spec)
        outputs = spec.outputs

        def run(feeds: Sequence[Array | None]) -> list[np.ndarray]:
            present = [f for f in feeds if f is not None]
            binding = session.io_binding()
            for name, value in zip(names, present, strict=True):
                binding.bind_ortvalue_input(name, _ort_value(ort, name, value, spec.dtype))
            results: list[np.ndarray] = []
            for name, dtype, shape in outputs:
                buffer = np.empty(shape, dtype=_storage(dtype))
                value = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(buffer,
                                                                         element_type(dtype))
                binding.bind_ortvalue_output(name, value)
                results.append(buffer)
            session.run_with_iobinding(binding)
            # The buffers were bound as the outputs' memory, so they hold the results now.
            return [_from_storage(b, dtype) for b, (_, dtype, _) in zip(results, outputs,
                                                                        strict=True)]

        return run


def _storage(dtype: str) -> Any:
    """The NumPy type of a buffer ORT can bind: bfloat16 travels as uint16 bits."""
    return np.uint16 if dtype == "bfloat16" else numpy_type(dtype)


def _from_storage(buffer: np.ndarray, dtype: str) -> np.ndarray:
    return buffer.view(numpy_type(dtype)) if dtype == "bfloat16" else buffer


def _ort_value(ort: Any, name: str, value: Array, dtype: str) -> Any:
    typed = to_dtype(name, value, dtype)
    bits = typed.view(np.uint16) if dtype == "bfloat16" else typed
    return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(bits, element_type(dtype))


class ReferenceBackend:
    """``onnx.reference.ReferenceEvaluator``: ONNX's own NumPy implementation, CPU only.

    The evaluator runs NumPy on the inputs in their own type (ml_dtypes for bfloat16). NumPy's
    floating-point warnings on the way (0/0, overflow) are IEEE propagation, not errors: the
    result carries them, and the runner compares it.
    """

    label = "onnx.reference.ReferenceEvaluator"

    def __init__(self) -> None:
        self.cache = _Cache()

    def versions(self) -> dict[str, str]:
        import onnx

        return {"onnx": str(onnx.__version__), "opset": str(OPSET)}

    def devices(self) -> tuple[str, ...]:
        return ("cpu",)

    def runner(self, spec: NodeSpec, device: str) -> Runner:
        if device != "cpu":
            raise ValueError(f"argument 'device': got {device!r}, expected 'cpu'")
        return self.cache.get((spec, device), lambda: self._make(spec))

    def _make(self, spec: NodeSpec) -> Runner:
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(build(spec))
        names = input_names(spec)

        def run(feeds: Sequence[Array | None]) -> list[np.ndarray]:
            present = [f for f in feeds if f is not None]
            typed = {n: to_dtype(n, v, spec.dtype) for n, v in zip(names, present, strict=True)}
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                out = evaluator.run(None, typed)
            return [np.asarray(o) for o in out]

        return run
