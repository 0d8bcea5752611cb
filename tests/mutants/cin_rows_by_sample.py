"""``mutant-cin-rows-by-sample``: sample ``k`` takes row ``k`` of the tables, not row ``style[k]``.

Bug class: indexing the tables by the batch position (``weight[:N]``, as when the tables are
mistaken for per-sample parameters). Exposed by every forward of a case where some
``style[k] != k``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._conditional_instance_norm import CinSteps
from normspec.adapters.numpy_adapter._precision import Num


class CinRowsBySample(Numerics, CinSteps):
    def cin_rows(self, table: Num, style: Any) -> Num:
        out: Num = table[np.arange(len(style))]
        return out


MUTANT = NumpyAdapter("mutant-cin-rows-by-sample", CinRowsBySample())
