"""``mutant-mixed-mixture-of-variances``: a mixture of the variances, not the mixture's variance.

Bug class: ``var = alpha var_b + (1 - alpha) running_var``, which drops the spread between the
two means, ``alpha (1 - alpha) (mean_b - running_mean)^2``: reading the seed's
``alpha E[x^2] + (1 - alpha) E[x^2]_running - mean^2`` as a blend of two variances. Exposed by
every mixed_eval_batch_norm case with 0 < alpha < 1 whose running mean is off the batch's
(alpha=0.5-nc, alpha=0.25-gap=4, ...), in every dtype; alpha 0 and 1 are unaffected.
"""

from __future__ import annotations

from typing import Any

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num


class MixtureOfVariances(Numerics):
    def mixed_statistics(self, batch_mean: Num, batch_var: Num, running_mean: Num,
                         running_var: Num, alpha: Any) -> tuple[Num, Num]:
        keep = alpha.dtype.type(1) - alpha
        mean: Num = alpha * batch_mean + keep * running_mean
        var: Num = alpha * batch_var + keep * running_var
        return mean, var


MUTANT = NumpyAdapter("mutant-mixed-mixture-of-variances", MixtureOfVariances())
