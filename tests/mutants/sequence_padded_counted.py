"""``mutant-sequence-padded-counted``: sequence_batch_norm counts padding in its statistics.

Bug class: batch norm run on the padded tensor as if every position were data (BatchNorm1d on
the padded batch instead of the packed one), so padding values and their count enter the mean,
the variance and the running statistics. Exposed by every sequence_batch_norm case with padding,
every check, any dtype: NaN/Inf padding poisons the whole output, finite padding shifts it;
cases without padding (full masks) are unaffected.
"""

from __future__ import annotations

import numpy as np
from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num


class PaddedCounted(Numerics):
    def sequence_stat_mask(self, mask: Num) -> Num:
        return np.ones_like(mask)


MUTANT = NumpyAdapter("mutant-sequence-padded-counted", PaddedCounted())
