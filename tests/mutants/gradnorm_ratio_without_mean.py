"""``mutant-gradnorm-ratio-without-mean``: gradnorm uses the loss ratio as the rate.

Bug class: the relative inverse training rate ``r_i = Ltilde_i / mean_j Ltilde_j`` taken as the
bare loss ratio ``Ltilde_i = L_i(t) / L_i(0)``, which shifts every target by the common factor
``(mean Ltilde)^-alpha``. Exposed wherever alpha > 0 and the mean ratio is not 1 (``targets``,
``grad_norm_loss``, and the step when a sign flips: most alpha > 0 cases and trajectories);
alpha = 0 cases and a first step at the initial losses survive.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._gradnorm import GradNormSteps
from normspec.adapters.numpy_adapter._precision import Num


class RatioWithoutMean(Numerics, GradNormSteps):
    def gradnorm_rates(self, ratio: Num) -> Num:
        return ratio


MUTANT = NumpyAdapter("mutant-gradnorm-ratio-without-mean", RatioWithoutMean())
