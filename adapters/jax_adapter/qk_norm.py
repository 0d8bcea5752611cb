"""qk_norm in JAX, composed: neither JAX nor Flax has this QK norm.

``flax.linen.MultiHeadDotProductAttention(normalize_qk=True)`` applies a *centered*
``LayerNorm(use_bias=False)`` to q and k (ViT-22B), which is neither variant here. This
translation composes both variants from jax.numpy, in at least float32 (``y`` is cast to the
dtype under test)::

    l2:   qhat = q / maximum(sqrt(sum(q^2)), eps)                (F.normalize's rule)
    rms:  qhat = q * lax.rsqrt(mean(q^2) + eps) * w              (over Dh, or H and Dh)
    y = (logit_scale * gain) * jnp.einsum("bhqd,bhkd->bhqk", qb, kb)

The norm is ``optax.safe_norm``'s double ``where``: its reverse mode at a zero vector is 0,
where ``x / jnp.linalg.norm(x)`` gives NaN; ``tf.nn.l2_normalize``'s ``rsqrt(max(sum, eps^2))``
would be as safe at 0 but its derivative ``sum^(-3/2)`` overflows float32 for |q| near 1e-15. The
inputs in ``(B, T, H, Dh)`` go through the einsum ``"bqhd,bkhd->bhqk"`` directly, as
``flax.linen.dot_product_attention_weights`` computes the logits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jax

    from .methods import Fn

API = ("composed: q / max(sqrt(sum(q^2)), eps) with a NaN-safe sqrt (l2) or "
       "q * lax.rsqrt(mean(q^2) + eps) * w over Dh or (H, Dh) (rms), then (logit_scale * gain) "
       "* jnp.einsum of the logits; in at least float32")
"""What the report shows for this method: Flax's normalize_qk is a centered LayerNorm."""


def qk_norm(dt: Any, *, variant: str, layout: str, norm_axes: str, logit_scale: float,
            eps: float) -> Fn:
    """``fn(primals, state) -> (y, statistics)``; see the module docstring."""
    import jax.numpy as jnp
    from jax import lax

    from .methods import _reduction_dtype

    if variant not in ("l2", "rms") or layout not in ("bhtd", "bthd") or \
            norm_axes not in ("head", "hidden"):
        raise ValueError(f"argument 'hyper': got variant={variant!r}, layout={layout!r}, "
                         f"norm_axes={norm_axes!r}")
    acc = _reduction_dtype(dt)
    bthd = layout == "bthd"
    axes = (-1,) if norm_axes == "head" else ((2, 3) if bthd else (1, 3))
    c, e = float(logit_scale), float(eps)

    def norm(a: jax.Array, w: jax.Array | None) -> jax.Array:
        if variant == "l2":
            total = jnp.sum(a * a, axis=axes, keepdims=True)
            if e == 0.0:  # a zero vector is 0/0 = NaN, its derivatives too
                return a / jnp.sqrt(total)
            # the double where keeps sqrt's infinite slope at 0 out of reverse mode (a zero
            # vector takes the eps branch); NaN stays on the sqrt branch and propagates
            live = jnp.logical_not(total <= 0)
            n = jnp.where(live, jnp.sqrt(jnp.where(live, total, 1)), 0)
            return a / jnp.maximum(n, jnp.asarray(e, acc))
        out = a * lax.rsqrt(jnp.mean(a * a, axis=axes, keepdims=True) + jnp.asarray(e, acc))
        if w is None:
            return out
        if norm_axes == "hidden" and not bthd:
            w = w[:, None, :]  # (H, Dh) against (B, H, T, Dh)
        return out * w

    def fn(p: Mapping[str, jax.Array], s: Mapping[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
        if "k" not in p:
            raise ValueError("argument 'inputs': got no 'k', expected the keys")

        def cast(name: str) -> jax.Array | None:
            return p[name].astype(acc) if name in p else None

        qhat = norm(p["x"].astype(acc), cast("q_weight"))
        khat = norm(p["k"].astype(acc), cast("k_weight"))
        spec = "bqhd,bkhd->bhqk" if bthd else "bhqd,bhkd->bhqk"
        gain = cast("gain")
        factor = jnp.asarray(c, acc) if gain is None else c * gain
        y = factor * jnp.einsum(spec, qhat, khat)
        return y.astype(dt), {"q_hat": qhat, "k_hat": khat}

    return fn
