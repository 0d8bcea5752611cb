"""``mutant-lp-norm-clamp-wrong-side``: ``x / min(||x||, eps)`` instead of ``x / max(||x||, eps)``.

Bug class: the clamp written the wrong way round (``clamp(max=eps)`` for ``clamp(min=eps)``,
``minimum`` for ``maximum``), so every row whose norm exceeds eps is divided by eps. Exposed by
lp_norm wherever eps > 0 and a norm exceeds it (nearly every case); rows at or below eps
(the clamped branch) are unaffected.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num


class ClampWrongSide(Numerics):
    def lp_denominator(self, norm: Num, eps: Any) -> tuple[Num, Num]:
        return np.minimum(norm, eps), norm > eps


MUTANT = NumpyAdapter("mutant-lp-norm-clamp-wrong-side", ClampWrongSide())
