"""global_response_norm in JAX, composed: neither JAX nor Flax has a GRN layer.

Composed the way the JAX/Flax ports of ConvNeXt V2 write it, generalised to any channel axis
and any number of spatial axes (moved to one axis of ``m`` values), with the statistics in at
least float32 (Flax's ``force_float32_reductions`` rule) and ``y`` cast back to the dtype::

    gx = jnp.linalg.norm(x, axis=spatial, keepdims=True)
    nx = gx / (jnp.mean(gx, axis=channel, keepdims=True) + eps)
    y  = weight * (x * nx) + bias + x

``jnp.linalg.norm`` is ``sqrt(sum(x * x))`` and its derivative at a zero vector is
``0 * inf = NaN``, not the spec's subgradient 0 (PyTorch's ``vector_norm`` masks it): a real
deviation of the natural JAX composition, kept here and ledgered (adapters/ledgers/jax.toml).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jax

    from .methods import Fn

API = ("composed (no GRN in JAX or Flax): a jax.numpy composition, jnp.linalg.norm over the "
       "spatial axes in float32 or wider, its channel mean plus eps, weight * (x * nx) + bias "
       "+ x, as the Flax ports of ConvNeXt V2 write it; NaN gradient at a zero channel "
       "(jnp.linalg.norm)")
"""What the report shows for this method."""


def global_response_norm(dt: Any, *, channel_axis: int, eps: float) -> Fn:
    """``fn(primals, state) -> (y, {"gx", "nx"})``; see the module docstring."""
    import jax.numpy as jnp

    from .methods import _axis, _reduction_dtype

    acc = _reduction_dtype(dt)

    def fn(p: Mapping[str, jax.Array], s: Mapping[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
        for key in ("x", "weight", "bias"):
            if key not in p:
                raise ValueError(f"argument {key!r}: got None, expected an array")
        x = p["x"].astype(acc)
        c = _axis("channel_axis", channel_axis, x.ndim)
        if c == 0:
            raise ValueError("argument 'channel_axis': got the batch axis 0, expected another")
        # (N, m, C): one spatial axis, so jnp.linalg.norm is the vector 2-norm for any rank
        moved = jnp.moveaxis(x, c, -1)
        rows = moved.reshape(x.shape[0], -1, x.shape[c])
        gx = jnp.linalg.norm(rows, axis=1, keepdims=True)
        nx = gx / (jnp.mean(gx, axis=-1, keepdims=True) + jnp.asarray(eps, acc))
        w, b = p["weight"].astype(acc), p["bias"].astype(acc)
        y = (w * (rows * nx) + b + rows).reshape(moved.shape)
        return (jnp.moveaxis(y, -1, c).astype(dt),
                {"gx": gx[:, 0, :], "nx": nx[:, 0, :]})

    return fn
