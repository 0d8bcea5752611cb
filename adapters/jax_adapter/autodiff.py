"""Generic derivatives of a translation with jax.vjp and jax.jvp, jitted and cached.

Only ``y`` is differentiated; the statistics and the running state ``fn`` returns beside it are
outputs, and the state inputs are closed over as constants. The second order is
forward-over-reverse: :func:`jax.jvp` of the function ``primals -> vjp(primals)(cotangent)``,
with the cotangent held fixed, which is the Hessian-vector product of ``sum(cotangent * y)``.

JAX compiles once per (function, shapes, dtypes, device); :func:`compiled` keeps one jitted
function per (check, method, dtype, hyperparameters). :class:`Executables` turns a jitted function
and concrete arguments into the executable ``jax.jit`` would run (``lower(...).compile()``, the
same compiler with the same default options), kept in memory and in the on-disk store of
:mod:`._cache`.
"""

from __future__ import annotations

import contextlib
import functools
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _cache
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


@dataclass(frozen=True)
class Job:
    """One program to run: a check of a method in a dtype with hyperparameters, on ``args``."""

    check: str
    method: str
    dtype: str
    hyper: HyperKey
    args: tuple[Any, ...]


def _leaf_key(leaf: Any) -> tuple[Any, ...]:
    devices = tuple(sorted((d.platform, d.id, d.device_kind, d.client.platform_version)
                           for d in leaf.devices()))
    return (tuple(leaf.shape), str(leaf.dtype), bool(getattr(leaf, "weak_type", False)),
            bool(getattr(leaf, "committed", True)), devices)


def job_key(job: Job) -> tuple[Any, ...]:
    """Everything besides :func:`._cache.fingerprint` that decides ``job``'s executable: the
    program (check, method, dtype, hyperparameters), the arguments' tree, shapes, dtypes and
    devices, and JAX's configuration (:func:`._cache.context`); never the argument values."""
    import jax

    leaves, tree = jax.tree.flatten(job.args)
    return (job.check, job.method, job.dtype, job.hyper, str(tree),
            tuple(_leaf_key(x) for x in leaves), _cache.context())


class Executables:
    """Executables by :func:`job_key`: from memory, from the on-disk store, or compiled.

    Compiling runs in the calling thread, one program at a time: compiling the other checks of
    a case ahead on worker threads was tried and gained nothing measurable on two shared cores.
    """

    def __init__(self, keep: int = 256) -> None:
        self._done: OrderedDict[tuple[Any, ...], tuple[Callable[..., Any], bool]] = OrderedDict()
        self._keep = keep

    def get(self, job: Job) -> tuple[Callable[..., Any], bool]:
        """The executable of ``job`` and whether it was loaded from the store."""
        key = job_key(job)
        found = self._done.get(key)
        if found is not None:
            self._done.move_to_end(key)
            return found
        entry = _build(job, key, _cache.configure().executable_dir)
        self._remember(key, entry)
        return entry

    def recompile(self, job: Job) -> Callable[..., Any]:
        """Compile ``job`` afresh and replace its stored executable (one that failed to run)."""
        key = job_key(job)
        entry = _build(job, key, _cache.configure().executable_dir, load=False)
        self._remember(key, entry)
        return entry[0]

    def _remember(self, key: tuple[Any, ...], entry: tuple[Callable[..., Any], bool]) -> None:
        self._done[key] = entry
        while len(self._done) > self._keep:
            self._done.popitem(last=False)


def _build(job: Job, key: tuple[Any, ...], store: str, *, load: bool = True
           ) -> tuple[Callable[..., Any], bool]:
    """``job``'s executable from the store, else lowered and compiled (and stored)."""
    import jax
    from jax.experimental import serialize_executable

    path = _cache.key_path(store, (_cache.fingerprint(), key)) if store else None
    entry = _cache.read(path) if path is not None and load else None
    if entry is not None:
        devices = sorted({d for x in jax.tree.leaves(job.args) for d in x.devices()},
                         key=lambda d: d.id)
        try:
            loaded: Callable[..., Any] = serialize_executable.deserialize_and_load(
                *entry, backend=devices[0].client, execution_devices=devices)
            return loaded, True
        except Exception:  # an entry the runtime rejects is a miss
            pass
    fn: Any = compiled(job.check, job.method, job.dtype, job.hyper)  # a jax.jit wrapper
    lowered: Any = fn.lower(*job.args)
    executable: Any = lowered.compile()  # a jax.stages.Compiled
    # A program with a custom call (LAPACK's SVD in spectral_norm's exact mode) is never stored:
    # XLA:CPU's deserialized executable segfaults when it runs one in another process (jaxlib
    # 0.10.2; tests/test_jax_cache.py shows it), and a crash would cost the whole worker.
    if path is not None and "custom_call" not in lowered.as_text():
        with contextlib.suppress(Exception):  # e.g. a backend that cannot serialize: no store
            _cache.write(path, serialize_executable.serialize(executable))
    return executable, False


EXECUTABLES = Executables()
"""The process's executables (the adapter is one per worker process)."""
