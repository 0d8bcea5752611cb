"""spectral_norm in JAX, composed from jax.numpy, because ``flax.linen.SpectralNorm`` is a
different method in five ways (checked on flax 0.12.8's source, ``_spectral_normalize``, and by
tests/test_spectral_norm_frameworks.py):

* it keeps no ``v``: the state is ``u`` alone (shape ``(1, h)``) and ``sigma``; ``v`` is
  recomputed from ``u`` on every call;
* ``update_stats=False`` (its evaluation) still runs ``n_steps`` iterations from the stored
  ``u`` (it only does not store the result): the spec's evaluation runs none;
* its normalization is ``x * rsqrt(sum(x^2) + eps)`` (eps inside the square root, added to
  the squared norm), not ``x / max(||x||, eps)``;
* at ``sigma = 0`` it divides by 1 (``W`` is returned unnormalized), not ``0 / 0``;
* it has one order (``v`` then ``u``, the spec's ``v_first``) and always views the weight as
  ``reshape(-1, W.shape[-1])`` (the spec's ``dim = -1``).

The composition: ``M = moveaxis(W, dim, 0).reshape(h, -1)``; exact mode
``sigma = jnp.linalg.svd(M, compute_uv=False)[0]`` (differentiated through JAX's SVD rules);
power iteration ``N(a) = a / jnp.maximum(||a||, eps)`` in the spec's order under
``jax.lax.stop_gradient``, ``sigma = u . (M v)``; evaluation reads ``u`` and ``v``. In at least
float32 (Flax's float32 default for its ``u`` variable and its reductions).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jax

    from .methods import Fn

API = ("composed from jax.numpy (flax.linen.SpectralNorm keeps no v, iterates in evaluation, "
       "puts eps inside the square root and returns W at sigma = 0): jnp.linalg.svd for exact "
       "mode; the power iteration x / maximum(norm, eps) under stop_gradient, sigma = u.(M v)")
"""What the report shows for this method."""


def spectral_norm(dt: Any, *, dim: int, mode: str, training: bool,
                  n_power_iterations: int | None = None, update_order: str | None = None,
                  eps: float | None = None) -> Fn:
    """``fn(primals, state) -> (y, statistics)``; see the module docstring."""
    import jax
    import jax.numpy as jnp

    from .methods import _reduction_dtype

    if mode not in ("exact", "power_iteration"):
        raise ValueError(f"argument 'mode': got {mode!r}, expected 'exact' or "
                         "'power_iteration'")
    iterating = mode == "power_iteration" and bool(training)
    if iterating and update_order not in ("v_first", "u_first"):
        raise ValueError(f"argument 'update_order': got {update_order!r}, expected 'v_first' "
                         "or 'u_first'")
    steps = int(n_power_iterations or 0) if iterating else 0
    if iterating and steps < 1:
        raise ValueError(f"argument 'n_power_iterations': got {n_power_iterations!r}, "
                         "expected an integer >= 1")
    floor = float(eps) if iterating and eps is not None else 0.0
    acc = _reduction_dtype(dt)

    def normalize(a: jax.Array) -> jax.Array:
        return a / jnp.maximum(jnp.sqrt(jnp.sum(a * a)), floor)

    def fn(p: Mapping[str, jax.Array], s: Mapping[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
        w = p["x"].astype(acc)
        d = dim % w.ndim
        m = jnp.moveaxis(w, d, 0).reshape(w.shape[d], -1)
        if mode == "exact":
            sigma = jnp.linalg.svd(m, compute_uv=False)[0]
            return (w / sigma).astype(dt), {"sigma": sigma}
        if "u" not in s or "v" not in s:
            raise ValueError("argument 'u': got no state, expected u and v in "
                             "mode='power_iteration'")
        u, v = s["u"].astype(acc), s["v"].astype(acc)
        mc = jax.lax.stop_gradient(m)
        for _ in range(steps):
            if update_order == "v_first":
                v = normalize(mc.T @ u)
                u = normalize(mc @ v)
            else:
                u = normalize(mc @ v)
                v = normalize(mc.T @ u)
        u, v = jax.lax.stop_gradient(u), jax.lax.stop_gradient(v)
        sigma = u @ (m @ v)
        stats = {"sigma": sigma, "u": u, "v": v} if iterating else {"sigma": sigma}
        return (w / sigma).astype(dt), stats

    return fn
