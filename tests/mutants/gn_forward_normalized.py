"""``mutant-gn-forward-normalized``: gradient_normalization normalizes the activations too.

Bug class: the lp_norm confusion, ``y = x / max(||x||, eps)`` in the forward pass, when the
method must leave the forward activity unchanged. Exposed by the forward check of every case
(the VJP is still right), e.g. ``rows-n=8``, ``per_sample-nchw``, ``huge_x``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._gradient_normalization import GradNormSteps
from normspec.adapters.numpy_adapter._precision import Num, reduce_sum


class ForwardNormalized(Numerics, GradNormSteps):
    def gradnorm_forward(self, x: Num, axes: tuple[int, ...], eps: Any) -> Num:
        out: Num = x / np.maximum(np.sqrt(reduce_sum(x * x, axes)), eps)
        return out


MUTANT = NumpyAdapter("mutant-gn-forward-normalized", ForwardNormalized())
