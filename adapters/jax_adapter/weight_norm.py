"""weight_norm in JAX: ``flax.linen.WeightNorm``, natively.

Flax wraps a layer and normalizes the variables its ``variable_filter`` selects (default
``{"kernel"}``). The adapter wraps a one-parameter layer whose ``__call__`` returns its
``kernel`` (the direction ``x``), so the wrapper's output is the reparametrized weight itself::

    w = x * lax.rsqrt(sum(x * x over the non-feature axes) + epsilon) * scale

with ``feature_axes = kept_axis`` (an int: Python's axis rules, -1 is the last axis; Flax's
default is -1, the output axis of a Dense kernel ``(in, out)``) or ``None`` for
``kept_axis="none"`` (one norm over the whole tensor), ``epsilon = eps`` (Flax's default
1e-12, inside the root, the spec's rule) and ``scale = g`` reshaped to Flax's compact shape
(``(C,)`` for a kept axis of size C, ``()`` for the whole tensor). ``dtype`` and
``param_dtype`` are the dtype under test. Flax computes the squares and their sum in the
kernel's own dtype (no float32 upcast for 16-bit kernels): the framework's numerics, kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jax

    from .methods import Fn

API = ("flax.linen.WeightNorm around a layer returning its kernel (the direction x): "
       "feature_axes = kept_axis or None for 'none', epsilon = eps, scale = g; squares summed "
       "in the kernel's dtype")
"""What the report shows for this method."""


def weight_norm(dt: Any, *, kept_axis: int | str, eps: float) -> Fn:
    """``fn(primals, state) -> (w, {})``; see the module docstring. Flax exposes no norm."""
    from flax import linen as nn

    from .methods import _axis

    def fn(p: Mapping[str, jax.Array], s: Mapping[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
        for key in ("x", "g"):
            if key not in p:
                raise ValueError(f"argument {key!r}: got None, expected an array")
        x, g = p["x"], p["g"]
        if isinstance(kept_axis, str):
            if kept_axis != "none":
                raise ValueError(f"argument 'kept_axis': got {kept_axis!r}, expected an "
                                 "integer axis or 'none'")
            features: int | None = None
            scale = g.reshape(())
        else:
            features = _axis("kept_axis", kept_axis, x.ndim)
            scale = g.reshape(x.shape[features])

        class _Kernel(nn.Module):
            @nn.compact
            def __call__(self) -> jax.Array:
                out: jax.Array = self.param("kernel", nn.initializers.zeros, x.shape, dt)
                return out

        layer = nn.WeightNorm(_Kernel(), epsilon=eps, feature_axes=features, dtype=dt,
                              param_dtype=dt)
        w: jax.Array = layer.apply({"params": {"layer_instance": {"kernel": x},
                                               "layer_instance/kernel/scale": scale}})
        return w.astype(dt), {}

    return fn
