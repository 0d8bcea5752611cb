"""sync_batch_norm on the host devices of the JAX device process (runs in that process).

See :mod:`.distributed` for the two variants and why. Here: the padded layout, the two
``shard_map`` bodies, the derivatives, and the programs, compiled once per shape and kept in
memory and in a store of their own (``<cache root>/executables-distributed/<fingerprint>/``,
next to the adapter's, which this process never touches; same switch, ``NORMSPEC_JAX_CACHE``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from . import _cache, _runtime
from .autodiff import hyper_key
from .distributed import plan, shard_sizes
from .methods import flax_momentum

AXIS = "workers"
"""The mesh axis the shards are spread over."""

_SOURCES = ("sync_batch_norm.py", "distributed.py", "_devices.py")


def _channel_axis(hyper: Mapping[str, Any], ndim: int) -> int:
    value = hyper.get("channel_axis", 1)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not (
            -ndim <= int(value) < ndim):
        raise ValueError(f"argument 'channel_axis': got {value!r}, expected an axis of a "
                         f"{ndim}-d input")
    c = int(value) % ndim
    if c == 0:
        raise ValueError(f"argument 'channel_axis': got {value}, expected an axis other than "
                         "the sharded batch axis 0")
    return c


def _factor(hyper: Mapping[str, Any]) -> float:
    """The spec's weight ``f`` of the new batch (``1 - momentum`` in Flax's terms)."""
    return 1.0 - flax_momentum(hyper["batch_stat_weight"], int(hyper.get(
        "num_batches_tracked", 0)))


def _body(variant: str, dt: Any, hyper: Mapping[str, Any], ndim: int, composed_update: bool
          ) -> Callable[..., Any]:
    """The per-device function: ``(x, mask, params, state) -> (y, stats)``, stats with a
    leading device axis of 1 (so every device's copy comes back and can be compared)."""
    import jax.numpy as jnp
    from flax import linen as nn
    from jax import lax as _lax

    lax: Any = _lax  # psum and stop_gradient carry no type annotations
    c = _channel_axis(hyper, ndim)
    eps = float(hyper["eps"])
    training = bool(hyper["training"])
    axes = tuple(i for i in range(ndim) if i != c)
    acc = jnp.promote_types(dt, jnp.float32)

    def moments(x: Any, mask: Any) -> tuple[Any, Any, Any]:
        """Global count, mean and biased variance over the valid rows of every device."""
        keep = mask.reshape((-1,) + (1,) * (ndim - 1))
        xa = x.astype(acc)
        per_row = math.prod(x.shape[1:]) // x.shape[c]
        count = lax.psum(jnp.sum(mask).astype(acc) * per_row, AXIS)
        mean = lax.psum(jnp.sum(jnp.where(keep, xa, 0), axes), AXIS) / count
        d = jnp.where(keep, xa - jnp.expand_dims(mean, axes), 0)
        var = lax.psum(jnp.sum(d * d, axes), AXIS) / count
        return count, mean, var

    def update(state: Mapping[str, Any], count: Any, mean: Any, var: Any) -> dict[str, Any]:
        f = _factor(hyper)
        if hyper["running_var_estimator"] == "unbiased":
            var = var * (count / (count - 1))
        return {"running_mean": (1 - f) * state["running_mean"] + f * mean,
                "running_var": (1 - f) * state["running_var"] + f * var}

    def psum_body(x: Any, mask: Any, params: Mapping[str, Any], state: Mapping[str, Any]
                  ) -> tuple[Any, dict[str, Any]]:
        count, mean, var = moments(x, mask)
        std = jnp.sqrt(var + eps)
        # divide by sqrt(var + eps): rsqrt's derivative leaves float32 at extreme spreads
        z = (x.astype(acc) - jnp.expand_dims(mean, axes)) / jnp.expand_dims(std, axes)
        w, b = params.get("weight"), params.get("bias")
        y = z if w is None else z * jnp.expand_dims(w.astype(acc), axes)
        y = y if b is None else y + jnp.expand_dims(b.astype(acc), axes)
        stats = {"mean": mean, "var": var, "rstd": 1 / std}
        if state:
            stats.update(update(state, count, lax.stop_gradient(mean), lax.stop_gradient(var)))
        return y.astype(dt), {k: v[None] for k, v in stats.items()}

    def flax_body(x: Any, mask: Any, params: Mapping[str, Any], state: Mapping[str, Any]
                  ) -> tuple[Any, dict[str, Any]]:
        tracking = bool(state)
        momentum = 1.0 - _factor(hyper) if training and tracking else 0.0
        layer = nn.BatchNorm(use_running_average=not training, axis=c, epsilon=eps,
                             momentum=momentum, dtype=dt, param_dtype=dt,
                             use_scale="weight" in params, use_bias="bias" in params,
                             axis_name=AXIS)
        names = {"weight": "scale", "bias": "bias"}
        stats_in = ({"mean": state["running_mean"], "var": state["running_var"]} if tracking
                    else {"mean": jnp.zeros((x.shape[c],), acc),
                          "var": jnp.ones((x.shape[c],), acc)})
        variables = {"params": {names[k]: v for k, v in params.items()},
                     "batch_stats": stats_in}
        if not training:
            y: Any = layer.apply(variables, x)
            return y, {}
        y, updated = layer.apply(variables, x, mutable=["batch_stats"])
        if not tracking:
            return y, {}
        if composed_update:
            count, mean, var = moments(lax.stop_gradient(x), mask)
            stats = update(state, count, mean, var)
        else:
            new = updated["batch_stats"]
            stats = {"running_mean": new["mean"], "running_var": new["var"]}
        return y, {k: v[None] for k, v in stats.items()}

    return psum_body if variant == "psum" else flax_body


@functools.lru_cache(maxsize=256)
def _program(op: str, variant: str, dtype: str, hyper: tuple[tuple[str, Any], ...], world: int,
             ndim: int, composed_update: bool) -> Callable[..., Any]:
    """The jitted ``op`` over a mesh of the first ``world`` devices (see the module docs)."""
    import jax
    from jax.sharding import Mesh, PartitionSpec

    P: Any = PartitionSpec  # untyped constructor

    mesh = Mesh(np.array(jax.devices("cpu")[:world]), (AXIS,))
    body = _body(variant, _runtime.NUMPY_DTYPES[dtype], dict(hyper), ndim, composed_update)
    layer = jax.shard_map(body, mesh=mesh, in_specs=(P(AXIS), P(AXIS), P(), P()),
                          out_specs=(P(AXIS), P(AXIS)))

    def y_of(state: Any, mask: Any) -> Callable[[Any], Any]:
        def fn(primals: Mapping[str, Any]) -> Any:
            params = {k: v for k, v in primals.items() if k != "x"}
            return layer(primals["x"], mask, params, state)[0]
        return fn

    def forward(primals: Any, state: Any, mask: Any) -> Any:
        params = {k: v for k, v in primals.items() if k != "x"}
        return layer(primals["x"], mask, params, state)

    def vjp(primals: Any, state: Any, mask: Any, g: Any) -> Any:
        return jax.vjp(y_of(state, mask), primals)[1](g)[0]

    def jvp(primals: Any, state: Any, mask: Any, t: Any) -> Any:
        return jax.jvp(y_of(state, mask), (primals,), (t,))[1]

    def second_order(primals: Any, state: Any, mask: Any, g: Any, t: Any) -> Any:
        def grads(p: Any) -> Any:
            return jax.vjp(y_of(state, mask), p)[1](g)[0]
        return jax.jvp(grads, (primals,), (t,))[1]

    fns = {"forward": forward, "vjp": vjp, "jvp": jvp, "second_order": second_order}
    jit: Any = jax.jit
    jitted: Callable[..., Any] = jit(fns[op])
    return jitted


@functools.cache
def _store() -> Path | None:
    """This process's executable folder, or None (store off, or JAX's own cache on)."""
    chosen = _cache.settings()
    if chosen.root is None or _cache.jax_cache_dir():
        return None
    here = Path(__file__).parent
    mine = {n: hashlib.sha256((here / n).read_bytes()).hexdigest() for n in _SOURCES}
    tag = hashlib.sha256(json.dumps({"adapter": _cache.fingerprint(), "distributed": mine},
                                    sort_keys=True).encode()).hexdigest()[:24]
    folder = chosen.root / "executables-distributed" / tag
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder


_EXECUTABLES: dict[tuple[Any, ...], Callable[..., Any]] = {}


def _executable(key: tuple[Any, ...], build: Callable[[], Any], args: tuple[Any, ...]
                ) -> tuple[Callable[..., Any], bool]:
    """The executable for ``key``: from memory, from the store, or compiled (and stored)."""
    import jax
    from jax.experimental import serialize_executable

    found = _EXECUTABLES.get(key)
    if found is not None:
        return found, True
    store = _store()
    path = _cache.key_path(str(store), key) if store is not None else None
    entry = _cache.read(path) if path is not None else None
    if entry is not None:
        try:
            loaded: Callable[..., Any] = serialize_executable.deserialize_and_load(
                *entry, backend=jax.devices("cpu")[0].client,
                execution_devices=jax.devices("cpu")[:key[-1]])
            _EXECUTABLES[key] = loaded
            return loaded, True
        except Exception:  # an entry the runtime rejects is a miss
            pass
    compiled: Any = build().lower(*args).compile()
    if path is not None:
        # a backend that cannot serialize: no store, the same result
        with contextlib.suppress(Exception):
            _cache.write(path, serialize_executable.serialize(compiled))
    _EXECUTABLES[key] = compiled
    return compiled, False


def _pad(a: np.ndarray, sizes: list[int], rows: int) -> np.ndarray:
    """``a``'s shards along axis 0, each padded with zeros to ``rows`` rows, stacked."""
    out = np.zeros((len(sizes) * rows, *a.shape[1:]), dtype=a.dtype)
    start = 0
    for i, n in enumerate(sizes):
        out[i * rows:i * rows + n] = a[start:start + n]
        start += n
    return out


def _unpad(a: np.ndarray, sizes: list[int], rows: int) -> np.ndarray:
    return np.concatenate([a[i * rows:i * rows + n] for i, n in enumerate(sizes)], axis=0)


def _agreed(name: str, value: np.ndarray) -> np.ndarray:
    """One device's copy of a replicated result, after checking every device holds it."""
    for device in range(1, value.shape[0]):
        if not np.array_equal(value[device], value[0], equal_nan=True):
            raise ValueError(f"{name!r} differs between device 0 and device {device}: "
                             f"{value[0].tolist()} vs {value[device].tolist()}; every worker "
                             "must hold the same value")
    out: np.ndarray = value[0]
    return out


def run(message: Mapping[str, Any]) -> dict[str, Any]:
    """One request: ``op``, ``dtype``, ``inputs`` (full batch, ``shard_sizes``), ``hyper``,
    ``cotangent``, ``tangent``. Returns the contract's results and ``__timing__``."""
    import jax

    op, dtype = message["op"], message["dtype"]
    inputs, hyper = dict(message["inputs"]), dict(message["hyper"])
    sizes = shard_sizes(inputs, hyper)
    hyper.pop("shard_sizes", None)
    if (counter := inputs.pop("num_batches_tracked", None)) is not None:
        hyper["num_batches_tracked"] = int(np.asarray(counter))
    x = inputs["x"]
    if x is None or x.ndim < 2 or sum(sizes) != x.shape[0]:
        raise ValueError(f"argument 'shard_sizes': got {sizes}, expected sizes that sum to the "
                         f"batch size of x (shape {None if x is None else x.shape})")
    c = _channel_axis(hyper, x.ndim)
    tracking = inputs.get("running_mean") is not None
    training = bool(hyper["training"])
    if training and tracking and hyper.get("running_var_estimator") == "unbiased" and (
            x.size // x.shape[c] <= 1):
        raise ValueError(f"argument 'x': got shape {x.shape} with one value per channel, "
                         "expected n >= 2 for running_var_estimator='unbiased'")
    variant, composed_update = plan(sizes, hyper, tracking)
    world, rows = len(sizes), max(1, *sizes)
    dt = _runtime.check_dtype(dtype)
    sdt = np.dtype(np.float64) if dtype == "float64" else np.dtype(np.float32)

    def put(name: str, value: Any, kind: Any, padded: bool) -> np.ndarray:
        # Host arrays, not arrays committed to one device: the program places them on its mesh.
        arr = np.asarray(value, dtype=np.float64)
        with np.errstate(over="ignore"):
            cast = arr.astype(kind)
        if not np.array_equal(cast.astype(np.float64), arr, equal_nan=True):
            raise ValueError(f"argument {name!r}: got values that are not exactly representable "
                             f"in {np.dtype(kind).name}, expected inputs already rounded to it")
        out: np.ndarray = _pad(cast, sizes, rows) if padded else cast
        return out

    present = [k for k in ("x", "weight", "bias") if inputs.get(k) is not None]
    primals = {k: put(k, inputs[k], dt, k == "x") for k in present}
    state = {k: put(k, inputs[k], sdt, False) for k in ("running_mean", "running_var")
             if tracking}
    mask = _pad(np.ones(x.shape[0], dtype=bool), sizes, rows)
    args: tuple[Any, ...] = (primals, state, mask)
    if op in ("vjp", "second_order"):
        args += (put("cotangent", message["cotangent"], dt, True),)
    if op in ("jvp", "second_order"):
        given = message["tangent"] or {}
        args += ({k: put(f"tangent[{k!r}]", given.get(k, np.zeros(np.shape(inputs[k]))), dt,
                         k == "x") for k in present},)
    key_hyper = hyper_key({k: v for k, v in hyper.items() if k != "num_batches_tracked"
                           or hyper.get("batch_stat_weight") == "cumulative"})
    shapes = tuple((str(type(a)), str(jax.tree.structure(a)),
                    tuple((tuple(v.shape), str(v.dtype)) for v in jax.tree.leaves(a)))
                   for a in args)
    key = (op, variant, dtype, key_hyper, composed_update, shapes, _cache.context(), world)
    start = time.perf_counter()
    executable, _ = _executable(
        key, lambda: _program(op, variant, dtype, key_hyper, world, x.ndim, composed_update),
        args)
    ready = time.perf_counter()
    wait: Any = jax.block_until_ready  # untyped in jax
    out = wait(executable(*args))
    timing = {"compile_s": ready - start, "run_s": time.perf_counter() - ready}
    result: dict[str, Any] = {"__timing__": timing}
    if op == "forward":
        y, stats = out
        result["y"] = _unpad(_runtime.to_numpy(y), sizes, rows)
        result.update({k: _agreed(k, _runtime.to_numpy(v)) for k, v in stats.items()})
    elif op == "jvp":
        result["y"] = _unpad(_runtime.to_numpy(out), sizes, rows)
    else:
        for k, v in out.items():
            arr = _runtime.to_numpy(v)
            result[k] = _unpad(arr, sizes, rows) if k == "x" else arr
    return result
