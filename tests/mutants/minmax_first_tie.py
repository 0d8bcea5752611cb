"""``mutant-minmax-first-tie``: the min/max subgradient goes to the first tied position.

Bug class: a gradient routed through ``argmin``/``argmax`` (NumPy's first-index rule, or a
gather of the selected index) instead of splitting it equally among tied extremes as
torch.amin/amax and jnp.min/max do. Exposed by fit derivatives wherever an extreme is tied:
``fit-ties``, every constant feature (all positions tied), and 16-bit fits whose rounding ties
values.
"""

from __future__ import annotations

import numpy as np
from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._min_max_scale import MinMaxSteps
from normspec.adapters.numpy_adapter._precision import Num


class FirstTie(Numerics, MinMaxSteps):
    def minmax_ties(self, x: Num, extreme: Num, axes: tuple[int, ...]) -> Num:
        hit = x == extreme
        keep = tuple(i for i in range(x.ndim) if i not in axes)
        moved = np.transpose(hit, keep + axes).reshape(*(x.shape[i] for i in keep), -1)
        first = np.cumsum(moved, axis=-1) == 1
        only = (moved & first).reshape(np.transpose(hit, keep + axes).shape)
        out: Num = np.transpose(only, np.argsort(keep + axes)).astype(x.dtype)
        return out


MUTANT = NumpyAdapter("mutant-minmax-first-tie", FirstTie())
