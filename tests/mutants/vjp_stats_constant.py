"""``mutant-vjp-stats-constant``: the input gradient ignores the dependence of mean and var on x.

Bug class: ``dx = g * weight * rstd`` (the evaluation-mode gradient) used in training, or a
hand-written backward that detaches the statistics. Exposed by the vjp check of every moment
method in training mode (layer, rms, instance, group norm; batch_norm with training=True) with a
cotangent that is not constant over the reduction set, any dtype. Forward, jvp and second order
are unaffected; batch_norm in evaluation is correct.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Normalized, Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num


class StatsConstantVjp(Numerics):
    def vjp_x(self, nrm: Normalized, gw: Num, axes: tuple[int, ...], center: bool) -> Num:
        return nrm.rstd * gw


MUTANT = NumpyAdapter("mutant-vjp-stats-constant", StatsConstantVjp())
