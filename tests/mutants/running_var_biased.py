"""``mutant-running-var-biased``: feeds the biased batch variance to the running average always.

Bug class: ignoring ``running_var_estimator="unbiased"`` (PyTorch's convention, var*n/(n-1)), as
Flax, Keras and ONNX do natively; an adapter that forgets to translate it is wrong by n/(n-1).
Exposed by the batch_norm state check in training with tracking and
``running_var_estimator="unbiased"`` and a small per-channel count (n = 8: 14%), any dtype.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num


class RunningVarBiased(Numerics):
    def running_var_sample(self, var: Num, n: int, estimator: str) -> Num:
        return var


MUTANT = NumpyAdapter("mutant-running-var-biased", RunningVarBiased())
