"""``mutant-adaln-scale-not-one-plus``: the modulation multiplies z by ``scale``, not ``1 + scale``.

Bug class: the AdaIN/FiLM convention ``z * scale + shift`` used with adaLN's map, whose
zero-initialised scale must leave z unchanged (DiT's ``modulate`` is ``x * (1 + scale) + shift``).
Exposed by every adaptive_layer_norm case whose z is not 0 (all but n=1-gated, constant and the
adaLN-Zero initialisation), in every dtype and check; zero_init-adaln gives shift alone instead of
the plain layer norm.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._adaptive_layer_norm import AdalnSteps
from normspec.adapters.numpy_adapter._precision import Num


class ScaleNotOnePlus(Numerics, AdalnSteps):
    def adaln_gain(self, scale: Num) -> Num:
        return scale


MUTANT = NumpyAdapter("mutant-adaln-scale-not-one-plus", ScaleNotOnePlus())
