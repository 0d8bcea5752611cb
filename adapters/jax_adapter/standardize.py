"""standardize in JAX, composed: neither JAX nor Flax has a fitted feature scaler.

Fit (training) in at least float32 (Flax's reduction rule) with ``axes`` the reduction axes::

    mean = jnp.mean(x, axes);  var = jnp.var(x, axes, ddof=ddof)
    y = (x - mean) / s(var),  s = sqrt(var + eps) (inside) or sqrt(var) + eps (outside)

with ``s = 1`` where ``var == 0`` under ``zero_variance="unit_scale"``; apply (evaluation)
reads the given ``mean`` and ``var`` as constants. jax.vjp and jax.jvp differentiate it.
Constant features are found exactly (``max == min``) and take their value as mean (keeping
``jnp.mean``'s derivative) and a zero variance; ``sqrt`` goes through a double ``jnp.where``,
since its derivative at 0 would turn an unselected branch into ``0 * inf = NaN``.
``keras.layers.Normalization`` is not used: it divides by ``max(sqrt(var), epsilon)``, neither
placement of the spec (see spec/methods/standardize.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jax

    from .methods import Fn

API = ("composed from jax.numpy: jnp.mean and jnp.var(ddof=ddof) over the reduction axes "
       "(fit) or the given mean and var (apply), then (x - mean) / sqrt(var + eps) or "
       "/ (sqrt(var) + eps), scale 1 for constant features under unit_scale, in at least float32")
"""What the report shows for this method: JAX and Flax have no fitted scaler."""


def _axes(axis: object, ndim: int) -> tuple[int, ...]:
    raw: Any = axis
    if isinstance(raw, str):
        raw = [int(part) for part in raw.split(",")]
    elif isinstance(raw, int) and not isinstance(raw, bool):
        raw = [raw]
    axes = sorted({int(a) % ndim for a in raw})
    if not axes or len(axes) != len(raw):
        raise ValueError(f"argument 'axis': got {axis!r}, expected distinct axes")
    return tuple(axes)


def standardize(dt: Any, *, training: bool, axis: object, ddof: int, eps: float,
                eps_placement: str, zero_variance: str) -> Fn:
    """``fn(primals, state) -> (y, statistics)``; see the module docstring."""
    import jax
    import jax.numpy as jnp

    from .methods import _reduction_dtype

    if ddof not in (0, 1) or isinstance(ddof, bool):
        raise ValueError(f"argument 'ddof': got {ddof!r}, expected 0 or 1")
    if eps_placement not in ("inside_sqrt", "outside_sqrt"):
        raise ValueError(f"argument 'eps_placement': got {eps_placement!r}, expected "
                         "'inside_sqrt' or 'outside_sqrt'")
    if zero_variance not in ("ieee", "unit_scale"):
        raise ValueError(f"argument 'zero_variance': got {zero_variance!r}, expected 'ieee' or "
                         "'unit_scale'")
    acc = _reduction_dtype(dt)
    inside, unit = eps_placement == "inside_sqrt", zero_variance == "unit_scale"

    def fn(p: Mapping[str, jax.Array], s: Mapping[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
        x = p["x"].astype(acc)
        axes = _axes(axis, x.ndim)
        keep = tuple(1 if i in axes else n for i, n in enumerate(x.shape))
        kept = tuple(n for i, n in enumerate(x.shape) if i not in axes)
        if training:
            mean = jnp.mean(x, axis=axes, keepdims=True)
            var = jnp.var(x, axis=axes, ddof=int(ddof), keepdims=True)
            hi = jnp.max(x, axis=axes, keepdims=True)
            const = hi == jnp.min(x, axis=axes, keepdims=True)
            mean = jnp.where(const, jax.lax.stop_gradient(hi)
                             + (mean - jax.lax.stop_gradient(mean)), mean)
            var = jnp.where(const, jnp.zeros_like(var), var)
        else:
            if "mean" not in s or "var" not in s:
                raise ValueError("argument 'mean': got no fitted statistics, expected mean and "
                                 "var to apply (training=False)")
            mean = s["mean"].astype(acc).reshape(keep)
            var = s["var"].astype(acc).reshape(keep)
        flat = (var == 0) if unit else jnp.zeros(var.shape, dtype=bool)
        one = jnp.ones_like(var)
        if inside:
            den = jnp.sqrt(jnp.where(flat, one, var + eps))
        else:
            pos = ~(var == 0)   # NaN stays on the sqrt branch and propagates
            den = jnp.where(pos, jnp.sqrt(jnp.where(pos, var, one)), 0.0) + eps
        den = jnp.where(flat, one, den)
        y = (x - mean) / den
        stats = ({"mean": mean.reshape(kept), "var": var.reshape(kept),
                  "rstd": (1.0 / den).reshape(kept)} if training else {})
        return y.astype(dt), stats

    return fn
