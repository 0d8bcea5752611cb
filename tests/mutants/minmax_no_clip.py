"""``mutant-minmax-no-clip``: min_max_scale ignores ``clip``.

Bug class: scikit-learn's ``clip=True`` dropped on the way (it defaults to False), so applied
values beyond the fitted extremes leave ``[range_min, range_max]`` and keep slope ``(b - a)/r``.
Exposed by applies with clip on data wider than the fitted extremes (``apply-clip``,
``fit-apply-clip``, ``fit-apply-tiny``, ``fit-apply-decades``); fits are unaffected.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._min_max_scale import MinMaxSteps
from normspec.adapters.numpy_adapter._precision import Num


class NoClip(Numerics, MinMaxSteps):
    def minmax_clip(self, y: Num, a: Any, b: Any) -> tuple[Num, Num]:
        return y, np.ones_like(y)


MUTANT = NumpyAdapter("mutant-minmax-no-clip", NoClip())
