"""``mutant-gradnorm-sign-one-at-target``: gradnorm's subgradient of |u| at 0 is +1.

Bug class: ``d|u|/du`` written as ``u >= 0 ? 1 : -1`` (what jnp.abs's JVP rule does), so a task
exactly at its target still gets ``d = g`` and its weight moves; the spec's subgradient is
``sign(0) = 0`` (torch.abs's). Exposed only by the cases with a task exactly at its target
(``at-target-T3``, ``at-target-alpha0``, ``all-at-target-T4``, ``step-T1``).
"""

from __future__ import annotations

import numpy as np
from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._gradnorm import GradNormSteps
from normspec.adapters.numpy_adapter._precision import Num


class SignOneAtTarget(Numerics, GradNormSteps):
    def gradnorm_sign(self, diff: Num) -> Num:
        out: Num = np.where(diff >= 0, diff.dtype.type(1), diff.dtype.type(-1))
        return out


MUTANT = NumpyAdapter("mutant-gradnorm-sign-one-at-target", SignOneAtTarget())
