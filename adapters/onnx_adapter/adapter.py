"""The ``onnxruntime`` and ``onnx-reference`` adapters: forward and state through one ONNX node.

Each call builds (or reuses) a single-node model for the method's ONNX operator
(:mod:`.translate`, :mod:`.model`) and runs it in the backend (:mod:`.runtime`). ONNX computes
no derivatives, so every combination is declared forward-only (:meth:`Support.forward_only`).

Dtypes are probed, not listed: the first :meth:`support` question for a (method, dtype, device)
builds a tiny model of that method in that dtype and runs it. A runtime without a kernel for the
dtype makes the combination unsupported, with the runtime's own message as the reason. The
adapter never wraps the node in Casts to a wider type instead: that would test the float32
kernel under another dtype's name (and for float64 there is no wider type), which the
float32 row already reports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..protocol import DTYPES, Array, Support
from . import translate
from .bench import OnnxBench
from .model import build
from .runtime import Backend, OrtBackend, ReferenceBackend, first_line

NO_DERIVATIVES = {
    "onnxruntime": "ONNX Runtime computes no derivatives (an inference runtime)",
    "onnx-reference": "onnx's ReferenceEvaluator computes no derivatives (an inference "
                      "evaluator)",
}

_PROBES: dict[str, tuple[tuple[dict[str, Any], dict[str, Any]], ...]] = {
    "batch_norm": (
        ({"x": (2, 3, 4), "weight": (3,), "bias": (3,), "running_mean": (3,),
          "running_var": (3,)}, {"training": False, "eps": 1e-5}),
        ({"x": (2, 3, 4), "running_mean": (3,), "running_var": (3,)},
         {"training": True, "eps": 1e-5, "batch_stat_weight": 0.5,
          "running_var_estimator": "biased"}),
    ),
    "layer_norm": (({"x": (2, 4), "weight": (4,), "bias": (4,)}, {"axis": 1, "eps": 1e-5}),),
    "rms_norm": (({"x": (2, 4), "weight": (4,)}, {"axis": 1, "eps": 1e-5}),),
    "instance_norm": (({"x": (2, 3, 4), "weight": (3,), "bias": (3,)}, {"eps": 1e-5}),),
    "group_norm": (({"x": (2, 4, 3), "weight": (4,), "bias": (4,)},
                    {"groups": 2, "eps": 1e-5}),),
    "lp_norm": (({"x": (2, 3)}, {"p": 2.0, "axis": 1, "eps": 0.0}),
                ({"x": (2, 3)}, {"p": 1.0, "axis": 1, "eps": 0.0})),
    "local_response_norm": (({"x": (2, 3, 4)}, {"size": 3, "alpha": 1e-4, "beta": 0.75,
                                                 "k": 1.0}),),
}
"""Tiny calls that exercise every node variant of a method (both BatchNormalization modes)."""


def _probe_inputs(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Array | None]:
    # Small integers and halves: exact in every dtype, variance 1.25 > 0, no zero vector.
    out: dict[str, Array | None] = {}
    for name, shape in shapes.items():
        if name == "running_var":
            out[name] = np.ones(shape)
        else:
            out[name] = (np.arange(int(np.prod(shape)), dtype=np.float64) % 4 + 0.5
                         ).reshape(shape)
    return out


class OnnxAdapter(OnnxBench):
    """One ONNX backend behind the adapter contract; see the module docstring.

    Besides the protocol it offers :meth:`case_support` (declined cases, quantities ONNX
    cannot produce) and :meth:`probe` (the cached dtype probe).
    """

    def __init__(self, name: str, backend: Backend, install: str) -> None:
        self.name = name
        self.backend = backend
        self._install = install
        self._probes: dict[tuple[str, str, str], str | None] = {}

    # --- availability ---

    def _missing(self) -> str | None:
        """Why the backend cannot load, or None."""
        try:
            self.backend.versions()
        except ImportError as exc:
            return f"{exc.name or 'onnx'} is not installed ({self._install})"
        return None

    def versions(self) -> dict[str, str]:
        """onnx, onnxruntime (for ``onnxruntime``) and the models' opset."""
        if self._missing() is not None:
            return {"onnx": "not installed"}
        return self.backend.versions()

    def devices(self) -> tuple[str, ...]:
        """``("cpu",)``, plus ``"cuda"`` when onnxruntime-gpu's CUDA provider is present."""
        if self._missing() is not None:
            return ()
        return self.backend.devices()

    # --- support ---

    def probe(self, method: str, dtype: str, device: str) -> str | None:
        """None when a tiny ``method`` model in ``dtype`` runs on ``device``, else the failure.

        Computed once per (method, dtype, device), at first use.
        """
        key = (method, dtype, device)
        if key not in self._probes:
            self._probes[key] = self._run_probe(method, dtype, device)
        return self._probes[key]

    def _run_probe(self, method: str, dtype: str, device: str) -> str | None:
        for shapes, hyper in _PROBES[method]:
            call = translate.plan(method, _probe_inputs(shapes), hyper, dtype)
            # Outside the try: a model onnx itself rejects is an adapter bug, not a missing
            # kernel, and must not be reported as one.
            build(call.node)
            try:
                self.backend.runner(call.node, device)(call.feeds)
            except Exception as exc:
                # Any failure to build or run is the answer the probe is for.
                return f"{call.node.op} (opset {call.node.opset}) in {dtype}: {first_line(exc)}"
        return None

    def support(self, method: str, dtype: str, device: str) -> Support:
        """Forward and state where the probe's model runs; never raises."""
        if method not in translate.METHODS:
            return Support(False, reason=f"unknown method {method!r}; expected one of "
                                         f"{list(translate.METHODS)}")
        if dtype not in DTYPES:
            return Support(False, reason=f"unknown dtype {dtype!r}; expected one of {list(DTYPES)}")
        missing = self._missing()
        if missing is not None:
            return Support(False, reason=missing)
        if device not in self.devices():
            why = ("no CUDAExecutionProvider (install onnxruntime-gpu)" if device == "cuda"
                   else f"unknown device {device!r}")
            return Support(False, reason=f"device {device!r} unavailable: {why}")
        if method == "layer_norm" and dtype == "float64":
            return Support(False, reason=translate.LAYER_NORM_FLOAT64)
        failure = self.probe(method, dtype, device)
        if failure is not None:
            return Support(False, reason=f"no {dtype} kernel in {self.backend.label} "
                                         f"(probed): {failure}")
        op = translate.OPS[method]
        reason = (f"ONNX {op} (opset {translate.OPSET}) in {self.backend.label} on {device}; "
                  f"a {dtype} model ran when probed")
        return Support.forward_only(NO_DERIVATIVES[self.name], kind="native", reason=reason)

    def case_support(self, method: str, inputs: Mapping[str, Array | None],
                     hyper: Mapping[str, Any], *, dtype: str, device: str) -> Support:
        """:meth:`support`, refined for one case: declined cases and unproducible quantities."""
        base = self.support(method, dtype, device)
        if not base.supported:
            return base
        why = translate.decline(method, inputs, hyper)
        if why is not None:
            return Support(False, reason=why)
        missing = translate.not_produced(method, inputs, hyper)
        if not missing:
            return base
        return Support.forward_only(NO_DERIVATIVES[self.name], kind=base.kind,
                                    reason=base.reason, not_produced=missing)

    # --- computations ---

    def forward(self, method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
                *, dtype: str, device: str) -> dict[str, Array]:
        """``{"y": ...}`` plus the statistics and running state the ONNX operator returns."""
        support = self.case_support(method, inputs, hyper, dtype=dtype, device=device)
        if not support.supported:
            raise ValueError(f"argument 'method'/'dtype'/'device': got ({method!r}, {dtype!r}, "
                             f"{device!r}) with this case, which this adapter does not run: "
                             f"{support.reason}")
        call = translate.plan(method, inputs, hyper, dtype)
        out = call.finish(self.backend.runner(call.node, device)(call.feeds))
        # A quantity the op cannot produce correctly is left out, not returned wrong.
        for quantity in support.not_produced:
            out.pop(quantity.removeprefix("forward/"), None)
        return out

    def _no_derivatives(self, what: str) -> NotImplementedError:
        return NotImplementedError(f"{what}: {NO_DERIVATIVES[self.name]}; support() declares "
                                   "the derivative checks not implemented")

    def vjp(self, method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
            cotangent: Array, *, dtype: str, device: str) -> dict[str, Array]:
        """Not implemented: ONNX has no derivatives."""
        raise self._no_derivatives("vjp")

    def jvp(self, method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
            tangent: Mapping[str, Array], *, dtype: str, device: str) -> Array:
        """Not implemented: ONNX has no derivatives."""
        raise self._no_derivatives("jvp")

    def second_order(self, method: str, inputs: Mapping[str, Array | None],
                     hyper: Mapping[str, Any], cotangent: Array, tangent: Mapping[str, Array],
                     *, dtype: str, device: str) -> dict[str, Array]:
        """Not implemented: ONNX has no derivatives."""
        raise self._no_derivatives("second_order")


_INSTALL = "pip install 'normspec[onnx]'"


def make_onnxruntime() -> OnnxAdapter:
    """A fresh ``onnxruntime`` adapter."""
    return OnnxAdapter("onnxruntime", OrtBackend(), _INSTALL)


def make_reference() -> OnnxAdapter:
    """A fresh ``onnx-reference`` adapter."""
    return OnnxAdapter("onnx-reference", ReferenceBackend(), _INSTALL)


__all__: Sequence[str] = ("NO_DERIVATIVES", "OnnxAdapter", "make_onnxruntime", "make_reference")
