"""ghost_batch_norm in JAX, composed: neither JAX nor Flax has a ghost batch norm layer.

One ``flax.linen.BatchNorm`` normalizes every ghost batch at once, as in the torch adapter.
With the channel axis moved to 1, ``x`` of shape ``(N, C, *S)`` is viewed as ``(G, B, C, L)``
(``B = ghost_batch_size``, ``L = prod(S)``, ghost index outer: contiguous ghost batches) and
rearranged to ``(B, G*C, L)``: each (ghost, channel) pair is one feature of the layer
(``axis=1``), which reduces exactly that ghost batch's set over ``B`` and ``L``. Its ``scale``
and ``bias`` are ``weight`` and ``bias`` tiled ``G`` times (feature ``g*C + c`` holds channel
``c``'s), so autodiff sums the parameter gradients over the ghost batches. Every value and
derivative is Flax's BatchNorm under jax.vjp and jax.jvp, with Flax's defaults
(``use_fast_variance`` included, as for batch_norm).

Running statistics, updated once per call: Flax's ``batch_stats`` of shape ``(G*C,)`` start as
the running statistics tiled over the ghosts and become
``momentum * running + (1 - momentum) * stat[g, c]`` with ``momentum = 1 - f`` (the biased
variance, Flax's only one). The update is affine in the statistic, so their average over the
ghosts is the spec's update. With ``running_var_estimator="unbiased"``, which Flax cannot
store, the update is composed from ``jnp.mean`` and ``jnp.var(ddof=1)`` on the same view, in
Flax's statistics dtype; ``n`` is one ghost batch's count, as in the spec.

Evaluation is batch norm's (the batch is not split): the batch_norm translation runs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import jax

    from .methods import Fn

API = ("composed: one flax.linen.BatchNorm on the (B, G*C, L) view of x (each ghost batch's "
       "channel is one feature), scale/bias tiled G times; running statistics are its "
       "per-ghost batch_stats averaged over the ghosts (unbiased estimator composed from "
       "jnp.var(ddof=1)); evaluation is flax.linen.BatchNorm")
"""What the report shows for this method: Flax has no ghost batch norm layer."""


def ghost_batch_norm(dt: Any, *, training: bool, eps: float, ghost_batch_size: int,
                     channel_axis: int = 1, num_batches_tracked: int = 0,
                     batch_stat_weight: float | str | None = None,
                     running_var_estimator: str | None = None) -> Fn:
    """``fn(primals, state) -> (y, state')``; see the module docstring."""
    import jax.numpy as jnp
    from flax import linen as nn
    from jax import lax

    # methods imports this module for its table; importing it back at call time breaks the cycle
    from .methods import _axis, _reduction_dtype, batch_norm, flax_momentum

    if isinstance(ghost_batch_size, bool) or not isinstance(
            ghost_batch_size, (int, np.integer)) or ghost_batch_size < 1:
        raise ValueError(f"argument 'ghost_batch_size': got {ghost_batch_size!r}, expected an "
                         "integer >= 1")
    if not training:
        return batch_norm(dt, training=False, eps=eps, channel_axis=channel_axis)
    if running_var_estimator not in (None, "biased", "unbiased"):
        raise ValueError(f"argument 'running_var_estimator': got {running_var_estimator!r}, "
                         "expected 'biased' or 'unbiased'")
    momentum = (None if batch_stat_weight is None
                else flax_momentum(batch_stat_weight, int(num_batches_tracked)))
    sdt = _reduction_dtype(dt)
    size = int(ghost_batch_size)

    def fn(p: Mapping[str, jax.Array], s: Mapping[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
        x = p["x"]
        c = _axis("channel_axis", channel_axis, x.ndim)
        if c == 0:
            raise ValueError("argument 'channel_axis': got the batch axis 0, expected another "
                             "axis (ghost batches split axis 0)")
        xm = jnp.moveaxis(x, c, 1)
        batch, channels = xm.shape[0], xm.shape[1]
        if batch % size:
            raise ValueError(f"argument 'ghost_batch_size': got {size}, expected a divisor of "
                             f"the batch size {batch}")
        ghosts = batch // size
        features = ghosts * channels
        view = jnp.transpose(xm.reshape(ghosts, size, channels, -1), (1, 0, 2, 3)).reshape(
            size, features, -1)
        tracking = "running_mean" in s
        if tracking != ("running_var" in s):
            raise ValueError("argument 'running_mean': running_mean and running_var must be "
                             "given together or not at all")
        if tracking and momentum is None:
            raise ValueError("argument 'batch_stat_weight': got None while updating running "
                             "statistics, expected a number in [0, 1] or 'cumulative'")
        if tracking:
            stats = {"mean": jnp.tile(s["running_mean"], ghosts),
                     "var": jnp.tile(s["running_var"], ghosts)}
        else:
            # Flax always keeps batch_stats; without tracking they are scratch, thrown away.
            stats = {"mean": jnp.zeros((features,), sdt), "var": jnp.ones((features,), sdt)}
        params = {k: jnp.tile(v, ghosts) for k, v in
                  (("scale", p.get("weight")), ("bias", p.get("bias"))) if v is not None}
        m = 0.0 if momentum is None else momentum
        layer = nn.BatchNorm(use_running_average=False, axis=1, epsilon=eps, momentum=m,
                             dtype=dt, param_dtype=dt, use_scale="weight" in p,
                             use_bias="bias" in p)
        yv: jax.Array
        yv, updated = layer.apply({"params": params, "batch_stats": stats}, view,
                                  mutable=["batch_stats"])
        y = jnp.transpose(yv.reshape(size, ghosts, channels, -1), (1, 0, 2, 3)).reshape(xm.shape)
        y = jnp.moveaxis(y, 1, c)
        if not tracking:
            return y, {}

        def average(stat: jax.Array) -> jax.Array:  # (G*C,) ghost-major -> mean over ghosts
            out: jax.Array = jnp.mean(stat.reshape(ghosts, channels), axis=0)
            return out

        if running_var_estimator != "unbiased":
            new = updated["batch_stats"]
            return y, {"running_mean": average(new["mean"]), "running_var": average(new["var"])}
        xs = lax.stop_gradient(view).astype(sdt)
        mean, var = jnp.mean(xs, axis=(0, 2)), jnp.var(xs, axis=(0, 2), ddof=1)
        return y, {"running_mean": m * s["running_mean"] + (1 - m) * average(mean),
                   "running_var": m * s["running_var"] + (1 - m) * average(var)}

    return fn
