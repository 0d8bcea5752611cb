"""The JAX runtime behind the adapter: the x64 switch, devices, dtypes and exact conversions.

JAX is imported inside these functions, never at module import, so that importing
:mod:`normspec.adapters.jax_adapter` stays free of JAX.

float64 needs ``jax_enable_x64``: without it JAX silently turns a float64 array into float32.
:func:`enable_x64` sets it on the adapter's first use (not at import: switching a global JAX
flag is a side effect that only a caller who actually uses the adapter should get). It is never
switched back, because arrays created under x64 would change meaning under a later x32 trace.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import ml_dtypes
import numpy as np

from ..protocol import DTYPES, Array

if TYPE_CHECKING:
    import jax

NUMPY_DTYPES: Mapping[str, np.dtype[Any]] = {
    "float64": np.dtype(np.float64),
    "float32": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
}
"""The NumPy dtype of each dtype name under test (JAX accepts these directly)."""

DEVICE_NAMES: tuple[str, ...] = ("cpu", "gpu", "cuda")
"""Device names the adapter knows, all JAX platform names: ``gpu`` is JAX's name for any GPU
backend and ``cuda`` its name for the NVIDIA one (the runner's ``--device cuda``), so on an
NVIDIA machine both name the same device."""


@functools.cache
def enable_x64() -> None:
    """Turn on ``jax_enable_x64`` once, on the adapter's first use (see the module docstring)."""
    import jax

    config: Any = jax.config  # jax.config.update carries no type annotations
    config.update("jax_enable_x64", True)


@functools.cache
def platforms() -> tuple[str, ...]:
    """Device names usable now: ``"cpu"``, then ``"gpu"`` and ``"cuda"`` where JAX has them.

    Cached: JAX initialises its backends once per process, so the answer cannot change.
    """
    import jax

    found = []
    for name in DEVICE_NAMES:
        try:
            if jax.devices(name):
                found.append(name)
        except RuntimeError:
            pass  # JAX raises RuntimeError for a backend that is not installed or failed
    return tuple(found)


def jax_device(device: str) -> jax.Device:
    """The first JAX device of platform ``device``; ValueError when it is not available."""
    import jax

    usable = platforms()
    if device not in usable:
        raise ValueError(f"argument 'device': got {device!r}, expected one of {list(usable)}")
    return jax.devices(device)[0]


def check_dtype(dtype: str) -> np.dtype[Any]:
    """The NumPy dtype for a dtype name under test; ValueError for any other name."""
    if dtype not in NUMPY_DTYPES:
        raise ValueError(f"argument 'dtype': got {dtype!r}, expected one of {list(DTYPES)}")
    return NUMPY_DTYPES[dtype]


def to_jax(name: str, value: object, dtype: np.dtype[Any], device: jax.Device) -> jax.Array:
    """Convert a float64 NumPy input to a JAX array of ``dtype`` on ``device``, exactly.

    The vectors round every input to the dtype under test, so the conversion must not round;
    a value that would round means the caller passed the wrong vectors, and we refuse rather
    than silently test something else.
    """
    import jax

    arr = np.asarray(value)
    if arr.dtype.kind != "f" and arr.dtype not in NUMPY_DTYPES.values():
        raise TypeError(f"argument {name!r}: got an array of dtype {arr.dtype}, expected float64")
    with np.errstate(over="ignore"):  # an overflow shows up as an inexact value below
        cast = arr.astype(dtype)
    if not np.array_equal(cast.astype(np.float64), arr.astype(np.float64), equal_nan=True):
        raise ValueError(f"argument {name!r}: got values that are not exactly representable in "
                         f"{dtype.name}, expected inputs already rounded to the dtype under test")
    placed: jax.Array = jax.device_put(cast, device)
    return placed


def to_numpy(value: jax.Array) -> Array:
    """Copy a JAX array back to the host as float64 (after JAX computed it in its own dtype)."""
    host: Array = np.asarray(value).astype(np.float64)
    return host
