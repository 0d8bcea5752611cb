"""``mutant-bin-rho-not-clipped``: the gate enters the forward unclipped.

Bug class: ``r = rho`` (the paper's layer, which relies on the optimizer step's clamp and does
not clip in the forward): a gate outside [0, 1] extrapolates past batch or instance norm.
Exposed by the batch_instance_norm cases with rho outside [0, 1] (train-rho=outside,
eval-rho=outside-nlc-channels_last, train-ncdhw, traj-cumulative-biased), every dtype, forward
and every derivative.
"""

from __future__ import annotations

import numpy as np
from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num


class RhoNotClipped(Numerics):
    def gate_clip(self, rho: Num) -> tuple[Num, Num]:
        return rho, np.ones_like(rho)


MUTANT = NumpyAdapter("mutant-bin-rho-not-clipped", RhoNotClipped())
