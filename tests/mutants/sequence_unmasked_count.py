"""``mutant-sequence-unmasked-count``: sequence_batch_norm divides masked sums by the full count.

Bug class: ``sum(x * mask) / N`` (or ``/ (N * T)``): padding is kept out of the sums but not out
of the count, so the mean and the variance shrink by the valid share and the unbiased factor
uses the padded count. Exposed by every training case whose rows are not full (uneven lengths,
empty sequences), forward and derivatives, any dtype; full masks and evaluation are unaffected.
"""

from __future__ import annotations

import numpy as np
from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num


class UnmaskedCount(Numerics):
    def sequence_count(self, stat_mask: Num, axes: tuple[int, ...]) -> Num:
        full = int(np.prod([stat_mask.shape[a] for a in axes]))
        count: Num = np.full_like(np.sum(stat_mask, axis=axes, keepdims=True), full)
        return count


MUTANT = NumpyAdapter("mutant-sequence-unmasked-count", UnmaskedCount())
