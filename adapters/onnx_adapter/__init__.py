"""The built-in ONNX adapters: ``onnxruntime`` and ``onnx-reference`` (forward and state only).

Entry points ``normspec.adapters.onnx_adapter:ONNXRUNTIME`` and ``...:ONNX_REFERENCE``.
Importing this package imports neither onnx nor onnxruntime; they load on the first call that
needs them. The translations live in :mod:`.translate`, model building in :mod:`.model`,
sessions and the evaluator in :mod:`.runtime`, the protocol in :mod:`.adapter`. Known
deviations are recorded in ``adapters/ledgers/onnxruntime.toml`` and
``adapters/ledgers/onnx-reference.toml``, with repros in ``docs/errata/onnx.md``.
"""

from __future__ import annotations

from .adapter import OnnxAdapter, make_onnxruntime, make_reference

ONNXRUNTIME = make_onnxruntime()
"""The instance the ``onnxruntime`` entry point names."""
ONNX_REFERENCE = make_reference()
"""The instance the ``onnx-reference`` entry point names."""

__all__ = ["ONNXRUNTIME", "ONNX_REFERENCE", "OnnxAdapter", "make_onnxruntime", "make_reference"]
