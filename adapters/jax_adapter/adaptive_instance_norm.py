"""adaptive_instance_norm in JAX, composed: neither JAX nor Flax has an AdaIN layer.

Written from jax.numpy the way the paper's PyTorch port computes it, with Flax's reduction rule
(statistics in at least float32, the result cast to the dtype under test)::

    mean, var = jnp.mean(x), jnp.var(x, ddof=1 or 0)          over the spatial axes
    x_hat     = (x - mean) / jnp.sqrt(var + eps)
    y         = x_hat * jnp.sqrt(style_var + eps) + style_mean

``jnp.var`` subtracts the mean before squaring (two passes), so an offset input keeps its
precision; ``flax.linen.InstanceNorm`` is not used for ``x_hat`` because it has no unbiased
variance and its default ``use_fast_variance=True`` is the one-pass ``E[x^2] - E[x]^2``.
Gradients reach both inputs through JAX's autodiff of this composition.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jax

    from .methods import Fn

API = ("composed (Flax has no AdaIN), jax.numpy: jnp.mean and jnp.var(ddof=1 or 0) over the "
       "spatial axes for content and style, statistics in at least float32 (Flax's reduction "
       "rule), x_hat = (x - mean) / sqrt(var + eps), "
       "y = x_hat * sqrt(style_var + eps) + style_mean")
"""What the report shows for this method."""


def adaptive_instance_norm(dt: Any, *, variance_estimator: str, eps: float,
                           channel_axis: int = 1) -> Fn:
    """``fn(primals, state) -> (y, {})``; see the module docstring."""
    import jax.numpy as jnp

    from .methods import _axis, _reduction_dtype

    if variance_estimator not in ("biased", "unbiased"):
        raise ValueError(f"argument 'variance_estimator': got {variance_estimator!r}, expected "
                         "'biased' or 'unbiased'")
    ddof = 1 if variance_estimator == "unbiased" else 0
    rdt = _reduction_dtype(dt)

    def stats(a: jax.Array) -> tuple[jax.Array, jax.Array, int]:
        c = _axis("channel_axis", channel_axis, a.ndim)
        moved = jnp.moveaxis(a, c, 1).astype(rdt)
        spatial = tuple(range(2, a.ndim))
        mean = jnp.mean(moved, axis=spatial, keepdims=True)
        var = jnp.var(moved, axis=spatial, ddof=ddof, keepdims=True)
        return mean, var, c

    def fn(p: Mapping[str, jax.Array], s: Mapping[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
        x, style = p["x"], p["style"]
        mean, var, c = stats(x)
        s_mean, s_var, _ = stats(style)
        moved = jnp.moveaxis(x, c, 1).astype(rdt)
        view = (moved.shape[0], moved.shape[1]) + (1,) * (moved.ndim - 2)
        x_hat = (moved - mean) / jnp.sqrt(var + eps)
        y = x_hat * jnp.sqrt(s_var + eps).reshape(view) + s_mean.reshape(view)
        return jnp.moveaxis(y.astype(dt), 1, c), {}

    return fn
