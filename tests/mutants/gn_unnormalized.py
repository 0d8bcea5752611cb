"""``mutant-gn-unnormalized``: gradient_normalization passes the gradient through unnormalized.

Bug class: the autograd default of an identity node (a forward-only "normalization" layer whose
custom backward is never registered), so the incoming gradient leaves unchanged. Exposed by the
VJP of every case whose gradient rows do not already have unit norm: almost all of them.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._gradient_normalization import GradNormSteps
from normspec.adapters.numpy_adapter._precision import Num


class Unnormalized(Numerics, GradNormSteps):
    def gradnorm_backward(self, g: Num, divisor: Num) -> Num:
        return g


MUTANT = NumpyAdapter("mutant-gn-unnormalized", Unnormalized())
