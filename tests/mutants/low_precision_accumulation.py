"""``mutant-float16-accumulation``: float16/bfloat16 statistics accumulated in the dtype itself.

Bug class: reductions in half precision (onnxruntime PR #29045, tinygrad GroupNorm, Whisper LN
frames turning to zeros): squares overflow float16 near |x| = 256 and long sums stagnate once
the partial sum dwarfs the terms. Exposed in float16 by moment-method cases with |x| ~ 300
(sum of squares overflows: y becomes 0) and by long reductions (n > 1000) with a mean offset;
in bfloat16 by long reductions (8 significant bits: the running sum stalls). float32 and
float64 are unaffected.
"""

from __future__ import annotations

import math

import numpy as np
from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num, Precision


class HalfAccumulation(Numerics):
    def stat_mean(self, a: Num, axes: tuple[int, ...], prec: Precision) -> Num:
        if prec.storage == prec.compute:
            return super().stat_mean(a, axes, prec)
        keep = tuple(i for i in range(a.ndim) if i not in axes)
        n = math.prod(a.shape[i] for i in axes)
        moved = np.transpose(a.astype(prec.storage), keep + axes)
        rows = moved.reshape(*(a.shape[i] for i in keep), n)
        # cumsum rounds every partial sum to the dtype: a sequential half-precision loop
        total = np.cumsum(rows, axis=-1, dtype=prec.storage)[..., -1]
        mean = (total / prec.storage.type(n)).astype(prec.compute)
        return mean.reshape(tuple(1 if i in axes else a.shape[i] for i in range(a.ndim)))


MUTANT = NumpyAdapter("mutant-float16-accumulation", HalfAccumulation())
