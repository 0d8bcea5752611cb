"""``mutant-running-var-swapped``: the two running-variance estimators swapped.

Bug class: a translation table with ``biased``/``unbiased`` the wrong way round (PyTorch's
unbiased running variance mapped onto a flag that means the opposite, e.g. Keras/Flax have no
unbiased option and ONNX's ``training_mode`` output is biased). Exposed by the batch_norm state
check in training with tracking, with either estimator, wherever ``f var/(n-1)`` stands out of
the dtype's roundoff (the rows "biased/unbiased running variance" of docs/coverage.md).
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num


class SwappedEstimators(Numerics):
    def running_var_sample(self, var: Num, n: int, estimator: str) -> Num:
        other = "biased" if estimator == "unbiased" else "unbiased"
        return super().running_var_sample(var, n, other)


MUTANT = NumpyAdapter("mutant-running-var-swapped", SwappedEstimators())
