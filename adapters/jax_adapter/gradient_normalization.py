"""gradient_normalization in JAX, composed: neither JAX nor Flax has gradient normalization.

A ``jax.custom_vjp`` function: the identity forward, and a backward rule that normalizes the
incoming gradient over the given axes, in at least float32 (Flax's
``force_float32_reductions`` rule), cast back to the dtype::

    norm = jnp.sqrt(jnp.sum(g * g, axis=axes, keepdims=True))
    grad_x = g / jnp.maximum(norm, eps)

JAX's own ``custom_vjp`` rule is not differentiated again by a JVP of the VJP unless it is
itself differentiable; the method declares its JVP and second order not applicable, and the
runner never asks for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jax

    from .methods import Fn

API = ("composed (no gradient normalization in JAX or Flax): jax.custom_vjp with the identity "
       "forward and a jax.numpy backward rule, g / jnp.maximum(sqrt(sum(g * g over the axes)), "
       "eps), in float32 or wider")
"""What the report shows for this method."""


def _axes(axis: object, ndim: int) -> tuple[int, ...]:
    if isinstance(axis, str):  # the catalogs' scalar form "1,2,3"
        items = [int(a) for a in axis.split(",")]
    elif isinstance(axis, int) and not isinstance(axis, bool):
        items = [axis]
    elif isinstance(axis, (list, tuple)):
        items = [int(a) for a in axis]
    else:
        raise TypeError(f"argument 'axis': got {axis!r}, expected an int, a list or '1,2'")
    if any(not -ndim <= a < ndim for a in items):
        raise ValueError(f"argument 'axis': got {axis!r}, expected axes of a {ndim}-d input")
    axes = tuple(sorted({a % ndim for a in items}))
    if not axes or len(axes) != len(items):
        raise ValueError(f"argument 'axis': got {axis!r}, expected distinct axes")
    return axes


def gradient_normalization(dt: Any, *, axis: object, eps: float) -> Fn:
    """``fn(primals, state) -> (y, {})``; see the module docstring."""
    import jax
    import jax.numpy as jnp

    from .methods import _reduction_dtype

    acc = _reduction_dtype(dt)
    eps = float(eps)
    if not eps >= 0.0:
        raise ValueError(f"argument 'eps': got {eps!r}, expected a number >= 0")

    def fn(p: Mapping[str, jax.Array], s: Mapping[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
        x = p["x"]
        axes = _axes(axis, x.ndim)

        @jax.custom_vjp
        def identity(v: jax.Array) -> jax.Array:
            return v

        def fwd(v: jax.Array) -> tuple[jax.Array, None]:
            return v, None

        def bwd(_: None, g: jax.Array) -> tuple[jax.Array]:
            wide = g.astype(acc)
            norm = jnp.sqrt(jnp.sum(wide * wide, axis=axes, keepdims=True))
            return ((wide / jnp.maximum(norm, eps)).astype(g.dtype),)

        identity.defvjp(fwd, bwd)
        return identity(x), {}

    return fn
