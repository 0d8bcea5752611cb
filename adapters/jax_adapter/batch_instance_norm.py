"""batch_instance_norm in JAX, composed: neither JAX nor Flax has batch-instance normalization.

Built like the paper's own code, from the framework's two layers: the batch_norm translation
(``flax.linen.BatchNorm``, with its ``batch_stats`` update and evaluation on the running
statistics) with scale ``r * weight`` and the bias, plus the instance_norm translation
(``flax.linen.InstanceNorm``) with scale ``(1 - r) * weight``, ``r`` the clipped gate. Both
layers keep Flax's defaults (``use_fast_variance`` included), as for batch_norm and
instance_norm themselves.

The clip is written out, because ``jnp.clip`` has the wrong slope at the ends: it is
``maximum`` then ``minimum``, whose JVP splits a tie evenly (``_balanced_eq`` in
``jax/_src/lax/lax.py``), so its derivative is 0.5 at ``rho = 0`` and ``rho = 1``;
``lax.clamp``'s is 0 there (strict inequalities). The spec's slope is 1 on the closed
interval, so::

    r = jnp.where((rho >= 0) & (rho <= 1), rho, jnp.clip(rho, 0, 1))

takes ``rho`` itself (slope 1) wherever it is inside ``[0, 1]``, ends included, and the clip
(slope 0) outside. The three slopes are checked on the installed jax in
tests/test_mixed_eval_and_bin_adapters.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jax

    from .methods import Fn

API = ("composed: flax.linen.BatchNorm (batch_stats, running statistics) with scale r * weight "
       "and the bias, plus flax.linen.InstanceNorm with scale (1 - r) * weight; r = rho on "
       "[0, 1] (ends included) and jnp.clip outside, the spec's slope (jnp.clip alone gives 0.5 "
       "at the ends)")
"""What the report shows for this method: Flax has no batch-instance normalization."""


def spec_clip(rho: jax.Array) -> jax.Array:
    """``clip(rho, 0, 1)`` with the spec's slope: 1 on the closed interval, 0 outside."""
    import jax.numpy as jnp

    inside = (rho >= 0) & (rho <= 1)
    return jnp.where(inside, rho, jnp.clip(rho, 0, 1))


def batch_instance_norm(dt: Any, *, training: bool, eps: float, channel_axis: int = 1,
                        num_batches_tracked: int = 0,
                        batch_stat_weight: float | str | None = None,
                        running_var_estimator: str | None = None) -> Fn:
    """``fn(primals, state) -> (y, state')``; see the module docstring."""
    # methods imports this module for its table; importing it back at call time breaks the cycle
    from .methods import batch_norm, instance_norm

    bn = batch_norm(dt, training=training, eps=eps, channel_axis=channel_axis,
                    num_batches_tracked=num_batches_tracked,
                    batch_stat_weight=batch_stat_weight,
                    running_var_estimator=running_var_estimator)
    inorm = instance_norm(dt, eps=eps, channel_axis=channel_axis)

    def fn(p: Mapping[str, jax.Array], s: Mapping[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
        if "rho" not in p:
            raise ValueError("argument 'rho': got None, expected the gate of shape (C,)")
        r = spec_clip(p["rho"])
        w = p.get("weight")
        bn_p = {"x": p["x"], "weight": r if w is None else r * w}
        if "bias" in p:
            bn_p["bias"] = p["bias"]
        y_bn, state = bn(bn_p, s)
        y_in, _ = inorm({"x": p["x"], "weight": 1 - r if w is None else (1 - r) * w}, {})
        return y_bn + y_in, state

    return fn
