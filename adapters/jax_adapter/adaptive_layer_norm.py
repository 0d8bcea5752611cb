"""adaptive_layer_norm in JAX, composed: neither JAX nor Flax has an adaLN layer.

Flax ports of DiT compose it from ``flax.linen.LayerNorm`` without affine and a ``Dense`` map on
``silu(c)``; this translation does the same, in Flax's statistics dtype (at least float32; ``y``
is cast to the dtype under test), with DiT's chunk order::

    u = jax.nn.silu(cond)                          ("silu"; cond itself for "none")
    m = u @ weight + bias                          (weight (K, P*D), Dense's kernel layout)
    shift, scale[, gate] = jnp.split(m, P, axis=1)
    z = flax.linen.LayerNorm(use_scale=False, use_bias=False)(x)       (last axis)
    y = z * (1 + scale) + shift                    (times gate when gated)

jax.vjp and jax.jvp differentiate it. ``LayerNorm`` keeps Flax's defaults (the fast variance
``E[x^2] - E[x]^2``), as a Flax DiT would run it; its statistics are not exposed, so the
reported ``mean`` and ``var`` are ``jnp.mean`` and the two-pass ``jnp.var``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jax

    from .methods import Fn

API = ("composed: jax.nn.silu(cond) @ weight + bias split into (shift, scale, gate) as DiT, "
       "flax.linen.LayerNorm(use_scale=False, use_bias=False) on the last axis, z * (1 + scale) "
       "+ shift, times the gate when gated; in at least float32")
"""What the report shows for this method: Flax has no adaptive layer norm."""


def adaptive_layer_norm(dt: Any, *, gated: bool, activation: str, eps: float) -> Fn:
    """``fn(primals, state) -> (y, statistics)``; see the module docstring."""
    import jax
    import jax.numpy as jnp
    from flax import linen as nn

    from .methods import _apply, _reduction_dtype

    if not isinstance(gated, bool) or activation not in ("silu", "none"):
        raise ValueError(f"argument 'gated'/'activation': got {gated!r}, {activation!r}, "
                         "expected a bool and 'silu' or 'none'")
    acc = _reduction_dtype(dt)
    parts = 3 if gated else 2

    def fn(p: Mapping[str, jax.Array], s: Mapping[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
        if "cond" not in p or "weight" not in p:
            raise ValueError("argument 'inputs': got no 'cond' or 'weight', expected both")
        x, c, w = p["x"].astype(acc), p["cond"].astype(acc), p["weight"].astype(acc)
        u = jax.nn.silu(c) if activation == "silu" else c
        m = u @ w
        if "bias" in p:
            m = m + p["bias"].astype(acc)
        chunks = jnp.split(m, parts, axis=1)
        view = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
        layer = nn.LayerNorm(epsilon=eps, dtype=acc, param_dtype=acc, use_scale=False,
                             use_bias=False)
        z = _apply(layer, {"params": {}}, x)
        y = z * (1.0 + chunks[1].reshape(view)) + chunks[0].reshape(view)
        if gated:
            y = chunks[2].reshape(view) * y
        stats = {"mean": jnp.mean(x, axis=-1), "var": jnp.var(x, axis=-1), "shift": chunks[0],
                 "scale": chunks[1]}
        if gated:
            stats["gate"] = chunks[2]
        return y.astype(dt), stats

    return fn
