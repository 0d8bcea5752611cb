"""``mutant-adain-style-detached``: no gradient reaches the style (its statistics detached).

Bug class: AdaIN written with the style's mean and std treated as constants (``.detach()``, or
``stop_gradient``, as style-transfer training with a frozen encoder allows), used where the style
is itself trained. Every VJP exposes it (the JVP is untouched): the style's gradient is 0
instead of ``G z_s / D_s + S / m``.
"""

from __future__ import annotations

import numpy as np
from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._adaptive_instance_norm import AdainSteps
from normspec.adapters.numpy_adapter._precision import Num


class AdainStyleDetached(Numerics, AdainSteps):
    def adain_style_grad(self, z_s: Num, g_std: Num, g_mean: Num, divisor: int, m: int) -> Num:
        return np.zeros_like(z_s)


MUTANT = NumpyAdapter("mutant-adain-style-detached", AdainStyleDetached())
