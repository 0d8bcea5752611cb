"""``mutant-sequence-padded-gradient``: padded positions of sequence_batch_norm receive gradient.

Bug class: the output is masked but the backward is not: padded positions get the gradient of
a normalized value (``J (g w)`` evaluated there) and their cotangents enter the weight and bias
gradients, as with Flax's ``BatchNorm(mask=...)`` used without masking the cotangent. Exposed by
the vjp and second-order checks of every sequence_batch_norm case with padding, any dtype;
forward and jvp are unaffected.
"""

from __future__ import annotations

import numpy as np
from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num


class PaddedGradient(Numerics):
    def sequence_grad_mask(self, mask: Num) -> Num:
        return np.ones_like(mask)


MUTANT = NumpyAdapter("mutant-sequence-padded-gradient", PaddedGradient())
