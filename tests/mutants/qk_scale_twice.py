"""``mutant-qk-scale-twice``: the logit scale is applied twice.

Bug class: ``1/sqrt(Dh)`` (or the fixed scale) applied by the attention kernel although the
caller already folded it into the queries, or QKNorm's learned ``g`` multiplied in after the
kernel's own default ``1/sqrt(Dh)`` (SDPA's ``scale=None``): the logits are ``c^2 g S``. Exposed by
every qk_norm case whose ``logit_scale`` is not 1 (l2-fixed-scale, rms-head-qwen3-bhtd,
rms-hidden-olmo2-bthd, ...) in the forward, the VJP and the JVP; invisible where ``c = 1``
(l2-learned-bhtd), which is why the catalog mixes both.
"""

from __future__ import annotations

from typing import Any

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num
from normspec.adapters.numpy_adapter._qk_norm import QkSteps


class ScaleTwice(Numerics, QkSteps):
    def qk_factor(self, c: Any, gain: Num | None) -> Any:
        return c * c if gain is None else c * c * gain


MUTANT = NumpyAdapter("mutant-qk-scale-twice", ScaleTwice())
