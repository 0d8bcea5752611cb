"""``mutant-ghost-running-var-whole-batch``: the running variance tracks the whole batch's
variance instead of the mean within-ghost variance.

Bug class: feeding the running average the variance of the whole batch (the within-ghost
variance plus the spread of the ghost means, by the law of total variance) while training
normalizes each ghost batch with its own spread: evaluation then normalizes with a wider
variance than training saw. Exposed by the ghost_batch_norm state check in training with
tracking on batches whose ghost batches sit at different levels (the ``ghost_offsets``
catalog cases), any dtype; G = 1 is unaffected.
"""

from __future__ import annotations

from typing import Any

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num, Precision, reduce_mean


class WholeBatchVariance(Numerics):
    def ghost_running_update(self, running_mean: Num, running_var: Num, mean: Num, var: Num,
                             f: Any, prec: Precision) -> tuple[Num, Num]:
        spread = mean - reduce_mean(mean, (0,))
        total = var + spread * spread  # averaged below: mean within + between-ghost variance
        return super().ghost_running_update(running_mean, running_var, mean, total, f, prec)


MUTANT = NumpyAdapter("mutant-ghost-running-var-whole-batch", WholeBatchVariance())
