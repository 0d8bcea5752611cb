"""``mutant-ghost-whole-batch-stats``: ghost_batch_norm ignores the ghost batches.

Bug class: a ghost batch norm that forgets to split the batch (``ghost_batch_size`` dropped on
the way to the kernel, or a ``virtual_batch_size`` that is never applied) and normalizes with
the whole batch's statistics, i.e. plain batch norm. Exposed by ghost_batch_norm forward (and
every derivative) in training with more than one ghost batch on inputs whose ghost batches
differ, any dtype; one ghost batch (``ghost_batch_size = N``) and evaluation are unaffected.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Geometry, Numerics, NumpyAdapter


class WholeBatch(Numerics):
    def ghost_geometry(self, shape: tuple[int, ...], ghost_batch_size: object,
                       channel_axis: object) -> Geometry:
        right = super().ghost_geometry(shape, ghost_batch_size, channel_axis)
        # reduce the ghost axis 0 too: one set per channel, broadcast to every ghost batch
        return Geometry(shape=right.shape, perm=right.perm, view=right.view,
                        axes=(0, *right.axes), param_view=right.param_view,
                        param_shape=right.param_shape, stat_view=right.stat_view,
                        stat_shape=right.stat_shape)


MUTANT = NumpyAdapter("mutant-ghost-whole-batch-stats", WholeBatch())
