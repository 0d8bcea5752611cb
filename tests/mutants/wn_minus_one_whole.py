"""``mutant-wn-minus-one-whole``: weight_norm reads ``kept_axis=-1`` as the whole tensor.

Bug class: PyTorch's ``dim`` convention carried over (``torch._weight_norm`` reads ``dim=-1``
as "no kept axis"), so a kernel whose output axis is the last (Flax's Dense ``(in, out)`` and
conv ``(kh, kw, in, out)``, Keras') is normalized by one norm over the whole tensor instead of
one per output unit. Exposed by ``linear-io-kept=-1`` and ``conv2d-hwio-kept=-1``.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._weight_norm import WeightNormSteps


class MinusOneWhole(Numerics, WeightNormSteps):
    def wn_norm_axes(self, kept_axis: object, ndim: int) -> tuple[int, ...]:
        if kept_axis == -1:
            return tuple(range(ndim))
        return super().wn_norm_axes(kept_axis, ndim)


MUTANT = NumpyAdapter("mutant-wn-minus-one-whole", MinusOneWhole())
