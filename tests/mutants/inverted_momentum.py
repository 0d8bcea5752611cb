"""``mutant-inverted-momentum``: ``batch_stat_weight`` used as the weight of the *old* value.

Bug class: the PyTorch (m = weight of the new value) vs Keras/Flax/ONNX (m = weight of the old
value) momentum convention mixed up (pytorch/vision#8250, pytorch/examples#289). Exposed by the
batch_norm state check in training with tracking and a numeric ``batch_stat_weight`` other than
0.5 (0.1: the running statistics move 9x too far), any dtype. ``"cumulative"`` is unaffected.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter


class InvertedMomentum(Numerics):
    def batch_stat_factor(self, batch_stat_weight: float | str, num_batches_tracked: int
                          ) -> float:
        factor = super().batch_stat_factor(batch_stat_weight, num_batches_tracked)
        return factor if batch_stat_weight == "cumulative" else 1.0 - factor


MUTANT = NumpyAdapter("mutant-inverted-momentum", InvertedMomentum())
