"""weight_standardization in JAX, composed: neither JAX nor Flax has such a layer.

A jax.numpy composition over every axis of the kernel but ``kept_axis`` (Flax and Keras
kernels keep the output channel last), with the statistics in at least float32 (Flax's
``force_float32_reductions`` rule) and ``y`` cast back to the dtype under test::

    mean = jnp.mean(w, axis=others, keepdims=True)
    var  = jnp.mean(jnp.square(w - mean), axis=others, keepdims=True)     # biased, two passes
    y    = (w - mean) * lax.rsqrt(var + eps)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jax

    from .methods import Fn

API = ("composed (no weight standardization in JAX or Flax): a jax.numpy composition, the "
       "two-pass biased variance over every axis but kept_axis in float32 or wider, "
       "(w - mean) * lax.rsqrt(var + eps)")
"""What the report shows for this method."""


def weight_standardization(dt: Any, *, kept_axis: int, eps: float) -> Fn:
    """``fn(primals, state) -> (y, {"mean", "var", "rstd"})``; see the module docstring."""
    import jax.numpy as jnp
    from jax import lax

    from .methods import _axis, _reduction_dtype

    acc = _reduction_dtype(dt)

    def fn(p: Mapping[str, jax.Array], s: Mapping[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
        if "x" not in p:
            raise ValueError("argument 'x': got None, expected an array")
        x = p["x"].astype(acc)
        k = _axis("kept_axis", kept_axis, x.ndim)
        others = tuple(i for i in range(x.ndim) if i != k)
        mean = jnp.mean(x, axis=others, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=others, keepdims=True)
        rstd = lax.rsqrt(var + jnp.asarray(eps, acc))
        flat = (x.shape[k],)
        return ((x - mean) * rstd).astype(dt), {"mean": mean.reshape(flat),
                                                "var": var.reshape(flat),
                                                "rstd": rstd.reshape(flat)}

    return fn
