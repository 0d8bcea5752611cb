"""``mutant-lrn-alpha-not-divided``: LRN uses ``alpha`` where ``alpha/size`` is due.

Bug class: TensorFlow's ``local_response_normalization`` convention (alpha not divided by the
window size) used for the PyTorch/ONNX definition. Exposed by local_response_norm with
size > 1 and ``alpha * sum(x^2)`` not negligible against k (alpha ~ 1e-2..1 with unit-scale
inputs; the PyTorch default alpha = 1e-4 only shows it in float32/float64), every check.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter


class AlphaNotDivided(Numerics):
    def lrn_coefficient(self, alpha: float, size: int) -> float:
        return alpha


MUTANT = NumpyAdapter("mutant-lrn-alpha-not-divided", AlphaNotDivided())
