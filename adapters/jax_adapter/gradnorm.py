"""gradnorm in JAX, composed from the paper: neither JAX nor Flax/Optax has GradNorm.

Written from Chen et al. (2018), Algorithm 1, on the inputs the spec gives (the norms
``g_i = ||grad_W L_i||`` of the unweighted task gradients and the losses, stacked in ``x``): ``G =
w g``, ``r = (L / L0) / mean(L / L0)``, the target ``mean(G) r**alpha`` under
``jax.lax.stop_gradient`` (the paper holds it constant), ``L_grad = sum |G - target|``, its
gradient with respect to the weights from ``jax.grad`` (jnp.abs's derivative is ``sign``, 0 at
0: the spec's subgradient), one plain gradient-descent step ``w - lr grad`` and the
renormalization ``T v / sum v``. In at least float32 (Flax's reduction rule); the derivatives
of ``y`` are JAX's autodiff through that composition.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jax

    from .methods import Fn

API = ("composed from the paper (Chen et al. 2018, Algorithm 1) in jax.numpy: G = w g, loss "
       "ratios over their mean, the target mean(G) r**alpha under stop_gradient, "
       "L_grad = sum |G - target|, its gradient in w by jax.grad, one SGD step, renormalized "
       "to sum T")
"""What the report shows for this method."""


def gradnorm(dt: Any, *, training: bool, alpha: float, lr: float) -> Fn:
    """``fn(primals, state) -> (y, statistics)``; see the module docstring."""
    import jax
    import jax.numpy as jnp

    from .methods import _reduction_dtype

    acc = _reduction_dtype(dt)
    a, step = float(alpha), float(lr)

    def fn(p: Mapping[str, jax.Array], s: Mapping[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
        if "weights" not in s:
            raise ValueError("argument 'weights': got no task weights, expected the state "
                             "'weights' (gradnorm)")
        x = p["x"].astype(acc)
        init = p["initial_losses"].astype(acc)
        w = jax.lax.stop_gradient(s["weights"].astype(acc))
        g, losses = x[0], x[1]
        ratio = losses / init
        rate = ratio / jnp.mean(ratio)

        def grad_norm_loss(weights: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
            big = weights * g
            target = jax.lax.stop_gradient(jnp.mean(big) * rate ** a)
            return jnp.sum(jnp.abs(big - target)), (big, target)

        grad, (big, target) = jax.grad(grad_norm_loss, has_aux=True)(w)
        stats = {"grad_norm_loss": jnp.sum(jnp.abs(big - target)), "weighted_norms": big,
                 "targets": target, "weight_grad": grad}
        if not training:
            return w.astype(dt), stats
        v = w - step * grad
        y = g.size * v / jnp.sum(v)
        return y.astype(dt), {**stats, "weights": y}

    return fn
