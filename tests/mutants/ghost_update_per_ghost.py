"""``mutant-ghost-update-per-ghost``: running statistics updated once per ghost batch.

Bug class: the natural PyTorch composition, a ``BatchNorm`` module called on each chunk (the
paper's code does this), which moves the running statistics G times per step, in order:
``running' = (1-f)^G running + sum_g f (1-f)^(G-1-g) stat_g``; the spec moves them once, towards
the ghost batches' averages. Exposed by the ghost_batch_norm state check in training with
tracking, G > 1 and 0 < f < 1 (every step of a trajectory), any dtype; f = 1 with one ghost
batch, f = 0 and G = 1 are unaffected.
"""

from __future__ import annotations

from typing import Any

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num, Precision


class PerGhost(Numerics):
    def ghost_running_update(self, running_mean: Num, running_var: Num, mean: Num, var: Num,
                             f: Any, prec: Precision) -> tuple[Num, Num]:
        keep = prec.scalar(1.0) - f
        for g in range(mean.shape[0]):
            running_mean = keep * running_mean + f * mean[g]
            running_var = keep * running_var + f * var[g]
        return running_mean, running_var


MUTANT = NumpyAdapter("mutant-ghost-update-per-ghost", PerGhost())
