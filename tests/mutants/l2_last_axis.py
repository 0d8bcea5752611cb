"""``mutant-l2-last-axis``: the vectors are always taken along the last axis.

Bug class: an L2 normalization hard-wired to ``dim=-1`` (the hidden axis of activations), applied
to a weight matrix whose embedding axis is its first (nGPT's attention output and MLP down
projections, stored ``(D, fan_in)`` by ``nn.Linear``) or to channels-first data. Exposed by every
case whose ``axis`` is not the last one: fix_norm's axis=0 and NCHW cases, unit_norm's ``W_o`` and
``W_down`` cases.
"""

from __future__ import annotations

from typing import Any

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._l2_scale import L2ScaleSteps


class LastAxis(Numerics, L2ScaleSteps):
    def l2_axis(self, axis: Any) -> Any:
        return -1


MUTANT = NumpyAdapter("mutant-l2-last-axis", LastAxis())
