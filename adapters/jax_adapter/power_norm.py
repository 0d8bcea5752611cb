"""power_norm in JAX, composed: neither JAX nor Flax has a power-mean normalization (p != 2).

``p = 2`` is the rms_norm translation (``flax.linen.RMSNorm``, plus the bias it lacks).
Otherwise, over ``axis..ndim-1``, in at least float32 (Flax's reduction rule) and ``y`` cast to
the dtype under test::

    s   = 2^e near max(|x|)                 (lax.stop_gradient: the result does not depend on s)
    v   = x / s                             (exact)
    phi = where(v == 0, 0, where(v == 0, 1, |v|) ** p)
    q   = (mean(phi) + eps s^-p)^(-1/p)     where s >= 1 or eps == 0
        = s (s^p mean(phi) + eps)^(-1/p)    elsewhere
    y   = v q weight + bias

The double ``where`` gives ``phi`` derivatives 0 at ``v = 0`` in every order, the spec's
convention (``jnp.abs(v) ** p`` alone differentiates to ``inf * 0 = NaN`` there for ``p < 1``,
and its second derivative for ``p < 2``); each branch of the outer ``where`` sees a harmless
``s`` where the other one is selected, for the same reason. A zero set with ``eps = 0`` is
``0 * inf``: it is made NaN in every order, as the spec says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jax

    from .methods import Fn

API = ("composed (no power normalization in JAX or Flax): a jax.numpy composition in float32 "
       "or wider, |x/s|^p with a double jnp.where (derivative 0 at x = 0), jnp.mean, "
       "pow(-1/p), s = 2^e near max|x| under lax.stop_gradient; flax.linen.RMSNorm (+ bias) "
       "for p = 2")
"""What the report shows for this method."""


def power_norm(dt: Any, *, p: float, axis: int, eps: float) -> Fn:
    """``fn(primals, state) -> (y, {"mean_power", "rscale"})``; see the module docstring."""
    import jax.numpy as jnp
    from jax import lax

    from .methods import _axis, _reduction_dtype, rms_norm

    pv, e = float(p), float(eps)
    if not 0.0 < pv < float("inf"):
        raise ValueError(f"argument 'p': got {p!r}, expected a finite number > 0")
    if pv == 2.0:
        return rms_norm(dt, axis=axis, eps=e)
    acc = _reduction_dtype(dt)

    def fn(prim: Mapping[str, jax.Array], s_: Mapping[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
        x = prim["x"].astype(acc)
        a = _axis("axis", axis, x.ndim)
        axes = tuple(range(a, x.ndim))
        peak = lax.stop_gradient(jnp.max(jnp.abs(x), axis=axes, keepdims=True))
        _, ex = jnp.frexp(jnp.where(peak > 0, peak, jnp.ones_like(peak)))
        s = lax.stop_gradient(jnp.ldexp(jnp.ones_like(peak), ex))
        v = x / s
        zero = v == 0
        safe = jnp.where(zero, jnp.ones_like(v), jnp.abs(v))
        phi = jnp.where(zero, jnp.zeros_like(v), safe ** pv)
        mean = jnp.mean(phi, axis=axes, keepdims=True)
        one = jnp.ones_like(s)
        wide = (s >= 1) | (e == 0.0)
        s_wide, s_narrow = jnp.where(wide, s, one), jnp.where(wide, one, s)
        scaled_eps = e * s_wide ** (-pv) if e > 0 else jnp.zeros_like(s)
        q_wide = (mean + scaled_eps) ** (-1.0 / pv)
        r_narrow = (s_narrow ** pv * mean + e) ** (-1.0 / pv)
        q = jnp.where(wide, q_wide, r_narrow * s)
        y = v * q
        if e == 0.0:
            y = y * lax.stop_gradient(jnp.where(mean == 0, jnp.nan, 1.0).astype(acc))
        if "weight" in prim:
            y = y * prim["weight"].astype(acc)
        if "bias" in prim:
            y = y + prim["bias"].astype(acc)
        lead = x.shape[:a]
        return y.astype(dt), {"mean_power": (mean * s ** pv).reshape(lead),
                              "rscale": (q / s).reshape(lead)}

    return fn
