"""``mutant-interleaved-groups``: group_norm groups channels ``c % G`` instead of ``c // (C/G)``.

Bug class: reshaping the channel axis as ``(C/G, G)`` instead of ``(G, C/G)``, so group g holds
channels g, g+G, g+2G, ... Exposed by group_norm forward (and every derivative) with
1 < groups < C (e.g. C = 6, groups = 2 or 3) on inputs whose channels differ in distribution,
any dtype. groups = 1 and groups = C are unaffected.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Geometry, Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._geometry import check_groups, split_channels


class InterleavedGroups(Numerics):
    def group_geometry(self, shape: tuple[int, ...], groups: object, channel_axis: object
                       ) -> Geometry:
        c, spatial = split_channels(shape, channel_axis, 2)
        g = check_groups(groups, shape[c])
        sizes = tuple(shape[i] for i in spatial)
        n, ch, k = shape[0], shape[c], len(sizes)
        return Geometry(shape=shape, perm=(0, c, *spatial), view=(n, ch // g, g, *sizes),
                        axes=(1, *range(3, 3 + k)), param_view=(1, ch // g, g) + (1,) * k,
                        param_shape=(ch,), stat_view=(n, 1, g) + (1,) * k, stat_shape=(n, g))


MUTANT = NumpyAdapter("mutant-interleaved-groups", InterleavedGroups())
