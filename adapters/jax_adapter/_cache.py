"""Where the adapter keeps compiled programs between runs, and what invalidates them.

Compiling dominates a JAX run of the vectors: about 2,300 distinct programs (four checks of ~146
case shapes in four dtypes), ~0.15 s each on a CPU, against well under a millisecond to run one.
Two on-disk caches, both under one root, make a rerun cheap:

* ``xla/<host>/``: JAX's own persistent compilation cache. JAX keys an entry by the lowered
  program, the jaxlib version, the backend platform and its version, ``XLA_FLAGS`` and the
  compile options (``jax._src.cache_key.get``), so a hit is the executable the same compiler
  would build. Its key does not name the host CPU, which XLA:CPU compiles for, so the folder
  does (a home directory shared between machines must not hand one CPU's code to another).
* ``executables/<fingerprint>/``: the adapter's own store of serialized executables
  (:mod:`jax.experimental.serialize_executable`), keyed *without tracing*. JAX's cache still
  traces and lowers every program before it can look it up (~40 ms each, ~100 s per run), so
  a warm run needs a key that is known before tracing: the check, method, dtype,
  hyperparameters and argument shapes, under a :func:`fingerprint` of everything else that
  decides the traced program (versions, the adapter's own source, JAX's configuration, JAX/XLA
  environment variables, the host CPU).

Neither changes what is computed: an entry is the executable XLA built with default options,
stored as bytes and loaded back (tests/tools/jax_bitwise.py compares every vector result, raw
arrays, with and without the caches).

``NORMSPEC_JAX_CACHE`` switches them: unset, empty or ``1`` means the per-user default
(``$XDG_CACHE_HOME/normspec/jax``, else ``~/.cache/normspec/jax``), ``0`` turns both off, any
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

_SOURCES = ("methods.py", "autodiff.py", "_runtime.py", "_cache.py")
"""The adapter's modules whose code decides a traced program (hashed into the fingerprint)."""

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
    sources = {name: hashlib.sha256((here / name).read_bytes()).hexdigest()
               for name in _SOURCES}
    blob = json.dumps({"versions": _versions(), "sources": sources, "host": host_id()},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class CacheState:
    """What :func:`configure` set up: the folders in use, or why there are none."""

    settings: CacheSettings
    xla_dir: str
    """JAX's persistent compilation cache folder ("" when JAX's cache is off)."""
    executable_dir: str
    """The adapter's executable store ("" when off)."""
    note: str = ""
    """Why a cache is off although asked for (e.g. the folder cannot be created)."""


def _make_dir(path: Path) -> str:
    path.mkdir(parents=True, exist_ok=True)
    if not os.access(path, os.W_OK):
        raise PermissionError(f"{path} is not writable")
    return str(path)


@functools.cache
def configure() -> CacheState:
    """Point JAX's persistent cache at the root and open the executable store, once.

    An explicit ``jax_compilation_cache_dir`` (e.g. from ``JAX_COMPILATION_CACHE_DIR``) is the
    user's and is left as it is. JAX caches only compilations over 1 s by default, which none
    of these are, so the threshold goes to 0 while the cache is ours.
    """
    import jax

    config: Any = jax.config  # jax.config.update carries no type annotations
    chosen = settings()
    if chosen.root is None:
        return CacheState(chosen, xla_dir=config.jax_compilation_cache_dir or "",
                          executable_dir="")
    try:
        store = _make_dir(chosen.root / "executables" / fingerprint())
        xla_dir = config.jax_compilation_cache_dir or ""
        if not xla_dir:
            xla_dir = _make_dir(chosen.root / "xla" / host_id())
            config.update("jax_compilation_cache_dir", xla_dir)
            config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
            config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    except OSError as exc:
        # A read-only or full home directory costs speed, never the run.
        return CacheState(chosen, xla_dir=config.jax_compilation_cache_dir or "",
                          executable_dir="", note=f"cache off: {exc}")
    return CacheState(chosen, xla_dir=xla_dir, executable_dir=store)


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
