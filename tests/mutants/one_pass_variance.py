"""``mutant-one-pass-variance``: ``var = E[x^2] - E[x]^2`` in the compute dtype.

Bug class: the "fast variance" of Flax's default ``use_fast_variance=True``, the Keras torch
backend's ``moments`` and PyTorch LayerNorm before 2021 (pytorch#51102). In float32 it cancels
catastrophically when |mean|/std is large: the large-offset cases (|mean|/std = 1e3 and more)
of layer, group, instance and batch norm expose it, and constant inputs with a large value can
give a negative variance and NaN. float16/bfloat16 compute in float32 here, so they show it too.
float64 needs |mean|/std around 1e6 or more to show it.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num, Precision


class OnePassVariance(Numerics):
    def variance(self, x: Num, mean: Num, axes: tuple[int, ...], prec: Precision) -> Num:
        return self.stat_mean(x * x, axes, prec) - mean * mean


MUTANT = NumpyAdapter("mutant-one-pass-variance", OnePassVariance())
