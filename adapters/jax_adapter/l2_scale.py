"""fix_norm and scale_norm in JAX, composed: neither JAX nor Flax has these layers.

scale_norm applies one module function per index of ``x``'s module axis, each closing over the
same scalar ``weight`` (in Flax: one ``self.param`` passed to, or shared by, the M submodules),
so JAX's autodiff sums the scalar's gradient over the modules.

The adapter's own lp_norm composition with ``p = 2`` (``x / max(jnp.linalg.norm(x), eps)``)
times the scalar ``weight``, all in at least float32 (Flax's reduction rule), ``y`` cast to the
dtype under test once. In Flax the scalar is one ``self.param('g', ..., ())``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jax

    from .methods import Fn

FIX_NORM_API = ("composed (no FixNorm in JAX or Flax): a jax.numpy composition, weight * the "
                "lp_norm composition with "
                "p = 2, x / max(jnp.linalg.norm(x, axis), eps), in float32 or wider")
"""What the report shows for fix_norm."""


def _check_weight(p: Mapping[str, jax.Array], method: str) -> None:
    for key in ("x", "weight"):
        if key not in p:
            raise ValueError(f"argument {key!r}: got None, expected an array ({method})")
    if p["weight"].shape != ():
        raise ValueError(f"argument 'weight': got shape {p['weight'].shape}, expected shape ()")


def fix_norm(dt: Any, *, axis: int, eps: float) -> Fn:
    """``fn(primals, state) -> (weight * unit, {"norm"})``; see the module docstring."""
    from .methods import _reduction_dtype, lp_norm

    # the product and the scalar's gradient (a sum over every element) in float32 or wider,
    # y rounded once: in bfloat16 a sum of 1024 terms g u loses ~30 units of roundoff
    acc = _reduction_dtype(dt)
    unit = lp_norm(acc, p=2.0, axis=axis, eps=eps)

    def fn(p: Mapping[str, jax.Array], s: Mapping[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
        _check_weight(p, "fix_norm")
        y, stats = unit({"x": p["x"].astype(acc)}, s)
        return (p["weight"].astype(acc) * y).astype(dt), stats

    return fn


SCALE_NORM_API = ("composed (no ScaleNorm in JAX or Flax): a jax.numpy composition, M module "
                  "calls sharing one scalar g, each g * x / max(jnp.linalg.norm(x, axis=-1), eps) "
                  "(the lp_norm composition with p = 2), in float32 or wider")
"""What the report shows for scale_norm."""


def scale_norm(dt: Any, *, eps: float) -> Fn:
    """``fn(primals, state) -> (stacked module outputs, {"norm"})``; see the module docstring."""
    import jax.numpy as jnp

    from .methods import _reduction_dtype, lp_norm

    acc = _reduction_dtype(dt)
    unit = lp_norm(acc, p=2.0, axis=-1, eps=eps)

    def fn(p: Mapping[str, jax.Array], s: Mapping[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
        _check_weight(p, "scale_norm")
        x, g = p["x"].astype(acc), p["weight"].astype(acc)
        if x.ndim < 2:
            raise ValueError(f"argument 'x': got shape {x.shape}, expected (M, ..., D)")

        def module(xm: jax.Array) -> tuple[jax.Array, jax.Array]:
            y, stats = unit({"x": xm}, s)
            return g * y, stats["norm"]

        outs = [module(x[m]) for m in range(x.shape[0])]
        y = jnp.stack([o[0] for o in outs])
        return y.astype(dt), {"norm": jnp.stack([o[1] for o in outs])}

    return fn


UNIT_NORM_API = ("composed (no L2 normalization op in JAX or Flax): the jax.numpy lp_norm "
                 "composition with p = 2, x / max(jnp.linalg.norm(x, axis), eps), in float32 or "
                 "wider")
"""What the report shows for unit_norm."""


def unit_norm(dt: Any, *, axis: int, eps: float) -> Fn:
    """The adapter's lp_norm composition with ``p = 2``."""
    from .methods import lp_norm

    return lp_norm(dt, p=2.0, axis=axis, eps=eps)


ROWS: dict[str, tuple[str, str, tuple[str, ...], Any]] = {
    "unit_norm": ("composed", UNIT_NORM_API, ("x",), unit_norm),
    "fix_norm": ("composed", FIX_NORM_API, ("x", "weight"), fix_norm),
    "scale_norm": ("composed", SCALE_NORM_API, ("x", "weight"), scale_norm),
}
"""name -> (kind, api, primals, builder): the rows methods.py registers."""
