"""The ``jax`` adapter: Flax linen layers where Flax has the method, jax.numpy otherwise.

Inputs arrive as float64 NumPy arrays already rounded to the dtype under test; they are
converted exactly to that dtype on the requested JAX device, the translation of
:mod:`.methods` runs there (jitted), and the results come back as float64 NumPy arrays.
Derivatives are generic (:mod:`.autodiff`): jax.vjp, jax.jvp, and jax.jvp of the VJP for the
second order. ``jax_enable_x64`` is switched on at the first call that needs JAX (float64
would otherwise silently become float32); see :mod:`._runtime`.

batch_norm's running statistics are held the way Flax holds ``batch_stats``: in at least
float32 (``force_float32_reductions``), i.e. float32 for float16/bfloat16/float32 and float64
for float64. The updated ``running_mean``/``running_var`` returned are Flax's own
``batch_stats['mean']``/``['var']`` after the training step (composed only for the unbiased
estimator, see :meth:`JaxAdapter.case_support`). Flax exposes no batch mean, variance or rstd,
so those keys are left out; it keeps no step counter either, so ``num_batches_tracked`` is not
returned (the runner checks a counter only where an adapter returns one).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

import numpy as np

from ..protocol import Array, Support
from . import _cache, _runtime
from .autodiff import EXECUTABLES, HyperKey, Job, hyper_key
from .bench import JaxBench
from .distributed import DISTRIBUTED
from .distributed import METHODS as _DISTRIBUTED
from .methods import TRANSLATIONS, Translation

if TYPE_CHECKING:
    import jax

_FLAX_LAYERS = ("BatchNorm", "LayerNorm", "RMSNorm", "GroupNorm", "InstanceNorm")


@dataclass(frozen=True)
class _Call:
    """One validated call: tensors on the device and the cache key of its compilation."""

    method: str
    dtype: str
    hyper: HyperKey
    primals: dict[str, jax.Array]
    state: dict[str, jax.Array]
    np_dtype: np.dtype[Any]
    device: jax.Device


def _translation(method: str) -> Translation:
    if method not in TRANSLATIONS:
        raise ValueError(f"argument 'method': got {method!r}, expected one of "
                         f"{sorted(TRANSLATIONS)}")
    return TRANSLATIONS[method]


def _prepare(method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
             dtype: str, device: str) -> _Call:
    _runtime.enable_x64()
    _cache.configure()
    t = _translation(method)
    dt = _runtime.check_dtype(dtype)
    dev = _runtime.jax_device(device)
    known = (*t.primals, *t.state, *t.constants, "num_batches_tracked")
    unknown = sorted(set(inputs) - set(known))
    if unknown:
        raise TypeError(f"argument 'inputs': got unexpected names {unknown} for {method}, "
                        f"expected some of {list(known)}")
    if inputs.get("x") is None:
        raise ValueError("argument 'inputs': got no 'x', expected the input array under 'x'")
    hyper = dict(hyper)
    counter = inputs.get("num_batches_tracked")
    if counter is not None:  # state in the vectors, a keyword of the reference: same thing
        hyper["num_batches_tracked"] = int(np.asarray(counter))
    # Flax keeps batch_stats in at least float32 (force_float32_reductions).
    state_dt = np.dtype(np.float64) if dtype == "float64" else np.dtype(np.float32)
    primals = {k: _runtime.to_jax(k, inputs[k], dt, dev)
               for k in t.primals if inputs.get(k) is not None}
    state = {k: _runtime.to_jax(k, inputs[k], state_dt, dev)
             for k in t.state if inputs.get(k) is not None}
    if t.constants:  # integer and boolean inputs (a mask) travel with the state, own dtype
        import jax

        state.update({k: jax.device_put(np.asarray(inputs[k]), dev)
                      for k in t.constants if inputs.get(k) is not None})
    return _Call(method, dtype, hyper_key(hyper), primals, state, dt, dev)


def _tangent(call: _Call, tangent: Mapping[str, Array]) -> dict[str, jax.Array]:
    extra = sorted(set(tangent) - set(call.primals))
    if extra:
        raise ValueError(f"argument 'tangent': got directions for {extra}, expected only inputs "
                         f"that are present: {sorted(call.primals)}")
    return {k: _runtime.to_jax(f"tangent[{k!r}]",
                               tangent[k] if k in tangent else np.zeros(v.shape), call.np_dtype,
                               call.device)
            for k, v in call.primals.items()}


def _grads(tree: Mapping[str, jax.Array]) -> dict[str, Array]:
    return {k: _runtime.to_numpy(v) for k, v in tree.items()}


_ARGS = {"forward": ("primals", "state"), "vjp": ("primals", "state", "cotangent"),
         "jvp": ("primals", "state", "tangent"),
         "second_order": ("primals", "state", "cotangent", "tangent")}
"""The arguments of each check's jitted function (see :func:`.autodiff.compiled`)."""


def _job(call: _Call, check: str, given: Mapping[str, Any]) -> Job:
    """``check``'s job on ``call`` with the cotangent/tangent in ``given``."""
    named = {"primals": call.primals, "state": call.state, **given}
    return Job(check, call.method, call.dtype, call.hyper, tuple(named[a] for a in _ARGS[check]))


_NUMERIC_CONFIG = ("jax_default_matmul_precision", "jax_disable_most_optimizations",
                   "jax_exec_time_optimization_effort", "jax_optimization_level",
                   "jax_numpy_dtype_promotion", "jax_enable_x64")
"""JAX options that change what is computed; reported as they are when the report is made."""


def _settings() -> dict[str, str]:
    """Settings that could change numerics or say how programs were built, for every report.

    Read without applying anything (``versions()`` may come before the first call): the XLA
    and JAX environment, the JAX options in :data:`_NUMERIC_CONFIG`, and the caches as
    :func:`._cache.settings` resolves them. Compile options are XLA's defaults: the adapter
    sets none (an optimization level 0 or ``jax_disable_most_optimizations`` was measured to
    change results, see tests/tools/jax_bitwise.py).
    """
    import jax

    values: Mapping[str, Any] = getattr(jax.config, "values", {})
    out = {"XLA_FLAGS": os.environ.get("XLA_FLAGS", "(unset)"),
           "xla.compile_options": "XLA defaults (none set by the adapter)"}
    for name in sorted(os.environ):
        if name.startswith("JAX_") and name != "JAX_COMPILATION_CACHE_DIR":
            out[f"env.{name}"] = os.environ[name]
    for option in _NUMERIC_CONFIG:
        if option in values and option != "jax_enable_x64":
            out[option] = str(values[option])
    chosen = _cache.settings()
    if chosen.root is None:
        out["cache"] = chosen.origin
    elif _cache.configure.cache_info().currsize and _cache.configure().note:
        out["cache"] = f"{chosen.root}: {_cache.configure().note}"
    else:
        out["cache"] = (f"{chosen.root} ({chosen.origin}; switch off with {_cache.ENV_VAR}=0):"
                        f" serialized executables in executables/{_cache.fingerprint()}/")
    out["jax_compilation_cache_dir"] = str(values.get("jax_compilation_cache_dir") or "(unset)")
    return out


class JaxAdapter(JaxBench):
    """JAX/Flax under test on ``cpu`` and, where JAX has them, ``gpu`` and ``cuda``.

    Support and the API used per method are in :data:`.methods.TRANSLATIONS`; every dtype in
    :data:`normspec.adapters.DTYPES` is supported on every available device.
    """

    name = "jax"

    def __init__(self) -> None:
        self._timing: dict[str, float] = {}

    def call_timing(self) -> dict[str, float]:
        """The last call's split: ``compile_s`` waiting for its executable (tracing and
        compiling, or loading it from the cache), ``run_s`` running it to completion."""
        return dict(self._timing)

    def _run(self, check: str, call: _Call, **given: Any) -> Any:
        """Run ``check``'s executable on ``call``, recording the compile/run split."""
        import jax

        self._timing = {}
        start = time.perf_counter()
        job = _job(call, check, given)
        executable, stored = EXECUTABLES.get(job)
        ready = time.perf_counter()
        wait: Any = jax.block_until_ready  # untyped in jax
        try:
            out = wait(executable(*job.args))
        except jax.errors.JaxRuntimeError:
            if not stored:
                raise
            # A stored executable the runtime cannot run (see _cache) costs a compile, never
            # a result: the fresh one is what jax.jit would run.
            executable = EXECUTABLES.recompile(job)
            ready = time.perf_counter()
            out = wait(executable(*job.args))
        self._timing = {"compile_s": ready - start, "run_s": time.perf_counter() - ready}
        return out

    def versions(self) -> dict[str, str]:
        """Versions of jax, jaxlib, flax (and any CUDA plugin) plus the Flax defaults in use."""
        import flax.linen as nn

        out: dict[str, str] = {}
        for dist in ("jax", "jaxlib", "flax", "ml_dtypes", "numpy"):
            try:
                out[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                out[dist] = "not installed"
        for found in metadata.distributions():
            dist_name = found.metadata["Name"] or ""
            if dist_name.replace("_", "-").startswith("jax-cuda"):
                out[dist_name] = found.version
        for option in ("use_fast_variance", "force_float32_reductions"):
            defaults = {layer: next(f.default for f in dataclasses.fields(getattr(nn, layer))
                                    if f.name == option) for layer in _FLAX_LAYERS}
            values = set(map(str, defaults.values()))
            out[f"flax.{option}"] = (values.pop() if len(values) == 1 else
                                     ", ".join(f"{k}={v}" for k, v in defaults.items()))
        out["jax_enable_x64"] = "True (set by this adapter on first use)"
        out.update(_settings())
        return out

    def devices(self) -> tuple[str, ...]:
        """``("cpu",)``, plus ``"gpu"`` (any JAX GPU backend) and ``"cuda"`` (JAX's NVIDIA
        backend; the same device as ``gpu`` there) when JAX has them."""
        return _runtime.platforms()

    def support(self, method: str, dtype: str, device: str) -> Support:
        """Every known method in every dtype on every available device; never raises."""
        if method in _DISTRIBUTED:  # several devices in a child process: see distributed.py
            return DISTRIBUTED.support(method, dtype, device)
        if method not in TRANSLATIONS:
            return Support(False, reason=f"unknown method {method!r}")
        if dtype not in _runtime.NUMPY_DTYPES:
            return Support(False, reason=f"unknown dtype {dtype!r}")
        if device not in _runtime.DEVICE_NAMES:
            return Support(False, reason=f"unknown device {device!r}; the jax adapter runs on "
                                         f"{list(_runtime.DEVICE_NAMES)} where JAX has them")
        try:
            usable = _runtime.platforms()
        except Exception as exc:  # a broken JAX install is a reason, not a crash of `list`
            return Support(False, reason=f"JAX failed to start: {exc}")
        if device not in usable:
            return Support(False, reason=f"JAX has no {device!r} backend here (usable: "
                                         f"{list(usable)})")
        t = TRANSLATIONS[method]
        return Support(True, kind=t.kind, reason=t.api)

    def case_support(self, method: str, inputs: Mapping[str, Array | None],
                     hyper: Mapping[str, Any], *, dtype: str, device: str) -> Support:
        """Like :meth:`support`, refined for one case's inputs and hyperparameters.

        batch_norm training with tracked statistics and ``running_var_estimator="unbiased"``
        is ``composed``: Flax stores only the biased running variance, so the adapter builds
        that update from jax.numpy (``y`` still comes from Flax).
        """
        if method in _DISTRIBUTED:
            return DISTRIBUTED.case_support(method, inputs, hyper, dtype=dtype, device=device)
        base = self.support(method, dtype, device)
        if not base.supported:
            return base
        t = TRANSLATIONS[method]
        present = frozenset(k for k in (*t.state, *t.primals) if inputs.get(k) is not None)
        why = t.composed_when(hyper, present)
        return base if why is None else Support(True, kind="composed", reason=why)

    def forward(self, method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
                *, dtype: str, device: str) -> dict[str, Array]:
        """``{"y": ...}`` plus the statistics the translation exposes (see the module docs)."""
        if method in _DISTRIBUTED:
            return self._distributed("forward", method, inputs, hyper, dtype, device)
        call = _prepare(method, inputs, hyper, dtype, device)
        y, stats = self._run("forward", call)
        return {"y": _runtime.to_numpy(y), **_grads(stats)}

    def vjp(self, method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
            cotangent: Array, *, dtype: str, device: str) -> dict[str, Array]:
        """``jax.vjp`` of ``y`` with respect to every present primal."""
        if method in _DISTRIBUTED:
            return self._distributed("vjp", method, inputs, hyper, dtype, device,
                                     cotangent=cotangent)
        call = _prepare(method, inputs, hyper, dtype, device)
        g = _runtime.to_jax("cotangent", cotangent, call.np_dtype, call.device)
        return _grads(self._run("vjp", call, cotangent=g))

    def jvp(self, method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
            tangent: Mapping[str, Array], *, dtype: str, device: str) -> Array:
        """``jax.jvp`` of ``y``; a primal missing from ``tangent`` gets a zero direction."""
        if method in _DISTRIBUTED:
            return self._distributed("jvp", method, inputs, hyper, dtype, device,
                                     tangent=tangent)["y"]
        call = _prepare(method, inputs, hyper, dtype, device)
        t = _tangent(call, tangent)
        return _runtime.to_numpy(self._run("jvp", call, tangent=t))

    def second_order(self, method: str, inputs: Mapping[str, Array | None],
                     hyper: Mapping[str, Any], cotangent: Array, tangent: Mapping[str, Array],
                     *, dtype: str, device: str) -> dict[str, Array]:
        """Forward-over-reverse: ``jax.jvp`` of the VJP (``cotangent`` fixed) along ``tangent``."""
        if method in _DISTRIBUTED:
            return self._distributed("second_order", method, inputs, hyper, dtype, device,
                                     cotangent=cotangent, tangent=tangent)
        call = _prepare(method, inputs, hyper, dtype, device)
        g = _runtime.to_jax("cotangent", cotangent, call.np_dtype, call.device)
        t = _tangent(call, tangent)
        return _grads(self._run("second_order", call, cotangent=g, tangent=t))

    def _distributed(self, op: str, method: str, inputs: Mapping[str, Array | None],
                     hyper: Mapping[str, Any], dtype: str, device: str,
                     **given: Any) -> dict[str, Array]:
        """``op`` in the device process (:mod:`.distributed`), with its compile/run split."""
        self._timing = {}
        out = DISTRIBUTED.call(op, method, inputs, hyper, dtype=dtype, device=device, **given)
        self._timing = dict(DISTRIBUTED.timing)
        return out


def make_adapter() -> JaxAdapter:
    """A new :class:`JaxAdapter` (the factory behind the ``normspec.adapters`` entry point)."""
    return JaxAdapter()
