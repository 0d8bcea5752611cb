"""sequence_batch_norm through ``flax.linen.BatchNorm(...)(x, mask=...)``.

Flax 0.12.8 (read in the installed wheel, ``flax/linen/normalization.py``): ``_compute_stats``
takes every mean as ``x.mean(axes, where=mask)``, so positions where the mask is False never
enter the statistics, and ``_normalize`` then normalizes **every** position of ``x`` with them.
The statistics span the axes that are not feature axes:

* ``statistics="sequence"``: ``axis=C`` (the channel axis), the mask broadcast over channels:
  one mean and variance per channel over every valid (n, t).
* ``statistics="frame"``: ``axis=(T, C)``: one statistic per (t, c) over the valid n. Flax
  then keeps ``scale``, ``bias`` and ``batch_stats`` of shape ``(T, C)``; the spec's
  ``(C,)`` weight and bias are broadcast to it (their gradient sums over T through the
  broadcast), and the running statistics are exactly Flax's ``(T, C)`` batch_stats.

Translated around the layer, explicitly:

* padded inputs are replaced by 0 (``jnp.where``) before the call: Flax normalizes them too,
  and a NaN there would reach the scale gradient as 0 * NaN although the output is masked;
* padded outputs are set to 0 (``jnp.where``) after the call, the spec's value there;
* ``momentum = 1 - batch_stat_weight`` (``k/(k+1)`` for ``"cumulative"``, see
  :func:`.methods.flax_momentum`); Flax feeds the biased batch variance into
  ``batch_stats['var']``, so ``running_var_estimator="unbiased"`` is composed from
  ``jnp.mean``/``jnp.var(ddof=1, where=mask)`` (``composed``, never Flax's value rescaled);
* ``use_fast_variance`` is left at Flax's default (True), what users get.

A row without valid frames is Flax's 0/0: NaN statistics, NaN running statistics after the
update, and a NaN scale gradient; the spec keeps the running statistics and gives 0. That is
Flax's behaviour, recorded in the ledger, not patched here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jax

    from .methods import Fn

API = ("flax.linen.BatchNorm(..., axis=C | (T, C))(x, mask=mask): padded inputs and outputs "
       "zeroed with jnp.where")


def composed_when(hyper: Mapping[str, Any], state: frozenset[str]) -> str | None:
    """The unbiased running update is composed (Flax stores the biased batch variance)."""
    if hyper.get("training") and "running_mean" in state and (
            hyper.get("running_var_estimator") == "unbiased"):
        return ("y from flax.linen.BatchNorm(mask=...); the running-statistics update with "
                "running_var_estimator='unbiased' is composed from jnp.mean and "
                "jnp.var(ddof=1, where=mask) over the valid frames, because Flax always feeds "
                "the biased batch variance into batch_stats['var']")
    return None


def sequence_batch_norm(dt: Any, *, statistics: str, training: bool, eps: float,
                        channel_axis: int = -1, num_batches_tracked: int = 0,
                        batch_stat_weight: float | str | None = None,
                        running_var_estimator: str | None = None) -> Fn:
    """Flax BatchNorm with a mask; see the module docstring."""
    import jax.numpy as jnp
    from flax import linen as nn
    from jax import lax

    from .methods import flax_momentum  # here: methods imports this module for its table

    if statistics not in ("frame", "sequence"):
        raise ValueError(f"argument 'statistics': got {statistics!r}, expected 'frame' or "
                         "'sequence'")
    if running_var_estimator not in (None, "biased", "unbiased"):
        raise ValueError(f"argument 'running_var_estimator': got {running_var_estimator!r}, "
                         "expected 'biased' or 'unbiased'")
    if isinstance(channel_axis, bool) or channel_axis not in (1, 2, -1, -2):
        raise ValueError(f"argument 'channel_axis': got {channel_axis!r}, expected 1, 2 or -1")
    first = channel_axis % 3 == 1
    frame = statistics == "frame"
    momentum = (0.0 if batch_stat_weight is None
                else flax_momentum(batch_stat_weight, int(num_batches_tracked)))
    sdt = jnp.promote_types(dt, jnp.float32)  # Flax's force_float32_reductions

    def fn(p: Mapping[str, jax.Array], s: Mapping[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
        x = jnp.swapaxes(p["x"], 1, 2) if first else p["x"]
        if "mask" not in s:
            raise ValueError("argument 'inputs': got no 'mask', expected a bool array (N, T)")
        mask = s["mask"].astype(bool)[:, :, None]
        tracking = "running_mean" in s
        if tracking != ("running_var" in s):
            raise ValueError("argument 'running_mean': running_mean and running_var must be "
                             "given together or not at all")
        if not training and not tracking:
            raise ValueError("argument 'running_mean': got None with training=False, expected "
                             "the running statistics for evaluation")

        def canonical(a: jax.Array) -> jax.Array:  # a statistic in Flax's feature shape
            return jnp.swapaxes(a, 0, 1) if frame and first else a

        feature = x.shape[1:] if frame else x.shape[2:]
        if tracking:
            stats = {"mean": canonical(s["running_mean"]), "var": canonical(s["running_var"])}
        else:  # Flax always keeps batch_stats; without tracking they are scratch
            stats = {"mean": jnp.zeros(feature, sdt), "var": jnp.ones(feature, sdt)}
        params = {("scale" if k == "weight" else "bias"): jnp.broadcast_to(v, feature)
                  for k, v in p.items() if k in ("weight", "bias")}
        # Flax annotates axis as an int, but _canonicalize_axes takes a tuple of feature axes
        features: Any = (1, 2) if frame else 2
        layer = nn.BatchNorm(use_running_average=not training, axis=features, epsilon=eps,
                             momentum=momentum, dtype=dt, param_dtype=dt,
                             use_scale="weight" in p, use_bias="bias" in p)
        variables = {"params": params, "batch_stats": stats}
        clean = jnp.where(mask, x, jnp.zeros((), x.dtype))
        out: dict[str, jax.Array] = {}
        if training:
            y, updated = layer.apply(variables, clean, mask=mask, mutable=["batch_stats"])
            if tracking and running_var_estimator == "unbiased":
                axes = (0,) if frame else (0, 1)
                xs = lax.stop_gradient(clean).astype(sdt)
                where = jnp.broadcast_to(mask, xs.shape)
                mean = jnp.mean(xs, axis=axes, where=where)
                var = jnp.var(xs, axis=axes, ddof=1, where=where)
                out = {"running_mean": momentum * stats["mean"] + (1 - momentum) * mean,
                       "running_var": momentum * stats["var"] + (1 - momentum) * var}
            elif tracking:
                out = {"running_mean": updated["batch_stats"]["mean"],
                       "running_var": updated["batch_stats"]["var"]}
        else:
            y = layer.apply(variables, clean, mask=mask)
        y = jnp.where(mask, y, jnp.zeros((), y.dtype))
        # Flax keeps no step counter: num_batches_tracked is not returned (not checked)
        return (jnp.swapaxes(y, 1, 2) if first else y), {k: canonical(v) for k, v in out.items()}

    return fn
