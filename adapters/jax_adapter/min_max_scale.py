"""min_max_scale in JAX, composed from jax.numpy: neither JAX nor Flax has a min-max scaler.

Fit (training): ``jnp.min``/``jnp.max`` over the reduction axes (JAX's derivative of a min or
max reduction splits equally among tied extremes, the spec's subgradient); apply: the given
``data_min``, ``data_max`` as constants. ``y = a + (b - a) (x - lo) / r`` with ``r = 1`` for a
constant feature. The clip is written with ``jnp.where`` rather than ``jnp.clip``: jnp.clip is
``minimum(maximum(x, a), b)``, whose derivative at ``x == a`` or ``b`` is 1/2 (the tie rule of
maximum/minimum), and a fit maps its extremes exactly onto ``a`` and ``b``; the spec's slope
there is 1 (torch.clamp's). In at least float32 (Flax's reduction rule).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jax

    from .methods import Fn

API = ("composed from jax.numpy: jnp.min and jnp.max over the reduction axes (fit) or the "
       "given data_min and data_max (apply), then a + (b - a) (x - min) / (max - min), divisor "
       "1 for a constant feature, a where-clip with slope 1 at the ends")
"""What the report shows for this method."""


def min_max_scale(dt: Any, *, training: bool, axis: object, range_min: float,
                  range_max: float, clip: bool) -> Fn:
    """``fn(primals, state) -> (y, statistics)``; see the module docstring."""
    import jax.numpy as jnp

    from .methods import _reduction_dtype
    from .standardize import _axes

    a, b = float(range_min), float(range_max)
    if not a < b:
        raise ValueError(f"argument 'range_max': got {b!r} with range_min={a!r}, expected "
                         "range_min < range_max")
    acc = _reduction_dtype(dt)

    def fn(p: Mapping[str, jax.Array], s: Mapping[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
        x = p["x"].astype(acc)
        axes = _axes(axis, x.ndim)
        keep = tuple(1 if i in axes else n for i, n in enumerate(x.shape))
        kept = tuple(n for i, n in enumerate(x.shape) if i not in axes)
        if training:
            lo = jnp.min(x, axis=axes, keepdims=True)
            hi = jnp.max(x, axis=axes, keepdims=True)
        else:
            if "data_min" not in s or "data_max" not in s:
                raise ValueError("argument 'data_min': got no fitted extremes, expected "
                                 "data_min and data_max to apply (training=False)")
            lo = s["data_min"].astype(acc).reshape(keep)
            hi = s["data_max"].astype(acc).reshape(keep)
        span = hi - lo
        r = jnp.where(span == 0, jnp.ones_like(span), span)
        y = a + (b - a) * ((x - lo) / r)
        if clip:
            y = jnp.where(y < a, a, jnp.where(y > b, b, y))
        stats = {"data_min": lo.reshape(kept), "data_max": hi.reshape(kept)} if training else {}
        return y.astype(dt), stats

    return fn
