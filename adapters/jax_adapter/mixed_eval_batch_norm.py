"""mixed_eval_batch_norm in JAX, composed: neither JAX nor Flax has alpha-mixed evaluation.

Flax's ``BatchNorm(use_running_average=True)`` reads ``batch_stats`` as constants, and the batch
part must carry the gradient, so the method is written in jax.numpy, in Flax's statistics
dtype (at least float32; ``y`` is cast to the dtype under test), with the channel axis
``c`` and ``axes`` every other one::

    mean_b, var_b = jnp.mean(x, axes), jnp.var(x, axes)        (two passes, biased)
    mean = alpha mean_b + (1 - alpha) running_mean
    var  = alpha var_b + (1 - alpha) running_var + alpha (1 - alpha) (mean_b - running_mean)^2
    y    = (x - mean) / jnp.sqrt(var + eps) * weight + bias

jax.vjp and jax.jvp differentiate it; the running statistics are state, constants for both.
The division by ``sqrt`` (not a product with ``lax.rsqrt``) keeps every derivative factor in
float32's range at the catalog's huge scale (variance near 1e30), where ``rsqrt``'s derivative
``-v^(-3/2)/2`` underflows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import jax

    from .methods import Fn

API = ("composed: jax.numpy batch statistics (jnp.mean, two-pass jnp.var) mixed with the "
       "running ones (alpha weights the batch; the variance of the mixture), then (x - mean) / "
       "jnp.sqrt(var + eps) * weight + bias in at least float32")
"""What the report shows for this method: Flax has no mixed-statistics evaluation."""


def mixed_eval_batch_norm(dt: Any, *, alpha: float, eps: float, channel_axis: int = 1) -> Fn:
    """``fn(primals, state) -> (y, statistics)``; see the module docstring."""
    import jax.numpy as jnp

    # methods imports this module for its table; importing it back at call time breaks the cycle
    from .methods import _axis, _reduction_dtype

    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)) \
            or not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"argument 'alpha': got {alpha!r}, expected a number in [0, 1]")
    a = float(alpha)
    acc = _reduction_dtype(dt)

    def fn(p: Mapping[str, jax.Array], s: Mapping[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
        if "running_mean" not in s or "running_var" not in s:
            raise ValueError("argument 'running_mean': got no running statistics, expected "
                             "running_mean and running_var")
        x = p["x"].astype(acc)
        c = _axis("channel_axis", channel_axis, x.ndim)
        axes = tuple(i for i in range(x.ndim) if i != c)
        view = tuple(x.shape[c] if i == c else 1 for i in range(x.ndim))
        mean_b, var_b = jnp.mean(x, axis=axes), jnp.var(x, axis=axes)
        rm, rv = s["running_mean"].astype(acc), s["running_var"].astype(acc)
        gap = mean_b - rm
        mean = a * mean_b + (1.0 - a) * rm
        var = a * var_b + (1.0 - a) * rv + (a * (1.0 - a)) * (gap * gap)
        std = jnp.sqrt(var + eps)
        y = (x - mean.reshape(view)) / std.reshape(view)
        if "weight" in p:
            y = y * p["weight"].astype(acc).reshape(view)
        if "bias" in p:
            y = y + p["bias"].astype(acc).reshape(view)
        return y.astype(dt), {"mean": mean, "var": var, "rstd": 1.0 / std,
                              "batch_mean": mean_b, "batch_var": var_b}

    return fn
