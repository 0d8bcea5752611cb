"""``mutant-cumulative-fixed-momentum``: ``batch_stat_weight="cumulative"`` run as momentum 0.1.

Bug class: PyTorch's ``momentum=None`` (a cumulative moving average, f = 1/(t+1)) translated
to the framework's default momentum, because the target (Keras, Flax, ONNX) has no cumulative
mode. Exposed by the batch_norm state check in training with ``"cumulative"`` and
``num_batches_tracked`` != 9 (f = 1 on the first batch, 1/3 after two, 1/5 after four), any
dtype.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter

DEFAULT_MOMENTUM = 0.1
"""PyTorch's default weight of the new batch."""


class FixedMomentum(Numerics):
    def batch_stat_factor(self, batch_stat_weight: float | str, num_batches_tracked: int
                          ) -> float:
        if batch_stat_weight == "cumulative":
            return DEFAULT_MOMENTUM
        return super().batch_stat_factor(batch_stat_weight, num_batches_tracked)


MUTANT = NumpyAdapter("mutant-cumulative-fixed-momentum", FixedMomentum())
