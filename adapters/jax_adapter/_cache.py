"""Where the adapter keeps compiled programs between runs, and what invalidates them.

Compiling dominates a JAX run of the vectors: about 2,300 distinct programs (four checks of ~146
case shapes in four dtypes), ~0.15 s each on a CPU, against well under a millisecond to run one.
The adapter keeps each compiled program on disk as a serialized executable
(:mod:`jax.experimental.serialize_executable`) in ``<root>/executables/<fingerprint>/``, keyed
*without tracing*: the check, method, dtype, hyperparameters, argument shapes/dtypes/devices
and JAX's configuration (:func:`context`), under a :func:`fingerprint` of the versions, the
adapter's own source and the host CPU (XLA:CPU generates code for it; a home directory shared
between machines must not hand one CPU's code to another).

Why not JAX's persistent compilation cache: it keys an entry by the lowered program, jaxlib
version, platform and its version, ``XLA_FLAGS`` and compile options (``jax._src.cache_key``;
not the host CPU), so it can only be consulted after tracing and lowering, ~40 ms per program,
~100 s per warm run. And the two do not mix: an executable JAX loaded from its cache and
serialized again fails to load (XLA:CPU ``NOT_FOUND: Function multiply_reduce_fusion.2 not
found``), so the store stays off while JAX's cache is on (a user's ``JAX_COMPILATION_CACHE_DIR``
wins).

Neither changes what is computed: an entry is the executable XLA built with default options,
stored as bytes and loaded back (tests/tools/jax_bitwise.py compares every vector result, raw
arrays, cold and warm against plain ``jax.jit``).

``NORMSPEC_JAX_CACHE`` switches the store: unset, empty or ``1`` means the per-user default
(``$XDG_CACHE_HOME/normspec/jax``, else ``~/.cache/normspec/jax``), ``0`` turns it off, any
other value is the root folder to use. Nothing here runs at import time: :func:`configure` is
called on the adapter's first use, like :func:`._runtime.enable_x64`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import platform
import sys
import tempfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

ENV_VAR = "NORMSPEC_JAX_CACHE"
"""The switch: unset/empty/``1`` default folder, ``0`` off, anything else the folder."""

_OFF = frozenset({"0", "off", "false", "no"})
_ON = frozenset({"", "1", "on", "true", "yes"})

_SOURCES = "*.py"
"""The adapter's modules whose code decides a traced program (hashed into the fingerprint):
every module of the package, so a translation kept in its own file (ghost_batch_norm.py, ...)
invalidates its programs when it changes, as methods.py does."""

_DISTRIBUTIONS = ("jax", "jaxlib", "flax", "numpy", "ml_dtypes")


@dataclass(frozen=True)
class CacheSettings:
    """The cache root chosen from the environment (``None``: caching off) and why."""

    root: Path | None
    origin: str
    """How the root was chosen, for the report: the default, the variable's value, or off."""


def default_root(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/normspec/jax`` (an absolute XDG path only), else ``~/.cache/...``."""
    env = os.environ if env is None else env
    xdg = env.get("XDG_CACHE_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "normspec" / "jax"


def settings(env: Mapping[str, str] | None = None) -> CacheSettings:
    """The cache settings ``env`` (default: ``os.environ``) asks for; reads nothing else."""
    env = os.environ if env is None else env
    raw = env.get(ENV_VAR)
    value = (raw or "").strip()
    if value.lower() in _OFF:
        return CacheSettings(None, f"off ({ENV_VAR}={raw})")
    if value.lower() in _ON:
        return CacheSettings(default_root(env), "default" if raw is None else
                             f"default ({ENV_VAR}={raw!r})")
    return CacheSettings(Path(value).expanduser().absolute(), f"{ENV_VAR}={raw}")


@functools.cache
def host_id() -> str:
    """A short hash of the host CPU that XLA:CPU generates code for (model and ISA flags)."""
    parts = [platform.machine(), platform.processor()]
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                # The first processor's model and feature flags describe them all here.
                if line.startswith(("model name", "flags", "Features", "CPU part")):
                    parts.append(line.split(":", 1)[-1].strip())
                elif not line.strip() and len(parts) > 2:
                    break
    except OSError:
        pass  # not Linux: machine and processor names are all there is
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _versions() -> dict[str, str]:
    out = {"python": sys.version}
    for dist in _DISTRIBUTIONS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    for found in metadata.distributions():
        name = found.metadata["Name"] or ""
        if name.replace("_", "-").startswith(("jax-cuda", "jax-rocm", "libtpu")):
            out[name] = found.version
    return out


def _stable_repr(value: object) -> str:
    text = repr(value)
    # An object's default repr carries its address, which would change every process.
    return type(value).__qualname__ if " at 0x" in text else text


def context() -> str:
    """A hash of JAX's configuration now and the environment variables that steer JAX/XLA.

    Part of every executable's key (not only of the folder): a process may change JAX's
    configuration between calls, and JAX's own jit cache would see that too. The cache
    settings themselves are left out, since they do not change a program.
    """
    import jax

    values: Mapping[str, Any] = getattr(jax.config, "values", {})
    config = {k: _stable_repr(v) for k, v in values.items() if "cache" not in k}
    prefixes = ("XLA_", "JAX_", "TF_XLA", "LIBTPU", "TPU_", "CUDA_VISIBLE", "NVIDIA_TF32")
    env = {k: v for k, v in os.environ.items() if k.startswith(prefixes) and "CACHE" not in k}
    blob = json.dumps({"config": config, "environment": env}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


@functools.cache
def fingerprint() -> str:
    """A hash of the versions, the adapter's source and the host CPU: the store's folder name.

    Everything that decides a traced program and cannot change within a process; an
    executable stored under another fingerprint is never read.
    """
    here = Path(__file__).parent
    sources = {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
               for path in sorted(here.glob(_SOURCES))}
    blob = json.dumps({"versions": _versions(), "sources": sources, "host": host_id()},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class CacheState:
    """What :func:`configure` set up: the store's folder ("" when off) and why it is off."""

    settings: CacheSettings
    executable_dir: str
    note: str = ""
    """Why the store is off although asked for (JAX's own cache is on, an unwritable folder)."""


def jax_cache_dir() -> str:
    """JAX's persistent compilation cache folder when it is on (the user's setting), else ""."""
    import jax

    config: Any = jax.config
    directory: str | None = config.jax_compilation_cache_dir
    return directory or "" if config.jax_enable_compilation_cache else ""


@functools.cache
def configure() -> CacheState:
    """Open the executable store once, on the adapter's first use (nothing at import)."""
    chosen = settings()
    if chosen.root is None:
        return CacheState(chosen, executable_dir="")
    if jax_cache_dir():
        return CacheState(chosen, executable_dir="", note=(
            f"store off: JAX's persistent compilation cache is on ({jax_cache_dir()}), and "
            "executables JAX loads from it cannot be serialized again"))
    store = chosen.root / "executables" / fingerprint()
    try:
        store.mkdir(parents=True, exist_ok=True)
        if not os.access(store, os.W_OK):
            raise PermissionError(f"{store} is not writable")
    except OSError as exc:
        # A read-only or full home directory costs speed, never the run.
        return CacheState(chosen, executable_dir="", note=f"store off: {exc}")
    return CacheState(chosen, executable_dir=str(store))


def key_path(store: str, key: object) -> Path:
    """The file of one executable: a hash of its key (a repr-stable tuple) in ``store``."""
    return Path(store) / (hashlib.sha256(repr(key).encode()).hexdigest()[:40] + ".bin")


def read(path: Path) -> tuple[bytes, Any, Any] | None:
    """A stored ``(serialized executable, in_tree, out_tree)``, or None when absent/unreadable.

    Only files this user's adapter wrote are read (the per-user folder, same trust as JAX's
    own cache, which also loads executables from disk).
    """
    try:
        entry: tuple[bytes, Any, Any] = pickle.loads(zlib.decompress(path.read_bytes()))
    except FileNotFoundError:
        return None
    except Exception:  # a torn or stale file is a miss, never an error
        return None
    return entry


def write(path: Path, entry: tuple[bytes, Any, Any]) -> None:
    """Store an entry atomically (concurrent runs may write the same key); errors are ignored."""
    try:
        data = zlib.compress(pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL), 1)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except Exception:  # a cache that cannot write only costs speed
        return
