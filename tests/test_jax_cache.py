"""The jax adapter's compilation caches: on by default per user, off or moved by one variable.

What matters to a user: a rerun does not trace or compile again, ``NORMSPEC_JAX_CACHE=0``
leaves no trace on disk, the folder is where the variable or XDG says, a user's own JAX cache is
respected, the report names the state, and nothing happens at import. The adapter is exercised
in fresh interpreters, since the cache is configured once per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("jax")
pytest.importorskip("flax.linen")

from normspec.adapters.jax_adapter import _cache

pytestmark = pytest.mark.jax

_PROBE = r"""
import hashlib, json, sys
import numpy as np
from normspec.adapters.jax_adapter import make_adapter, autodiff, _cache
a = make_adapter()
before = sorted(sys.modules)
versions = a.versions()
x = np.arange(12.0).reshape(3, 4) / 7
x = x.astype(np.float32).astype(np.float64)
w = np.ones(4)
out = {}
for step in range(2):
    f = a.forward("layer_norm", {"x": x, "weight": w}, {"axis": -1, "eps": 1e-5},
                  dtype="float32", device="cpu")
    g = a.vjp("layer_norm", {"x": x, "weight": w}, {"axis": -1, "eps": 1e-5}, x,
              dtype="float32", device="cpu")
digest = hashlib.sha256(b"".join(v.tobytes() for d in (f, g) for v in d.values())).hexdigest()
import jax
print(json.dumps({
    "versions": versions,
    "digest": digest,
    "traced": autodiff.compiled.cache_info().currsize,
    "jax_cache_dir": jax.config.jax_compilation_cache_dir,
    "store": _cache.configure().executable_dir,
    "note": _cache.configure().note,
    "versions_after": a.versions(),
}))
"""


def _probe(tmp_path: Path, **env: str) -> dict[str, Any]:
    """Run two forward and two vjp calls in a fresh interpreter with HOME in ``tmp_path``."""
    clean = {k: v for k, v in os.environ.items()
             if k not in ("NORMSPEC_JAX_CACHE", "XDG_CACHE_HOME", "JAX_COMPILATION_CACHE_DIR")}
    clean.update({"HOME": str(tmp_path / "home"), **env})
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                          env=clean, timeout=600)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# Settings: pure functions of the environment ----------------------------------------------------


def test_default_root_is_per_user_under_xdg_cache_home_or_dot_cache(tmp_path: Path) -> None:
    assert _cache.default_root({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "normspec" / "jax"
    home = Path.home() / ".cache" / "normspec" / "jax"
    assert _cache.default_root({}) == home
    # XDG says a relative value is invalid and is ignored
    assert _cache.default_root({"XDG_CACHE_HOME": "relative/dir"}) == home


@pytest.mark.parametrize("value", ["0", "off", "False", "no", " 0 "])
def test_the_variable_switches_caching_off(value: str) -> None:
    chosen = _cache.settings({"NORMSPEC_JAX_CACHE": value})
    assert chosen.root is None
    assert "off" in chosen.origin


@pytest.mark.parametrize("value", [None, "", "1", "on"])
def test_unset_empty_or_one_means_the_default_folder(value: str | None, tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    if value is not None:
        env["NORMSPEC_JAX_CACHE"] = value
    assert _cache.settings(env).root == tmp_path / "normspec" / "jax"


def test_any_other_value_is_the_folder(tmp_path: Path) -> None:
    chosen = _cache.settings({"NORMSPEC_JAX_CACHE": str(tmp_path / "c")})
    assert chosen.root == tmp_path / "c"
    assert str(tmp_path / "c") in chosen.origin


def test_the_key_of_an_executable_names_xla_flags_and_jax_configuration(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from normspec.adapters.jax_adapter import _runtime

    _runtime.enable_x64()
    base = _cache.context()
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")
    flagged = _cache.context()
    monkeypatch.delenv("XLA_FLAGS")
    assert flagged != base
    assert _cache.context() == base


def test_a_torn_store_entry_is_a_miss_and_a_rewrite_replaces_it(tmp_path: Path) -> None:
    path = _cache.key_path(str(tmp_path), ("some", "key"))
    path.write_bytes(b"not a cache entry")
    assert _cache.read(path) is None
    _cache.write(path, (b"exe", "in", "out"))
    assert _cache.read(path) == (b"exe", "in", "out")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


# The adapter in a fresh process ----------------------------------------------------------------


def test_importing_configures_nothing(tmp_path: Path) -> None:
    code = ("import sys; import normspec.adapters.jax_adapter as j; "
            "from normspec.adapters.jax_adapter import _cache; "
            "print(_cache.configure.cache_info().currsize, 'jax' in sys.modules)")
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "False"]
    assert not (tmp_path / "xdg").exists()


def test_on_by_default_in_the_user_cache_and_a_rerun_traces_nothing(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    first = _probe(tmp_path, XDG_CACHE_HOME=str(xdg))
    root = xdg / "normspec" / "jax"
    assert Path(first["store"]) == root / "executables" / _cache.fingerprint()
    assert first["jax_cache_dir"] is None  # JAX's own configuration is left alone
    assert len(_files(root)) == 2  # forward and vjp of the one shape
    assert first["traced"] == 2
    assert str(root) in first["versions"]["cache"]
    assert "NORMSPEC_JAX_CACHE=0" in first["versions"]["cache"]

    again = _probe(tmp_path, XDG_CACHE_HOME=str(xdg))
    assert again["traced"] == 0  # every executable came from the store, no jax.jit traced
    assert again["digest"] == first["digest"]


def test_the_variable_off_leaves_no_files(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    off = _probe(tmp_path, XDG_CACHE_HOME=str(xdg), NORMSPEC_JAX_CACHE="0")
    assert off["store"] == ""
    assert off["traced"] == 2
    assert not xdg.exists()
    assert not (tmp_path / "home").exists()
    assert off["versions"]["cache"] == "off (NORMSPEC_JAX_CACHE=0)"

    on = _probe(tmp_path, XDG_CACHE_HOME=str(xdg))
    assert on["digest"] == off["digest"]  # the cache changes speed, never a result


def test_the_variable_as_a_path_moves_the_cache(tmp_path: Path) -> None:
    chosen = tmp_path / "elsewhere"
    moved = _probe(tmp_path, XDG_CACHE_HOME=str(tmp_path / "xdg"),
                   NORMSPEC_JAX_CACHE=str(chosen))
    assert moved["store"].startswith(str(chosen / "executables"))
    assert len(_files(chosen)) == 2
    assert not (tmp_path / "xdg").exists()


def test_a_users_jax_cache_wins_and_the_store_stays_off(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    probe = _probe(tmp_path, XDG_CACHE_HOME=str(tmp_path / "xdg"),
                   JAX_COMPILATION_CACHE_DIR=str(theirs))
    assert probe["jax_cache_dir"] == str(theirs)
    assert probe["store"] == ""
    assert "JAX's persistent compilation cache is on" in probe["note"]
    assert probe["versions_after"]["jax_compilation_cache_dir"] == str(theirs)
    assert "store off" in probe["versions_after"]["cache"]
    assert not (tmp_path / "xdg").exists()


def test_versions_record_the_settings_that_could_change_numerics(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from normspec.adapters.jax_adapter import make_adapter

    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    monkeypatch.setenv("NORMSPEC_JAX_CACHE", "0")
    versions = make_adapter().versions()
    assert versions["XLA_FLAGS"] == "--xla_cpu_enable_fast_math=false"
    assert versions["cache"] == "off (NORMSPEC_JAX_CACHE=0)"
    assert versions["xla.compile_options"].startswith("XLA defaults")
    assert "jax_default_matmul_precision" in versions
    monkeypatch.delenv("XLA_FLAGS")
    assert make_adapter().versions()["XLA_FLAGS"] == "(unset)"


_SVD = r"""
import sys, pickle
import jax, jax.numpy as jnp
jax.config.update("jax_enable_x64", True)
from jax.experimental import serialize_executable as se
f = jax.jit(lambda w: jnp.linalg.svd(w, compute_uv=False)[0])
x = jnp.arange(24.0).reshape(4, 6)
if sys.argv[1] == "save":
    pickle.dump(se.serialize(f.lower(x).compile()), open(sys.argv[2], "wb"))
else:
    entry = pickle.load(open(sys.argv[2], "rb"))
    d = jax.devices()
    print(se.deserialize_and_load(*entry, backend=d[0].client, execution_devices=d[:1])(x))
"""

_EXACT = r"""
import json, sys
import numpy as np
from normspec.adapters.jax_adapter import make_adapter
a = make_adapter()
w = np.arange(24.0).reshape(4, 6) / 5
hyper = {"mode": "exact", "dim": 0, "training": True}
y = a.forward("spectral_norm", {"x": w}, hyper, dtype="float64", device="cpu")["y"]
print(json.dumps(y.tolist()))
"""


def test_an_executable_with_a_custom_call_crashes_when_reloaded_so_it_is_never_stored(
        tmp_path: Path) -> None:
    # The jaxlib defect the store works around: LAPACK's SVD (a custom call), serialized and run
    # in another process, segfaults. When a jaxlib fixes it, this first part fails: drop the guard.
    entry = tmp_path / "svd.pkl"
    subprocess.run([sys.executable, "-c", _SVD, "save", str(entry)], check=True, timeout=300)
    crashed = subprocess.run([sys.executable, "-c", _SVD, "load", str(entry)],
                             capture_output=True, timeout=300)
    assert crashed.returncode != 0
    # The adapter leaves such a program out of the store, so a second process compiles it again.
    clean = {k: v for k, v in os.environ.items() if k != "NORMSPEC_JAX_CACHE"}
    clean["NORMSPEC_JAX_CACHE"] = str(tmp_path / "store")
    runs = [subprocess.run([sys.executable, "-c", _EXACT], capture_output=True, text=True,
                           env=clean, timeout=300) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[-1].stderr
    assert runs[0].stdout == runs[1].stdout
    assert _files(tmp_path / "store") == []
