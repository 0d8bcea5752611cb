"""``mutant-adain-style-eps-outside``: the style's std as ``sqrt(var) + eps``, eps outside the root.

Bug class: the AdaIN copies that write ``feat.std(dim=2) + eps``. The two agree when eps is
negligible against the style's variance, so it needs a style variance comparable to eps or below
it: the tiny, constant and zero styles (``sqrt(eps)`` against ``eps``), ``eps = 0.1`` with a
style of scale 0.2, and a style of scale 3e-3 with eps = 1e-5.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._adaptive_instance_norm import AdainSteps
from normspec.adapters.numpy_adapter._precision import Num


class AdainStyleEpsOutside(Numerics, AdainSteps):
    def adain_style_std(self, var: Num, eps: Any) -> Num:
        out: Num = np.sqrt(var) + eps
        return out


MUTANT = NumpyAdapter("mutant-adain-style-eps-outside", AdainStyleEpsOutside())
