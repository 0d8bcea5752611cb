"""``mutant-rms-norm-subtracts-mean``: rms_norm centers its input (it becomes layer norm).

Bug class: Keras ``LayerNormalization(rms_scaling=True)`` (deprecated for exactly this) and
kernels that reuse a LayerNorm path. Exposed by rms_norm forward and derivatives on any input
with a non-zero row mean (every random case; strongly by offset cases), any dtype.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter


class RmsSubtractsMean(Numerics):
    def rms_centered(self) -> bool:
        return True


MUTANT = NumpyAdapter("mutant-rms-norm-subtracts-mean", RmsSubtractsMean())
