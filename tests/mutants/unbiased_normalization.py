"""``mutant-unbiased-variance``: normalizes with the Bessel-corrected variance ``sum/(n-1)``.

Bug class: using ``torch.std``/``x.var(unbiased=True)`` (the default of ``torch.var``) to
normalize, as the Annotated Transformer does. Every framework normalizes with the biased (1/n)
variance. Exposed by any moment-method forward with a small reduction (n = 7: y off by
sqrt(6/7), 7%), in every dtype; a reduction of size 1 divides by zero.
"""

from __future__ import annotations

import math

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num, Precision, reduce_sum


class UnbiasedVariance(Numerics):
    def variance(self, x: Num, mean: Num, axes: tuple[int, ...], prec: Precision) -> Num:
        d = x - mean
        n = math.prod(x.shape[i] for i in axes)
        return reduce_sum(d * d, axes) / x.dtype.type(n - 1)


MUTANT = NumpyAdapter("mutant-unbiased-variance", UnbiasedVariance())
