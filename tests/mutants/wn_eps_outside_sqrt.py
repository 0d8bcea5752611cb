"""``mutant-wn-eps-outside-sqrt``: weight_norm divides by ``||v|| + eps``.

Bug class: eps added to the norm instead of the squared norm (``v / (v.norm() + eps)``, a common
hand-written guard), so a slice whose squared norm is comparable to eps, or a zero slice (where
the gradient becomes ``g w_bar / eps`` instead of ``/ sqrt(eps)``), is off. Exposed by
``eps-comparable``, ``eps=1``, ``zero-slice-eps=1e-12`` and ``zero-tensor-none-eps=1e-6``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num
from normspec.adapters.numpy_adapter._weight_norm import WeightNormSteps


class EpsOutsideSqrt(Numerics, WeightNormSteps):
    def wn_inverse_norm(self, sq: Num, eps: Any) -> Num:
        out: Num = sq.dtype.type(1) / (np.sqrt(sq) + eps)
        return out


MUTANT = NumpyAdapter("mutant-wn-eps-outside-sqrt", EpsOutsideSqrt())
