"""``mutant-lp-norm-eps-added``: ``x / (||x|| + eps)`` instead of ``x / max(||x||, eps)``.

Bug class: additive eps instead of the clamp (Flax's internal ``_l2_normalize`` adds eps to the
sum of squares; hand-written kernels add it to the norm). Exposed by lp_norm whenever eps is not
negligible against the norm: norms near or below eps (tiny inputs, e.g. |x| ~ 1e-12 with
eps = 1e-12 in float32/float64: a factor of 2), a large eps (0.1), or any input in float64 with
the default eps = 1e-12 (1e-12 relative is ~1e4 float64 ulp). An all-zero row is *not* enough.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num


class EpsAdded(Numerics):
    def lp_denominator(self, norm: Num, eps: Any) -> tuple[Num, Num]:
        return norm + eps, np.zeros(norm.shape, dtype=bool)


MUTANT = NumpyAdapter("mutant-lp-norm-eps-added", EpsAdded())
