"""Generic derivatives of a translation with jax.vjp and jax.jvp, jitted and cached.

Only ``y`` is differentiated; the statistics and the running state ``fn`` returns beside it are
outputs, and the state inputs are closed over as constants. The second order is
forward-over-reverse: :func:`jax.jvp` of the function ``primals -> vjp(primals)(cotangent)``,
with the cotangent held fixed, which is the Hessian-vector product of ``sum(cotangent * y)``.

JAX compiles once per (function, shapes, dtypes, device); :func:`compiled` keeps one jitted
function per (check, method, dtype, hyperparameters). :class:`Executables` turns a jitted function
and concrete arguments into the executable ``jax.jit`` would run (``lower(...).compile()``, the
same compiler with the same default options), kept in memory, in the on-disk store of
:mod:`._cache`, and compiled on worker threads ahead of the call that needs it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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


def _workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


class Executables:
    """Executables by :func:`job_key`: from memory, from the on-disk store, or compiled.

    XLA compiles with the GIL released, so the checks of a case the caller is expected to ask
    for next (:meth:`get`'s ``ahead``) compile on worker threads, one per core, while the
    current one does; on two cores that roughly halves a cold run. A prefetched job that is
    never asked for only costs its compile time.
    """

    def __init__(self, keep: int = 256) -> None:
        self._lock = threading.Lock()
        self._jobs: OrderedDict[tuple[Any, ...], Future[Any]] = OrderedDict()
        self._keep = keep
        self._pool: ThreadPoolExecutor | None = None

    def get(self, job: Job, ahead: Sequence[Job] = ()) -> Callable[..., Any]:
        """The executable of ``job``; ``ahead`` are started too, but not waited for."""
        state = _cache.configure()
        future = self._submit(job, state)
        for other in ahead:
            self._submit(other, state)
        executable: Callable[..., Any] = future.result()
        return executable

    def _submit(self, job: Job, state: _cache.CacheState) -> Future[Any]:
        key = job_key(job)
        with self._lock:
            found = self._jobs.get(key)
            if found is not None:
                self._jobs.move_to_end(key)
                return found
            if self._pool is None:
                self._pool = ThreadPoolExecutor(_workers(), thread_name_prefix="normspec-jax")
            future = self._pool.submit(_build, job, key, state.executable_dir)
            self._jobs[key] = future
            while len(self._jobs) > self._keep:
                self._jobs.popitem(last=False)
        future.add_done_callback(lambda f: self._forget_failure(key, f))
        return future

    def _forget_failure(self, key: tuple[Any, ...], future: Future[Any]) -> None:
        # The caller sees the exception; a later call tries again rather than replaying it.
        if future.exception() is not None:
            with self._lock:
                if self._jobs.get(key) is future:
                    del self._jobs[key]


def _build(job: Job, key: tuple[Any, ...], store: str) -> Callable[..., Any]:
    """Load ``job``'s executable from the store, else lower and compile it (and store it)."""
    import jax
    from jax.experimental import serialize_executable

    path = _cache.key_path(store, (_cache.fingerprint(), key)) if store else None
    entry = _cache.read(path) if path is not None else None
    if entry is not None:
        devices = sorted({d for x in jax.tree.leaves(job.args) for d in x.devices()},
                         key=lambda d: d.id)
        try:
            loaded: Callable[..., Any] = serialize_executable.deserialize_and_load(
                *entry, backend=devices[0].client, execution_devices=devices)
            return loaded
        except Exception:  # an entry the runtime rejects is a miss
            pass
    fn: Any = compiled(job.check, job.method, job.dtype, job.hyper)  # a jax.jit wrapper
    executable: Any = fn.lower(*job.args).compile()
    if path is not None:
        with contextlib.suppress(Exception):  # e.g. a backend that cannot serialize: no store
            _cache.write(path, serialize_executable.serialize(executable))
    result: Callable[..., Any] = executable
    return result


EXECUTABLES = Executables()
"""The process's executables (the adapter is one per worker process)."""
