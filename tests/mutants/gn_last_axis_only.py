"""``mutant-gn-last-axis-only``: gradient_normalization takes the norm over the last axis only.

Bug class: the ``dim=-1`` default of the usual normalize helpers instead of the given axes, so
a per-sample norm over (C, H, W) becomes one norm per row of W. Exposed by the VJP of every case
whose axes are not exactly the last one (``per_sample-nchw``, ``whole_tensor``, ``axis=0-n=13``,
``middle_axis``, ``axes=0,2``, ``spatial-nchw``, ``huge_gradient-per_sample``).
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._gradient_normalization import GradNormSteps


class LastAxisOnly(Numerics, GradNormSteps):
    def gradnorm_axes(self, axes: tuple[int, ...], ndim: int) -> tuple[int, ...]:
        return (ndim - 1,)


MUTANT = NumpyAdapter("mutant-gn-last-axis-only", LastAxisOnly())
