"""``mutant-grn-channel-sum``: the channel sum of the norms instead of their mean.

Bug class: ``nx = gx / (sum_c gx + eps)``, a sum where the ConvNeXt-V2 code takes
``Gx.mean(dim=-1)``, which scales nx by 1/C. Exposed by every case with C > 1 and a weight
that is not zero: nhwc-n=12 (C = 5), many_channels (C = 33); not by one_channel, nor by
zero_init's forward.
"""

from __future__ import annotations

from typing import Any

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num, reduce_sum


class GrnChannelSum(Numerics):
    def grn_denominator(self, gx: Num, channel_axes: tuple[int, ...], eps: Any) -> Num:
        out: Num = reduce_sum(gx, channel_axes) + eps
        return out


MUTANT = NumpyAdapter("mutant-grn-channel-sum", GrnChannelSum())
