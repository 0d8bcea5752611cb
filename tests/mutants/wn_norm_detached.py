"""``mutant-wn-norm-detached``: weight_norm's gradient treats the norm as a constant.

Bug class: the norm computed under ``no_grad`` / ``stop_gradient`` (or cached from the last
step), so ``v``'s gradient is ``g r w_bar`` without the projection ``- u <w_bar, u>`` that keeps
it orthogonal to ``v``. The forward is right. Exposed by the VJP, JVP and second order of every
case with a nonzero ``g`` and slices of more than one element.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._weight_norm import WeightNormSteps


class NormDetached(Numerics, WeightNormSteps):
    def wn_norm_differentiated(self) -> bool:
        return False


MUTANT = NumpyAdapter("mutant-wn-norm-detached", NormDetached())
