"""``mutant-lrn-window-onnx-even``: the LRN window leans forward for even sizes (ONNX placement).

Bug class: ONNX's window ``[c - floor((size-1)/2), c + ceil((size-1)/2)]`` where the spec
(PyTorch) has ``[c - floor(size/2), c + floor((size-1)/2)]`` (pytorch#75722). The two agree for
odd sizes; local_response_norm with an even size (2 or 4) and more than ``size`` channels
exposes it, every check, any dtype (given alpha large enough to see, as for the alpha mutant).
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter


class OnnxWindow(Numerics):
    def lrn_window(self, size: int) -> tuple[int, int]:
        return (size - 1) // 2, size // 2


MUTANT = NumpyAdapter("mutant-lrn-window-onnx-even", OnnxWindow())
