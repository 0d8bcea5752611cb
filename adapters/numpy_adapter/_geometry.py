"""Which values each moment normalization reduces together, and where its parameters broadcast.

A :class:`Geometry` transposes and reshapes the input into a *view* in which the reduction sets
are the ``axes`` and the parameters broadcast as ``param_view``. Group normalization, for
example, views ``(N, C, H, W)`` as ``(N, G, C/G, H, W)`` and reduces axes ``(2, 3, 4)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._precision import Num


@dataclass(frozen=True)
class Geometry:
    """A view of ``x`` for one moment normalization (see the module docstring).

    ``stat_view`` is the keep-dims shape the statistics are broadcast to before they are
    reshaped to ``stat_shape``, the shape the reference reports them in; ``stat_shape`` None
    means the statistics have no such shape and are not reported.
    """

    shape: tuple[int, ...]
    perm: tuple[int, ...]
    view: tuple[int, ...]
    axes: tuple[int, ...]
    param_view: tuple[int, ...]
    param_shape: tuple[int, ...]
    stat_view: tuple[int, ...]
    stat_shape: tuple[int, ...] | None

    @property
    def n(self) -> int:
        """Number of values in each reduction set."""
        return math.prod(self.view[i] for i in self.axes)

    def to_view(self, a: Num) -> Num:
        return np.transpose(a, self.perm).reshape(self.view)

    def from_view(self, a: Num) -> Num:
        permuted = tuple(self.shape[i] for i in self.perm)
        return np.transpose(a.reshape(permuted), tuple(np.argsort(self.perm)))

    def param(self, p: Num) -> Num:
        """A parameter (shape ``param_shape``) reshaped to broadcast against the view."""
        return p.reshape(self.param_view)

    def stat(self, s: Num) -> Num:
        """A keep-dims statistic in the shape the reference reports."""
        assert self.stat_shape is not None
        return np.broadcast_to(s, self.stat_view).reshape(self.stat_shape)


def normalize_axis(name: str, axis: object, ndim: int) -> int:
    """``axis`` in ``[0, ndim)``; ValueError naming ``name`` when out of range."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"argument {name!r}: got {axis!r}, expected an integer axis")
    if not -ndim <= int(axis) < ndim:
        raise ValueError(
            f"argument {name!r}: got {axis}, expected an axis in [{-ndim}, {ndim - 1}] for a "
            f"{ndim}-d input"
        )
    return int(axis) % ndim


def trailing(shape: tuple[int, ...], axis: object) -> Geometry:
    """Layer and RMS normalization: reduce axes ``axis..ndim-1``; parameters span them."""
    nd = len(shape)
    a = normalize_axis("axis", axis, nd)
    ones = (1,) * (nd - a)
    return Geometry(shape=shape, perm=tuple(range(nd)), view=shape, axes=tuple(range(a, nd)),
                    param_view=(1,) * a + shape[a:], param_shape=shape[a:],
                    stat_view=shape[:a] + ones, stat_shape=shape[:a])


def split_channels(shape: tuple[int, ...], channel_axis: object, min_ndim: int
                   ) -> tuple[int, tuple[int, ...]]:
    """The channel axis (never the batch axis 0) and the spatial axes, in order."""
    if len(shape) < min_ndim:
        raise ValueError(
            f"argument 'x': got shape {shape}, expected at least {min_ndim} dimensions"
        )
    c = normalize_axis("channel_axis", channel_axis, len(shape))
    if c == 0:
        raise ValueError(
            f"argument 'channel_axis': got {channel_axis}, expected an axis other than the batch "
            "axis 0"
        )
    return c, tuple(i for i in range(1, len(shape)) if i != c)


def per_instance(shape: tuple[int, ...], channel_axis: object) -> Geometry:
    """Instance normalization: view ``(N, C, *S)``, reduce the spatial axes per (n, c)."""
    c, spatial = split_channels(shape, channel_axis, 3)
    sizes = tuple(shape[i] for i in spatial)
    n_, ch, k = shape[0], shape[c], len(sizes)
    return Geometry(shape=shape, perm=(0, c, *spatial), view=(n_, ch, *sizes),
                    axes=tuple(range(2, 2 + k)), param_view=(1, ch) + (1,) * k,
                    param_shape=(ch,), stat_view=(n_, ch) + (1,) * k, stat_shape=(n_, ch))


def contiguous_groups(shape: tuple[int, ...], groups: object, channel_axis: object) -> Geometry:
    """Group normalization: view ``(N, G, C/G, *S)``, group index outer (contiguous groups)."""
    c, spatial = split_channels(shape, channel_axis, 2)
    g = check_groups(groups, shape[c])
    sizes = tuple(shape[i] for i in spatial)
    n_, ch, k = shape[0], shape[c], len(sizes)
    return Geometry(shape=shape, perm=(0, c, *spatial), view=(n_, g, ch // g, *sizes),
                    axes=tuple(range(2, 3 + k)), param_view=(1, g, ch // g) + (1,) * k,
                    param_shape=(ch,), stat_view=(n_, g) + (1,) * (k + 1), stat_shape=(n_, g))


def check_groups(groups: object, channels: int) -> int:
    """``groups`` as an int that divides ``channels``."""
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"argument 'groups': got {groups!r}, expected an integer >= 1")
    if channels % int(groups):
        raise ValueError(
            f"argument 'groups': got {groups}, expected a divisor of the channel count {channels}"
        )
    return int(groups)


def check_ghost_batch_size(size: object, batch: int) -> int:
    """``ghost_batch_size`` as an int >= 1 that divides the batch size ``batch``."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"argument 'ghost_batch_size': got {size!r}, expected an integer >= 1")
    if batch % int(size):
        raise ValueError(f"argument 'ghost_batch_size': got {size}, expected a divisor of the "
                         f"batch size {batch}")
    return int(size)


def ghost_batches(shape: tuple[int, ...], ghost_batch_size: object, channel_axis: object
                  ) -> Geometry:
    """Ghost batch norm: view ``(G, B, C, *S)``, ghost index outer (contiguous ghost batches);
    reduce the within-ghost samples and the spatial axes per (ghost, channel)."""
    c, spatial = split_channels(shape, channel_axis, 2)
    b = check_ghost_batch_size(ghost_batch_size, shape[0])
    sizes = tuple(shape[i] for i in spatial)
    g, ch, k = shape[0] // b, shape[c], len(sizes)
    return Geometry(shape=shape, perm=(0, c, *spatial), view=(g, b, ch, *sizes),
                    axes=(1, *range(3, 3 + k)), param_view=(1, 1, ch) + (1,) * k,
                    param_shape=(ch,), stat_view=(g, 1, ch) + (1,) * k, stat_shape=(g, ch))


def per_channel(shape: tuple[int, ...], channel_axis: object) -> Geometry:
    """Batch normalization: view ``(C, *others)``, reduce every axis but the channel axis."""
    nd = len(shape)
    c = normalize_axis("channel_axis", channel_axis, nd)
    others = tuple(i for i in range(nd) if i != c)
    ch = shape[c]
    ones = (1,) * (nd - 1)
    return Geometry(shape=shape, perm=(c, *others), view=(ch, *(shape[i] for i in others)),
                    axes=tuple(range(1, nd)), param_view=(ch, *ones), param_shape=(ch,),
                    stat_view=(ch, *ones), stat_shape=(ch,))
