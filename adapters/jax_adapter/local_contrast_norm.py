"""local_contrast_norm in JAX, composed (neither JAX nor Flax has local contrast normalization).

A jax.numpy / lax composition: the channel mean, a zero-padded separable Gaussian convolution
with ``lax.conv_general_dilated`` (one ``k``-tap pass per spatial axis), the border renormalized
by the convolution of a ones map, ``jnp.sqrt`` and ``jnp.maximum`` (whose JVP splits a tie
1/2-1/2, the spec's convention), in at least float32. ``jnp.sqrt``'s derivative at 0 is
infinite: where sigma is 0 the derivatives are NaN, not the spec's 0 (unregistered; to ledger).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jax

    from .methods import Fn

API = ("composed (no local contrast normalization in JAX or Flax): a jax.numpy composition, "
       "channel mean, separable Gaussian lax.conv_general_dilated with zero padding "
       "(renormalized by the convolution of ones), jnp.sqrt, jnp.maximum")


def local_contrast_norm(dt: Any, *, channel_axis: int, kernel_size: int, window_sigma: float,
                        border: str, divisor_floor: float | str) -> Fn:
    """``fn(primals, state) -> (y, {"sigma", "floor"})``; see the module docstring."""
    import jax.numpy as jnp
    from jax import lax

    from .methods import _axis, _reduction_dtype

    acc = _reduction_dtype(dt)

    def smooth(u: jax.Array, taps: jax.Array) -> jax.Array:
        dims = u.ndim - 2
        k = taps.shape[0]
        for axis in range(dims):
            shape = (1, 1, *[k if i == axis else 1 for i in range(dims)])
            pad = [((k - 1) // 2, (k - 1) // 2) if i == axis else (0, 0) for i in range(dims)]
            u = lax.conv_general_dilated(u, taps.reshape(shape), (1,) * dims, pad)
        return u

    def fn(p: Mapping[str, jax.Array], s: Mapping[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
        x = p["x"].astype(acc)
        c = _axis("channel_axis", channel_axis, x.ndim)
        xm = jnp.moveaxis(x, c, 1)
        grid = jnp.arange(kernel_size, dtype=acc) - (kernel_size - 1) / 2
        taps = jnp.exp(-(grid * grid) / (2 * window_sigma * window_sigma))
        taps = taps / jnp.sum(taps)
        mass = smooth(jnp.ones((1, 1, *xm.shape[2:]), acc), taps)

        def window(u: jax.Array) -> jax.Array:
            out = smooth(u, taps)
            return out / mass if border == "renormalize" else out

        v = xm - window(jnp.mean(xm, axis=1, keepdims=True))
        sigma = jnp.sqrt(window(jnp.mean(v * v, axis=1, keepdims=True)))
        spatial = tuple(range(2, xm.ndim))
        if isinstance(divisor_floor, str):
            floor = jnp.mean(sigma, axis=spatial, keepdims=True)
        else:
            floor = jnp.full((xm.shape[0], 1, *[1] * len(spatial)), divisor_floor, acc)
        y = jnp.moveaxis(v / jnp.maximum(floor, sigma), 1, c).astype(dt)
        return y, {"sigma": sigma[:, 0], "floor": floor.reshape(-1)}

    return fn
