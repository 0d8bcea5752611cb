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
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

import numpy as np

from ..protocol import Array, Support
from . import _runtime
from .autodiff import HyperKey, compiled, hyper_key
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
    t = _translation(method)
    dt = _runtime.check_dtype(dtype)
    dev = _runtime.jax_device(device)
    known = (*t.primals, *t.state, "num_batches_tracked")
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


class JaxAdapter:
    """JAX/Flax under test on ``cpu`` and, where JAX has them, ``gpu`` and ``cuda``.

    Support and the API used per method are in :data:`.methods.TRANSLATIONS`; every dtype in
    :data:`normspec.adapters.DTYPES` is supported on every available device.
    """

    name = "jax"

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
        return out

    def devices(self) -> tuple[str, ...]:
        """``("cpu",)``, plus ``"gpu"`` (any JAX GPU backend) and ``"cuda"`` (JAX's NVIDIA
        backend; the same device as ``gpu`` there) when JAX has them."""
        return _runtime.platforms()

    def support(self, method: str, dtype: str, device: str) -> Support:
        """Every known method in every dtype on every available device; never raises."""
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
        base = self.support(method, dtype, device)
        if not base.supported:
            return base
        state = frozenset(k for k in TRANSLATIONS[method].state if inputs.get(k) is not None)
        why = TRANSLATIONS[method].composed_when(hyper, state)
        return base if why is None else Support(True, kind="composed", reason=why)

    def forward(self, method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
                *, dtype: str, device: str) -> dict[str, Array]:
        """``{"y": ...}`` plus the statistics the translation exposes (see the module docs)."""
        call = _prepare(method, inputs, hyper, dtype, device)
        y, stats = compiled("forward", method, dtype, call.hyper)(call.primals, call.state)
        return {"y": _runtime.to_numpy(y), **_grads(stats)}

    def vjp(self, method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
            cotangent: Array, *, dtype: str, device: str) -> dict[str, Array]:
        """``jax.vjp`` of ``y`` with respect to every present primal."""
        call = _prepare(method, inputs, hyper, dtype, device)
        g = _runtime.to_jax("cotangent", cotangent, call.np_dtype, call.device)
        return _grads(compiled("vjp", method, dtype, call.hyper)(call.primals, call.state, g))

    def jvp(self, method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
            tangent: Mapping[str, Array], *, dtype: str, device: str) -> Array:
        """``jax.jvp`` of ``y``; a primal missing from ``tangent`` gets a zero direction."""
        call = _prepare(method, inputs, hyper, dtype, device)
        t = _tangent(call, tangent)
        return _runtime.to_numpy(
            compiled("jvp", method, dtype, call.hyper)(call.primals, call.state, t))

    def second_order(self, method: str, inputs: Mapping[str, Array | None],
                     hyper: Mapping[str, Any], cotangent: Array, tangent: Mapping[str, Array],
                     *, dtype: str, device: str) -> dict[str, Array]:
        """Forward-over-reverse: ``jax.jvp`` of the VJP (``cotangent`` fixed) along ``tangent``."""
        call = _prepare(method, inputs, hyper, dtype, device)
        g = _runtime.to_jax("cotangent", cotangent, call.np_dtype, call.device)
        t = _tangent(call, tangent)
        return _grads(compiled("second_order", method, dtype, call.hyper)(
            call.primals, call.state, g, t))


def make_adapter() -> JaxAdapter:
    """A new :class:`JaxAdapter` (the factory behind the ``normspec.adapters`` entry point)."""
    return JaxAdapter()
