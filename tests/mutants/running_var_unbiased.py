"""``mutant-running-var-unbiased``: always feeds the unbiased var*n/(n-1) to the running average.

Bug class: PyTorch's convention applied where the biased one is due (porting a Flax/Keras/ONNX
model with PyTorch semantics). Exposed by the batch_norm state check in training with tracking
and ``running_var_estimator="biased"``, small per-channel count, any dtype.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num


class RunningVarUnbiased(Numerics):
    def running_var_sample(self, var: Num, n: int, estimator: str) -> Num:
        return var * (var.dtype.type(n) / var.dtype.type(n - 1))


MUTANT = NumpyAdapter("mutant-running-var-unbiased", RunningVarUnbiased())
