"""``mutant-mixed-alpha-on-running``: alpha weights the running statistics instead of the batch.

Bug class: ``mean = alpha running_mean + (1 - alpha) mean_b`` (and the variance likewise), a
misread of which side alpha belongs to, as with the two momentum conventions. Exposed by every
mixed_eval_batch_norm case with alpha other than 1/2 (alpha 0 and 1 swap batch_norm's
evaluation and training), in every dtype and every check.
"""

from __future__ import annotations

from typing import Any

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num


class AlphaOnRunning(Numerics):
    def mixed_statistics(self, batch_mean: Num, batch_var: Num, running_mean: Num,
                         running_var: Num, alpha: Any) -> tuple[Num, Num]:
        return super().mixed_statistics(batch_mean, batch_var, running_mean, running_var,
                                        alpha.dtype.type(1) - alpha)


MUTANT = NumpyAdapter("mutant-mixed-alpha-on-running", AlphaOnRunning())
