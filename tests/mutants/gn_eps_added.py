"""``mutant-gn-eps-added``: gradient_normalization divides by ``norm + eps``, not the max.

Bug class: the eps placement of GRN-style code (``gx / (mean + eps)``), so the gradient never
has unit norm and a gradient below eps is not ``g / eps``. Exposed by the VJP where eps matters
against the norm: ``eps_active``, ``eps_boundary``, ``tiny_gradient-eps_active``, and in float64
every case with eps = 1e-12 (a relative error of 1e-12 is ~9000 ulp).
"""

from __future__ import annotations

from typing import Any

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._gradient_normalization import GradNormSteps
from normspec.adapters.numpy_adapter._precision import Num


class EpsAdded(Numerics, GradNormSteps):
    def gradnorm_divisor(self, norm: Num, eps: Any) -> Num:
        out: Num = norm + eps
        return out


MUTANT = NumpyAdapter("mutant-gn-eps-added", EpsAdded())
