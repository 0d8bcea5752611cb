"""``mutant-eps-outside-sqrt``: ``1 / (sqrt(var) + eps)`` instead of ``1 / sqrt(var + eps)``.

Bug class: eps placement, as in the Annotated Transformer's LayerNorm and the RMSNorm paper's
reference code. The two agree when eps is negligible against the variance, so this needs a
variance comparable to eps: small-scale inputs (|x| ~ 1e-3 with eps = 1e-5, or a large eps such
as 0.1), in float32 or float64, for every moment method (layer, rms, instance, group, batch norm).
Constant input is *not* enough (both give y = bias there).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num


class EpsOutsideSqrt(Numerics):
    def rstd(self, var: Num, eps: Any) -> Num:
        return var.dtype.type(1) / (np.sqrt(var) + eps)


MUTANT = NumpyAdapter("mutant-eps-outside-sqrt", EpsOutsideSqrt())
