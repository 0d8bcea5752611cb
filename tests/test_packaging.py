"""Packaging contracts: lazy framework imports, and a wheel that finds its vectors anywhere."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module", ["normspec.reference", "normspec.adapters",
                                    "normspec.adapters.torch_adapter",
                                    "normspec.adapters.jax_adapter",
                                    "normspec.conformance.cli"])
def test_import_pulls_in_no_framework(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "heavy = sorted(m for m in ('torch', 'jax', 'flax') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == "", f"importing {module} imported {out.stdout.strip()}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(ROOT)], check=True, capture_output=True)
    (found,) = out.glob("normspec-*.whl")
    return found


def test_wheel_ships_vectors_and_schema(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "normspec/spec/vectors/manifest.json" in names
    assert any(n.endswith(".safetensors") for n in names)
    assert "normspec/spec/vector-manifest.schema.json" in names
    assert "normspec/conformance/tolerances.toml" in names
    assert not any(n.startswith("normspec/__init__") for n in names), "normspec is a namespace"


def test_installed_wheel_finds_its_vectors_outside_the_repo(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # drop the editable-install finder so only the unpacked wheel can answer
    code = (
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
        "sys.path_hooks[:] = [h for h in sys.path_hooks if 'editable' not in repr(h).lower()]\n"
        f"sys.path.insert(0, {str(site)!r})\n"
        "import json\n"
        "from importlib import resources\n"
        "import normspec.reference as ref\n"
        "root = resources.files('normspec.spec')\n"
        "manifest = json.loads(root.joinpath('vectors/manifest.json').read_text())\n"
        "print(json.dumps({'ref': ref.__file__, 'spec': str(root), "
        "'methods': sorted(manifest['methods'])}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=tmp_path)
    info = json.loads(out.stdout)
    assert info["ref"].startswith(str(site)), info
    assert info["spec"].startswith(str(site)), info
    assert "layer_norm" in info["methods"]
