"""``mutant-wn-eps-floor``: weight_norm floors the squared norm at eps instead of adding it.

Bug class: ``tf.nn.l2_normalize``'s rule, ``v * rsqrt(max(sum v^2, eps))``, taken for Flax's
``rsqrt(sum v^2 + eps)``: the same at a zero slice, different wherever the squared norm is
within a few eps, and with the floor's slope 0 (no gradient through the norm) below it.
Exposed by ``eps-comparable`` and ``eps=1``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num
from normspec.adapters.numpy_adapter._weight_norm import WeightNormSteps


class EpsFloor(Numerics, WeightNormSteps):
    def wn_inverse_norm(self, sq: Num, eps: Any) -> Num:
        out: Num = sq.dtype.type(1) / np.sqrt(np.maximum(sq, eps))
        return out


MUTANT = NumpyAdapter("mutant-wn-eps-floor", EpsFloor())
