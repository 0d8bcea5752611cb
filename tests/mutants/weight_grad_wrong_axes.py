"""``mutant-weight-grad-channels-last-sum``: parameter gradients summed as if channels were last.

Bug class: a weight/bias gradient summed over the wrong axes, here ``a.reshape(-1, C).sum(0)``
on a channels-first array (a channels-last kernel reused for NCHW). Shapes stay right, values
mix channels. Exposed by the vjp and second-order weight (and bias) gradients of batch_norm,
instance_norm and group_norm with ``channel_axis=1`` and spatial size > 1, any dtype;
channels-last inputs, 2-d batch_norm inputs and layer/rms norm are unaffected.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Geometry, Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num


class ChannelsLastSum(Numerics):
    def param_sum(self, a: Num, geom: Geometry) -> Num:
        original = geom.from_view(a)
        return original.reshape(-1, *geom.param_shape).sum(axis=0)


MUTANT = NumpyAdapter("mutant-weight-grad-channels-last-sum", ChannelsLastSum())
