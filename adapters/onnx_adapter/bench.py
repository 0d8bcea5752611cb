"""The ONNX adapters' benchmarking extension (see :mod:`normspec.adapters.bench`).

``onnxruntime`` has one variant, ``ort``: the adapter's single-node model (the one the
conformance run checks) in an InferenceSession with ORT's default thread pool (the conformance
sessions use one thread for reproducibility; a benchmark measures the runtime as users run it),
inputs bound once as OrtValues and outputs bound to preallocated buffers, so a timed call is
``run_with_iobinding`` alone. It is forward only: ONNX Runtime's inference sessions compute no
derivatives, so forward+backward is declined. ``onnx-reference`` is ONNX's NumPy evaluator,
a correctness oracle, and is not benchmarked. The copy roofline is a single ``Neg`` node (one
read and one write per element; an ``Identity`` may be optimized away).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..bench import Prepared
from ..protocol import Array

_NOT_ORT = ("onnx.reference's evaluator is a NumPy oracle for correctness, not a runtime to "
            "benchmark")
_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def _session(model: Any, device: str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    if device != "cpu":
        options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    return ort.InferenceSession(model.SerializeToString(), sess_options=options,
                                providers=[_PROVIDERS[device]])


def _bound(session: Any, names: tuple[str, ...], feeds: list[Any],
           outputs: list[tuple[str, Any]]) -> Callable[[], object]:
    binding = session.io_binding()
    for name, value in zip(names, feeds, strict=True):
        binding.bind_ortvalue_input(name, value)
    for name, value in outputs:
        binding.bind_ortvalue_output(name, value)

    def run() -> object:
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return None

    return run


class OnnxBench:
    """Mixin of :class:`~normspec.adapters.onnx_adapter.OnnxAdapter`."""

    def bench_variants(self, device: str) -> Mapping[str, str | None]:
        """``ort`` for onnxruntime on its devices; nothing for the reference evaluator."""
        me: Any = self
        if getattr(me.backend, "label", "") != "onnxruntime":
            return {"reference": _NOT_ORT}
        if device not in _PROVIDERS or device not in me.devices():
            return {"ort": f"no ONNX Runtime execution provider for device {device!r}"}
        return {"ort": None}

    def bench_prepare(self, method: str, inputs: Mapping[str, Array | None],
                      hyper: Mapping[str, Any], *, dtype: str, device: str, variant: str,
                      backward: bool, cotangent: Array | None) -> Prepared:
        """One session, inputs and outputs bound once; ``run()`` is one session run."""
        import onnxruntime as ort

        from . import translate
        from .model import build, element_type, input_names
        from .runtime import _ort_value, _storage

        if variant != "ort" or getattr(self, "backend", None) is None:
            raise NotImplementedError(_NOT_ORT)
        if backward:
            raise NotImplementedError("ONNX Runtime inference sessions compute no derivatives "
                                      "(forward only)")
        me: Any = self
        support = me.case_support(method, inputs, hyper, dtype=dtype, device=device)
        if not support.supported:
            raise NotImplementedError(support.reason)
        call = translate.plan(method, inputs, hyper, dtype)
        spec = call.node
        session = _session(build(spec), device)
        names = input_names(spec)
        present = [f for f in call.feeds if f is not None]
        feeds = [_ort_value(ort, n, v, dtype) for n, v in zip(names, present, strict=True)]
        outs = [(name, ort.OrtValue.ortvalue_from_numpy_with_onnx_type(
                    np.empty(shape, dtype=_storage(dt)), element_type(dt)))
                for name, dt, shape in spec.outputs]
        return Prepared(_bound(session, names, feeds, outs), None,
                        note=f"onnxruntime {spec.op} (opset {spec.opset}), default threads")

    def bench_copy(self, nbytes: int, *, dtype: str, device: str) -> Callable[[], object]:
        """A one-node ``Neg`` model over an ``nbytes`` buffer."""
        import onnx
        import onnxruntime as ort
        from onnx import helper

        from .model import element_type
        from .runtime import _storage
        from .translate import OPSET

        et = element_type(dtype)
        n = max(1, nbytes // np.dtype(_storage(dtype)).itemsize)
        graph = helper.make_graph(
            [helper.make_node("Neg", ["a"], ["b"])], "copy",
            [helper.make_tensor_value_info("a", et, [n])],
            [helper.make_tensor_value_info("b", et, [n])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        onnx.checker.check_model(model)
        session = _session(model, device)
        src = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(
            np.ones(n, dtype=_storage(dtype)), et)
        dst = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(
            np.empty(n, dtype=_storage(dtype)), et)
        return _bound(session, ("a",), [src], [("b", dst)])


__all__ = ["OnnxBench"]
