"""``mutant-cin-scatter-overwrite``: the tables' gradient assigned per sample, not accumulated.

Bug class: ``grad[style] = per_sample`` (NumPy's fancy assignment, or a scatter without
accumulation) where two samples share a style: the last sample's gradient overwrites the
others'. Exposed by every VJP of a case with a repeated style (``style = [2, 0, 2]``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._conditional_instance_norm import CinSteps
from normspec.adapters.numpy_adapter._precision import Num


class CinScatterOverwrite(Numerics, CinSteps):
    def cin_scatter(self, per_sample: Num, style: Any, styles: int) -> Num:
        out = np.zeros((styles, per_sample.shape[1]), dtype=per_sample.dtype)
        out[style] = per_sample
        return out


MUTANT = NumpyAdapter("mutant-cin-scatter-overwrite", CinScatterOverwrite())
