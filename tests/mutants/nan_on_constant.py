"""``mutant-nan-on-constant``: normalizes by ``1/sqrt(var)``, dropping eps.

Bug class: eps left out (or underflowed to 0, as eps = 1e-12 does in float16: pytorch#41527),
so a zero-variance reduction set computes 0 * inf = NaN. Exposed by every moment method on
constant input (zero variance) in any dtype, and by batch_norm evaluation with a zero running
variance; in float32/float64 also by ordinary cases where eps is not negligible against var.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num


class NoEps(Numerics):
    def rstd(self, var: Num, eps: Any) -> Num:
        return var.dtype.type(1) / np.sqrt(var)


MUTANT = NumpyAdapter("mutant-nan-on-constant", NoEps())
