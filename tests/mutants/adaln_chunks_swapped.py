"""``mutant-adaln-chunks-swapped``: the modulation read as (scale, shift), not (shift, scale).

Bug class: a chunk order taken from another implementation (diffusers' ``AdaLayerNorm`` and
``AdaLayerNormContinuous`` chunk ``scale, shift``; DiT and ``AdaLayerNormZero`` chunk ``shift,
scale, gate``) with weights laid out for the other. Exposed by every adaptive_layer_norm case
with a nonzero map, in every dtype and check (the zero-initialised cases cannot tell).
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._adaptive_layer_norm import AdalnSteps
from normspec.adapters.numpy_adapter._precision import Num


class ChunksSwapped(Numerics, AdalnSteps):
    def adaln_chunks(self, m: Num, d: int, gated: bool) -> tuple[Num, Num, Num | None]:
        shift, scale, gate = super().adaln_chunks(m, d, gated)
        return scale, shift, gate


MUTANT = NumpyAdapter("mutant-adaln-chunks-swapped", ChunksSwapped())
