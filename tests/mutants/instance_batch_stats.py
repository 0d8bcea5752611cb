"""``mutant-instance-norm-batch-stats``: instance_norm pools its statistics over the batch.

Bug class: instance normalization computed as batch normalization (statistics per channel over
batch and spatial axes), e.g. reusing a BatchNorm kernel in training mode. Exposed by
instance_norm with batch size >= 2 and samples that differ, every check, any dtype; batch of 1
is unaffected.
"""

from __future__ import annotations

from dataclasses import replace

from normspec.adapters.numpy_adapter import Geometry, Numerics, NumpyAdapter


class InstanceBatchStats(Numerics):
    def instance_geometry(self, shape: tuple[int, ...], channel_axis: object) -> Geometry:
        geom = super().instance_geometry(shape, channel_axis)
        return replace(geom, axes=(0, *geom.axes))


MUTANT = NumpyAdapter("mutant-instance-norm-batch-stats", InstanceBatchStats())
