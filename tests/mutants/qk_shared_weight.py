"""``mutant-qk-shared-weight``: the keys are normalized with the queries' weight.

Bug class: one RMSNorm module (or one weight tensor) used for both q and k, where Qwen3, Gemma 3
and OLMo-2 have separate ``q_norm`` and ``k_norm`` weights. Exposed by every weighted rms case
(rms-head-qwen3-bhtd, rms-hidden-olmo2-bthd, rms-head-dh128, ...): the logits, ``k_hat``, the
keys' and both weights' gradients; not by the l2 cases (no weights) nor rms-head-noweight.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num
from normspec.adapters.numpy_adapter._qk_norm import QkSteps


class SharedWeight(Numerics, QkSteps):
    def qk_key_weight(self, q_weight: Num | None, k_weight: Num | None) -> Num | None:
        return q_weight


MUTANT = NumpyAdapter("mutant-qk-shared-weight", SharedWeight())
