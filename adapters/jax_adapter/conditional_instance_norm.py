"""conditional_instance_norm in JAX, composed: neither JAX nor Flax has conditional instance norm.

``flax.linen.InstanceNorm`` has one (scale, bias) per channel, not one row per sample's style,
so the layer is written from jax.numpy with Flax's reduction rule (statistics in at least
float32, the result cast to the dtype under test)::

    x_hat = (x - jnp.mean(x)) / jnp.sqrt(jnp.var(x) + eps)     over the spatial axes
    y     = x_hat * weight[style] + bias[style]

``jnp.var`` subtracts the mean first (two passes). ``weight[style]`` is a gather whose transpose
is a scatter-add, the spec's gradient of the tables (rows no sample selects get 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jax

    from .methods import Fn

API = ("composed (Flax has no conditional instance norm), jax.numpy: jnp.mean and jnp.var over "
       "the spatial axes in at least float32 (Flax's reduction rule), x_hat = (x - mean) / "
       "sqrt(var + eps), y = x_hat * weight[style] + bias[style] (a gather; its transpose is "
       "the scatter-add)")
"""What the report shows for this method."""


def conditional_instance_norm(dt: Any, *, eps: float, channel_axis: int = 1) -> Fn:
    """``fn(primals, state) -> (y, {})``; ``state`` carries the int64 ``style``."""
    import jax.numpy as jnp

    from .methods import _axis, _reduction_dtype

    rdt = _reduction_dtype(dt)

    def fn(p: Mapping[str, jax.Array], s: Mapping[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
        x, w, b, style = p["x"], p["weight"], p["bias"], s["style"]
        c = _axis("channel_axis", channel_axis, x.ndim)
        moved = jnp.moveaxis(x, c, 1).astype(rdt)
        spatial = tuple(range(2, x.ndim))
        mean = jnp.mean(moved, axis=spatial, keepdims=True)
        var = jnp.var(moved, axis=spatial, keepdims=True)
        x_hat = (moved - mean) / jnp.sqrt(var + eps)
        view = (moved.shape[0], moved.shape[1]) + (1,) * (moved.ndim - 2)
        y = (x_hat * w.astype(rdt)[style].reshape(view)
             + b.astype(rdt)[style].reshape(view))
        return jnp.moveaxis(y.astype(dt), 1, c), {}

    return fn
