"""``mutant-power-stats-constant``: power_norm's backward treats the power mean as a constant.

Bug class: the divisor detached from the graph (``stop_gradient`` on the statistic, or a
hand-written backward that forgets d rscale / dx): the gradient becomes ``rscale * g * w``.
Exposed by the vjp, jvp and second order of every power_norm case with more than one value per
set and x not negligible against eps (p=3-n=7, p=0.5-n=7, ...), every dtype.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._power_norm import PowerSteps


class StatsConstant(Numerics, PowerSteps):
    def power_statistic_differentiated(self) -> bool:
        return False


MUTANT = NumpyAdapter("mutant-power-stats-constant", StatsConstant())
