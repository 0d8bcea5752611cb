"""``mutant-minmax-zero-range-nan``: min_max_scale divides by a zero range.

Bug class: ``(x - min) / (max - min)`` without scikit-learn's zero-range rule, so a constant
feature gives ``0 / 0 = NaN`` instead of ``range_min``. Exposed by the constant-feature fits,
the apply of a zero fitted range and the fit-then-apply of a constant feature; every dtype.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._min_max_scale import MinMaxSteps
from normspec.adapters.numpy_adapter._precision import Num


class ZeroRangeNan(Numerics, MinMaxSteps):
    def minmax_divisor(self, span: Num) -> Num:
        return span


MUTANT = NumpyAdapter("mutant-minmax-zero-range-nan", ZeroRangeNan())
