"""``mutant-grn-stats-constant``: GRN's ``nx`` held constant in the derivatives.

Bug class: a hand-written backward (or a detach) that differentiates only
``gamma x nx + beta + x`` with nx fixed. Forward values are right; every vjp, jvp and second
order with a weight that is not zero misses the term through the norms (nhwc-n=12, nchw-n=12, ...).
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter


class GrnStatsConstant(Numerics):
    def grn_stats_differentiated(self) -> bool:
        return False


MUTANT = NumpyAdapter("mutant-grn-stats-constant", GrnStatsConstant())
