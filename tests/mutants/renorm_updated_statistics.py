"""``mutant-renorm-updated-statistics``: batch renorm's r and d from the updated statistics.

Bug class: the running statistics are updated first (as a batch-norm layer does in its
forward) and r and d are then computed from the new values instead of the ones from before this
step, the order the paper and Keras (its control dependency on r and d) prescribe. With
``f = batch_stat_weight``, ``running' - mean = (1 - f)(running - mean)``, so d shrinks by
``1 - f`` and r moves towards 1. Exposed by the forward check (y, r, d) of batch_renorm
training cases with ``f > 0`` where r or d is not clipped at both statistics, in any dtype;
``f = 0`` (nothing moves) and the state itself are unaffected.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num


class UpdatedStatistics(Numerics):
    def renorm_running_statistics(self, before: tuple[Num, Num], after: tuple[Num, Num]
                                  ) -> tuple[Num, Num]:
        return after


MUTANT = NumpyAdapter("mutant-renorm-updated-statistics", UpdatedStatistics())
