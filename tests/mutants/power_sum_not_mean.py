"""``mutant-power-sum-not-mean``: power_norm divides by the p-norm's sum, not the power mean.

Bug class: lp_norm's statistic (``sum |x|^p``) where power_norm takes the mean, i.e. the output
is ``n^(-1/p)`` times too small (the same slip as RMS vs L2 norm). Exposed by every power_norm
case with a reduction of more than one value (p=3-n=7, p=0.5-n=7, p=1-n=13, ...), forward and
derivatives, in every dtype; the n = 1 cases are unaffected.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._power_norm import PowerSteps
from normspec.adapters.numpy_adapter._precision import Num, reduce_sum


class SumNotMean(Numerics, PowerSteps):
    def power_statistic(self, a_pow: Num, axes: tuple[int, ...]) -> Num:
        return reduce_sum(a_pow, axes)


MUTANT = NumpyAdapter("mutant-power-sum-not-mean", SumNotMean())
