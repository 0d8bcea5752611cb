"""``mutant-power-eps-outside-root``: power_norm adds eps to the power mean, not inside the root.

Bug class: ``x / ((mean |x|^p)^(1/p) + eps)`` (the RMSNorm paper's code's placement, or
lp_norm's eps moved out) instead of ``x (mean |x|^p + eps)^(-1/p)``; at p = 2 it is
rms_norm's eps-outside-sqrt bug. Exposed where eps is not negligible: p=0.5-eps=1, p=4-eps=0.1,
the zero rows (rscale = 1/eps instead of eps^(-1/p)), n = 1 and tiny inputs, every dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._power_norm import PowerSteps
from normspec.adapters.numpy_adapter._precision import Num


class EpsOutsideRoot(Numerics, PowerSteps):
    def power_rscale(self, mv: Num, s: Num, eps: Any, p: Any) -> tuple[Num, Num]:
        one = mv.dtype.type(1)
        r = one / (s * np.power(mv, one / p) + eps)
        return r, r * s


MUTANT = NumpyAdapter("mutant-power-eps-outside-root", EpsOutsideRoot())
