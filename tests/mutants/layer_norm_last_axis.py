"""``mutant-layer-norm-last-axis-only``: layer_norm reduces only the last axis.

Bug class: normalizing over the wrong axes (Flax's ``reduction_axes=-1`` default kept where the
spec asks for ``axis..ndim-1``; PyTorch ``normalized_shape`` given as the last dim only). Its
statistics then have another shape, so it reports none. Exposed by layer_norm with ``axis``
before the last axis (e.g. axis=-2 or axis=1 on a 3-d input), every check, any dtype.
"""

from __future__ import annotations

from dataclasses import replace

from normspec.adapters.numpy_adapter import Geometry, Numerics, NumpyAdapter


class LastAxisOnly(Numerics):
    def layer_geometry(self, shape: tuple[int, ...], axis: object) -> Geometry:
        geom = super().layer_geometry(shape, axis)
        last = len(shape) - 1
        if geom.axes == (last,):
            return geom
        return replace(geom, axes=(last,), stat_view=(*shape[:-1], 1), stat_shape=None)


MUTANT = NumpyAdapter("mutant-layer-norm-last-axis-only", LastAxisOnly())
