"""``mutant-adaln-gate-missing``: adaLN-Zero's gate is computed but never applied.

Bug class: the gate chunk dropped (``y = z * (1 + scale) + shift`` for ``gated = true``), which
turns adaLN-Zero's zero initialisation (y = 0, an identity residual block) into a plain layer norm.
Exposed by every gated adaptive_layer_norm case (dit-zero-gated-n=7, gated-2d-n=13-none,
zero_init-adaln_zero, offset_1e3, ...), forward and every derivative, in every dtype.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._adaptive_layer_norm import AdalnSteps
from normspec.adapters.numpy_adapter._precision import Num


class GateMissing(Numerics, AdalnSteps):
    def adaln_gate(self, gate: Num | None) -> Num | None:
        return None


MUTANT = NumpyAdapter("mutant-adaln-gate-missing", GateMissing())
