"""``mutant-ws-last-axis-kept``: weight_standardization keeps the last axis whatever kept_axis says.

Bug class: the Flax/Keras kernel layout ``(kh, kw, in, out)`` assumed for a PyTorch weight
``(O, I, kh, kw)``: each *kernel column* is standardized instead of each output channel. Exposed
by every case whose output channel is not the last axis (``conv2d-oihw-*``, ``linear-oi``,
``convtranspose-kept=1``, ...); ``*-kept=-1`` cases agree.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._geometry import Geometry


class LastAxisKept(Numerics):
    def batch_geometry(self, shape: tuple[int, ...], channel_axis: object) -> Geometry:
        return super().batch_geometry(shape, -1)


MUTANT = NumpyAdapter("mutant-ws-last-axis-kept", LastAxisKept())
