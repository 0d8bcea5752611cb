"""``mutant-lp-norm-clamp-squared``: ``x / max(||x||, sqrt(eps))``, eps clamping the squares.

Bug class: eps clamping the sum of squares instead of the norm, as TensorFlow's
``tf.math.l2_normalize`` does (``x * rsqrt(max(sum(x^2), eps))``): the effective floor on
the norm is sqrt(eps), not eps (1e-6 instead of 1e-12). Exposed by lp_norm wherever some norm
lies below sqrt(eps) and eps is not 1 (then sqrt(eps) = eps): norms below eps in the
float32/float64 ``tiny`` rows, eps = 0.01 with norms of 3e-3 (clamped) and of 0.04
(unclamped, yet below sqrt(eps) = 0.1).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num


class ClampSquared(Numerics):
    def lp_denominator(self, norm: Num, eps: Any) -> tuple[Num, Num]:
        floor = np.sqrt(eps)
        return np.maximum(norm, floor), norm < floor


MUTANT = NumpyAdapter("mutant-lp-norm-clamp-squared", ClampSquared())
