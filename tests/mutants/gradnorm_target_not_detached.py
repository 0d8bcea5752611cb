"""``mutant-gradnorm-target-not-detached``: gradnorm differentiates through the target.

Bug class: the target ``Gbar r^alpha`` left attached to the graph (no ``.detach()`` /
``stop_gradient``), so ``dL_grad/dw_i`` gains ``-(g_i / T) sum_j sign_j r_j^alpha`` from
``Gbar = mean_j w_j g_j``; the paper holds the target constant because this term drags every
weight towards zero. Exposed by every training step whose signs do not cancel that sum (the
weights, ``weight_grad`` and ``y`` of single steps and of every trajectory step).
"""

from __future__ import annotations

import numpy as np
from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._gradnorm import GradNormSteps
from normspec.adapters.numpy_adapter._precision import Num


class TargetAttached(Numerics, GradNormSteps):
    def gradnorm_weight_grad(self, sign: Num, g: Num, rpow: Num) -> Num:
        out: Num = sign * g - g * np.sum(sign * rpow) / sign.dtype.type(sign.size)
        return out


MUTANT = NumpyAdapter("mutant-gradnorm-target-not-detached", TargetAttached())
