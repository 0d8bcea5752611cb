"""fix_norm in JAX, composed: neither JAX nor Flax has a FixNorm layer.

The adapter's own lp_norm composition with ``p = 2`` (``x / max(jnp.linalg.norm(x), eps)``,
statistics in at least float32, the result cast to the dtype under test), times the scalar
``weight`` in the dtype under test. In Flax the scalar is one ``self.param('g', ..., ())``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jax

    from .methods import Fn

FIX_NORM_API = ("composed (no FixNorm in JAX or Flax): weight * the lp_norm composition with "
                "p = 2, x / max(jnp.linalg.norm(x, axis), eps) in float32 or wider")
"""What the report shows for fix_norm."""


def _check_weight(p: Mapping[str, jax.Array], method: str) -> None:
    for key in ("x", "weight"):
        if key not in p:
            raise ValueError(f"argument {key!r}: got None, expected an array ({method})")
    if p["weight"].shape != ():
        raise ValueError(f"argument 'weight': got shape {p['weight'].shape}, expected shape ()")


def fix_norm(dt: Any, *, axis: int, eps: float) -> Fn:
    """``fn(primals, state) -> (weight * unit, {"norm"})``; see the module docstring."""
    from .methods import lp_norm

    unit = lp_norm(dt, p=2.0, axis=axis, eps=eps)

    def fn(p: Mapping[str, jax.Array], s: Mapping[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
        _check_weight(p, "fix_norm")
        y, stats = unit({"x": p["x"]}, s)
        return p["weight"].astype(dt) * y, stats

    return fn


ROWS: dict[str, tuple[str, str, tuple[str, ...], Any]] = {
    "fix_norm": ("composed", FIX_NORM_API, ("x", "weight"), fix_norm),
}
"""name -> (kind, api, primals, builder): the rows methods.py registers."""
