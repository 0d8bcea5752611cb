"""batch_renorm in JAX, composed: neither JAX nor Flax has batch renormalization.

Flax 0.12.8's ``linen.BatchNorm`` has no renorm option (Keras 2's ``renorm=True`` has no Flax
counterpart), so the method is written in jax.numpy from the spec's equations, the way a JAX
user writes it: batch mean and two-pass biased variance (``jnp.mean``, ``jnp.var``) in Flax's
statistics dtype (at least float32), ``z = (x - mean) * rsqrt(var + eps)``, and

    r = stop_gradient(clip(sqrt(var + eps) / sqrt(running_var + eps), 1/rmax, rmax))
    d = stop_gradient(clip((mean - running_mean) / sqrt(running_var + eps), -dmax, dmax))
    y = (z * r + d) * weight + bias

``jax.lax.stop_gradient`` makes r and d constants for jax.vjp and jax.jvp alike, as the spec
says; JAX differentiates through the batch mean and variance inside ``z``. The running
statistics passed in (from before this step) give r and d; the update is the spec's
``(1 - f) running + f batch`` with the biased or unbiased (``jnp.var(ddof=1)``) batch variance.
Evaluation is batch norm's: the batch_norm translation (``flax.linen.BatchNorm``) runs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import jax

    from .methods import Fn

API = ("composed: jax.numpy batch statistics (jnp.mean, two-pass jnp.var), r and d clipped "
       "under jax.lax.stop_gradient, y = (z r + d) weight + bias; evaluation is "
       "flax.linen.BatchNorm")
"""What the report shows for this method: Flax has no batch renormalization."""


def _bound(name: str, value: object, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not float(value) >= minimum:
        raise ValueError(f"argument {name!r}: got {value!r}, expected a number >= {minimum:g} "
                         "(+inf: no clipping)")
    return float(value)


def _factor(batch_stat_weight: object, num_batches_tracked: int) -> float:
    """The weight ``f`` of the new batch (``"cumulative"``: ``1/(k+1)``), validated."""
    from .methods import flax_momentum

    flax_momentum(batch_stat_weight, num_batches_tracked)  # validates
    if batch_stat_weight == "cumulative":
        return 1.0 / (num_batches_tracked + 1)
    return float(batch_stat_weight)  # type: ignore[arg-type]


def batch_renorm(dt: Any, *, training: bool, eps: float, channel_axis: int = 1,
                 num_batches_tracked: int = 0, batch_stat_weight: float | str | None = None,
                 running_var_estimator: str | None = None, rmax: float | None = None,
                 dmax: float | None = None) -> Fn:
    """``fn(primals, state) -> (y, stats and state')``; see the module docstring."""
    import jax.numpy as jnp
    from jax import lax

    # methods imports this module for its table; importing it back at call time breaks the cycle
    from .methods import _axis, _reduction_dtype, batch_norm

    if not training:
        return batch_norm(dt, training=False, eps=eps, channel_axis=channel_axis)
    r_max, d_max = _bound("rmax", rmax, 1.0), _bound("dmax", dmax, 0.0)
    if running_var_estimator not in ("biased", "unbiased"):
        raise ValueError(f"argument 'running_var_estimator': got {running_var_estimator!r}, "
                         "expected 'biased' or 'unbiased'")
    count = int(num_batches_tracked)
    f = _factor(batch_stat_weight, count)
    sdt = _reduction_dtype(dt)

    def fn(p: Mapping[str, jax.Array], s: Mapping[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
        x = p["x"]
        c = _axis("channel_axis", channel_axis, x.ndim)
        if "running_mean" not in s or "running_var" not in s:
            raise ValueError("argument 'running_mean': got no running statistics in training, "
                             "expected running_mean and running_var (r and d use them)")
        axes = tuple(i for i in range(x.ndim) if i != c)
        shape = tuple(x.shape[i] if i == c else 1 for i in range(x.ndim))
        xs = x.astype(sdt)
        mean = jnp.mean(xs, axis=axes, keepdims=True)
        var = jnp.var(xs, axis=axes, keepdims=True)
        rm = s["running_mean"].astype(sdt).reshape(shape)
        rv = s["running_var"].astype(sdt).reshape(shape)
        sigma_running = jnp.sqrt(rv + eps)
        r = lax.stop_gradient(jnp.clip(jnp.sqrt(var + eps) / sigma_running, 1.0 / r_max, r_max))
        d = lax.stop_gradient(jnp.clip((mean - rm) / sigma_running, -d_max, d_max))
        y = (xs - mean) * lax.rsqrt(var + eps) * r + d
        if "weight" in p:
            y = y * p["weight"].astype(sdt).reshape(shape)
        if "bias" in p:
            y = y + p["bias"].astype(sdt).reshape(shape)
        batch_mean, batch_var = lax.stop_gradient(mean), lax.stop_gradient(var)
        n = x.size // x.shape[c]
        if running_var_estimator == "unbiased":
            if n < 2:
                raise ValueError(f"argument 'x': got {n} value per channel, expected n >= 2 "
                                 "for running_var_estimator='unbiased'")
            sample = batch_var * (n / (n - 1))
        else:
            sample = batch_var
        flat = {"mean": batch_mean, "var": batch_var,
                "rstd": lax.rsqrt(batch_var + eps), "r": r, "d": d,
                "running_mean": (1.0 - f) * rm + f * batch_mean,
                "running_var": (1.0 - f) * rv + f * sample}
        stats = {k: v.reshape(-1) for k, v in flat.items()}
        stats["num_batches_tracked"] = jnp.asarray(count + 1, dtype=sdt)
        return y.astype(dt), stats

    return fn
