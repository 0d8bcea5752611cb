"""``mutant-cin-first-row``: every sample uses row 0 of the tables, whatever its style.

Bug class: a conditional layer whose style index is dropped (a default ``style=0`` that the
caller never overrides, or an embedding lookup of the wrong tensor). Exposed by every forward of
a case whose styles are not all 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._conditional_instance_norm import CinSteps
from normspec.adapters.numpy_adapter._precision import Num


class CinFirstRow(Numerics, CinSteps):
    def cin_rows(self, table: Num, style: Any) -> Num:
        out: Num = table[np.zeros_like(style)]
        return out


MUTANT = NumpyAdapter("mutant-cin-first-row", CinFirstRow())
