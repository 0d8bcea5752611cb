"""``mutant-ghost-strided``: ghost batches taken strided (Keras' layout), not contiguous.

Bug class: reading the batch axis as ``(B, G)`` instead of ``(G, B)``, so ghost batch g holds
samples g, g+G, g+2G, ... (what tf-keras' ``virtual_batch_size`` reshape does; the spec's ghost
batches are contiguous slices). Exposed by ghost_batch_norm forward (and every derivative) in
training with 1 < G < N and ghost batches of more than one sample whose samples differ in
distribution, any dtype. ``G = 1``, ``ghost_batch_size = 1`` and evaluation are unaffected.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Geometry, Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._geometry import check_ghost_batch_size, split_channels


class Strided(Numerics):
    def ghost_geometry(self, shape: tuple[int, ...], ghost_batch_size: object,
                       channel_axis: object) -> Geometry:
        c, spatial = split_channels(shape, channel_axis, 2)
        b = check_ghost_batch_size(ghost_batch_size, shape[0])
        sizes = tuple(shape[i] for i in spatial)
        g, ch, k = shape[0] // b, shape[c], len(sizes)
        return Geometry(shape=shape, perm=(0, c, *spatial), view=(b, g, ch, *sizes),
                        axes=(0, *range(3, 3 + k)), param_view=(1, 1, ch) + (1,) * k,
                        param_shape=(ch,), stat_view=(1, g, ch) + (1,) * k, stat_shape=(g, ch))


MUTANT = NumpyAdapter("mutant-ghost-strided", Strided())
