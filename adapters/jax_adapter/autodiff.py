"""Generic derivatives of a translation with jax.vjp and jax.jvp, jitted and cached.

Only ``y`` is differentiated; the statistics and the running state ``fn`` returns beside it are
outputs, and the state inputs are closed over as constants. The second order is
forward-over-reverse: :func:`jax.jvp` of the function ``primals -> vjp(primals)(cotangent)``,
with the cotangent held fixed, which is the Hessian-vector product of ``sum(cotangent * y)``.

JAX compiles once per (function, shapes, dtypes, device); :func:`compiled` keeps one jitted
function per (check, method, dtype, hyperparameters), so a vector case reuses its compilation
across calls and the jit cache handles the shapes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._runtime import NUMPY_DTYPES
from .methods import TRANSLATIONS, Fn

if TYPE_CHECKING:
    import jax

Tree = Mapping[str, "jax.Array"]
HyperKey = tuple[tuple[str, Any], ...]


def hyper_key(hyper: Mapping[str, Any]) -> HyperKey:
    """A hashable, order-independent key for hyperparameters (lists become tuples)."""
    def freeze(value: Any) -> Any:
        return tuple(freeze(v) for v in value) if isinstance(value, (list, tuple)) else value
    return tuple(sorted((k, freeze(v)) for k, v in hyper.items()))


def _y_of(fn: Fn, state: Tree) -> Callable[[Tree], jax.Array]:
    return lambda primals: fn(primals, state)[0]


def _forward(fn: Fn) -> Callable[..., Any]:
    return fn


def _vjp(fn: Fn) -> Callable[..., Any]:
    import jax

    def run(primals: Tree, state: Tree, cotangent: jax.Array) -> Any:
        _, pullback = jax.vjp(_y_of(fn, state), primals)
        return pullback(cotangent)[0]

    return run


def _jvp(fn: Fn) -> Callable[..., Any]:
    import jax

    def run(primals: Tree, state: Tree, tangent: Tree) -> Any:
        return jax.jvp(_y_of(fn, state), (primals,), (tangent,))[1]

    return run


def _second_order(fn: Fn) -> Callable[..., Any]:
    import jax

    def run(primals: Tree, state: Tree, cotangent: jax.Array, tangent: Tree) -> Any:
        def grads(p: Tree) -> Any:
            return jax.vjp(_y_of(fn, state), p)[1](cotangent)[0]
        return jax.jvp(grads, (primals,), (tangent,))[1]

    return run


_WRAPPERS: Mapping[str, Callable[[Fn], Callable[..., Any]]] = {
    "forward": _forward, "vjp": _vjp, "jvp": _jvp, "second_order": _second_order}


@functools.lru_cache(maxsize=512)
def compiled(check: str, method: str, dtype: str, hyper: HyperKey) -> Callable[..., Any]:
    """The jitted ``check`` of ``method`` in ``dtype`` (a name from DTYPES) with ``hyper``.

    Signatures: forward ``(primals, state) -> (y, stats)``; vjp ``(primals, state, g) ->
    grads``; jvp ``(primals, state, t) -> dy``; second_order ``(primals, state, g, t) -> dgrads``.
    """
    import jax

    fn = TRANSLATIONS[method].build(NUMPY_DTYPES[dtype], **dict(hyper))
    jitted: Callable[..., Any] = jax.jit(_WRAPPERS[check](fn))
    return jitted
