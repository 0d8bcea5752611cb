"""Faults around the golden vectors: what ``vectors build`` may remove, bad manifests, bad files.

Every error is one line that names the file (or directory) it is about.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from normspec.conformance.cli import main
from normspec.conformance.vectors import VectorFormatError, load_manifest
from normspec.conformance.vectors.catalog import parse_catalog
from normspec.conformance.vectors.check import check
from normspec.conformance.vectors.generate import build, write

DTYPES = ("float64", "float32", "float16", "bfloat16")


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """lp_norm and rms_norm built once (small and quick); tests copy it before changing it."""
    out = tmp_path_factory.mktemp("small")
    manifest, files = build(("lp_norm", "rms_norm"))
    write(out, manifest, files)
    return out


@pytest.fixture
def vectors(tmp_path: Path, small: Path) -> Path:
    return Path(shutil.copytree(small, tmp_path / "vectors"))


def _edit_manifest(vectors: Path, change: Any) -> Path:
    path = vectors / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text, text
    return text


def _build(out: Path, *methods: str) -> int:
    argv = ["vectors", "build", "--out", str(out)]
    for m in methods:
        argv += ["--method", m]
    status: int = main(argv)
    return status


# --- 1. vectors build never removes what it did not write ----------------------------------


def test_build_keeps_unrelated_safetensors_files(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    weights = tmp_path / "model" / "weights.safetensors"
    weights.write_bytes(b"not normspec's")
    (tmp_path / "empty").mkdir()
    assert _build(tmp_path, "lp_norm") == 0
    assert weights.read_bytes() == b"not normspec's"
    assert (tmp_path / "empty").is_dir()


def test_build_of_one_method_keeps_the_other_methods(vectors: Path) -> None:
    before = {p: p.read_bytes() for p in (vectors / "rms_norm").iterdir()}
    assert _build(vectors, "lp_norm") == 0
    assert {p: p.read_bytes() for p in (vectors / "rms_norm").iterdir()} == before
    manifest = load_manifest(vectors)
    # the manifest still lists rms_norm, so its files remain usable and sha256-checked
    assert manifest.methods == ("lp_norm", "rms_norm")
    assert next(manifest.cases("rms_norm", "float16")).method == "rms_norm"
    assert next(manifest.cases("lp_norm", "bfloat16")).method == "lp_norm"


def test_build_over_a_broken_manifest_keeps_every_file(
        vectors: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (vectors / "manifest.json").write_text("{")
    assert _build(vectors, "lp_norm") == 0
    assert "the manifest already there is not valid" in capsys.readouterr().out
    assert sorted(p.name for p in (vectors / "rms_norm").iterdir()) == sorted(
        f"{d}.safetensors" for d in DTYPES)
    assert load_manifest(vectors).methods == ("lp_norm",)


def test_write_removes_only_listed_files_of_rebuilt_methods_no_longer_built(
        vectors: Path) -> None:
    manifest, files = build(("lp_norm",))
    (vectors / "lp_norm" / "notes.safetensors").write_bytes(b"someone else's")
    # a hostile or stale manifest cannot point the removal outside <method>/<dtype>.safetensors
    outside = vectors.parent / "outside.safetensors"
    outside.write_bytes(b"x")
    _edit_manifest(vectors, lambda d: d["methods"]["lp_norm"]["dtypes"]["float64"].update(
        file="../outside.safetensors"))
    # as if bfloat16 were no longer a dtype under test
    del manifest["methods"]["lp_norm"]["dtypes"]["bfloat16"]
    partial = {k: v for k, v in files.items() if not k.endswith("bfloat16.safetensors")}
    removed = write(vectors, manifest, partial)
    assert removed == ["lp_norm/bfloat16.safetensors"]
    assert not (vectors / "lp_norm" / "bfloat16.safetensors").exists()
    assert (vectors / "lp_norm" / "notes.safetensors").read_bytes() == b"someone else's"
    assert outside.read_bytes() == b"x"
    assert len(list((vectors / "rms_norm").iterdir())) == len(DTYPES)


def test_write_removes_an_emptied_method_folder(tmp_path: Path) -> None:
    manifest, files = build(("lp_norm",))
    write(tmp_path, manifest, files)
    manifest["methods"]["lp_norm"]["dtypes"] = {}
    assert write(tmp_path, manifest, {}) == [f"lp_norm/{d}.safetensors" for d in sorted(DTYPES)]
    assert not (tmp_path / "lp_norm").exists()


# --- 3. hyperparameters are checked against the reference's signature ----------------------


def test_manifest_with_an_unknown_hyperparameter_is_rejected(vectors: Path) -> None:
    def add(data: dict[str, Any]) -> None:
        data["methods"]["rms_norm"]["cases"][1]["hyper"]["epsilon"] = 1e-5

    path = _edit_manifest(vectors, add)
    name = json.loads(path.read_text())["methods"]["rms_norm"]["cases"][1]["name"]
    with pytest.raises(VectorFormatError) as info:
        load_manifest(vectors)
    text = _one_line(info.value)
    assert text.startswith(str(path))
    assert f"methods/rms_norm/cases[1] ({name!r}): unknown hyperparameter(s) ['epsilon'] for " \
           "rms_norm, expected names from ['axis', 'eps']" in text


def test_manifest_missing_a_required_hyperparameter_is_rejected(vectors: Path) -> None:
    _edit_manifest(vectors, lambda d: d["methods"]["lp_norm"]["cases"][0]["hyper"].pop("p"))
    with pytest.raises(VectorFormatError, match=r"manifest\.json: methods/lp_norm/cases\[0\] "
                                                r".*missing required hyperparameter\(s\) \['p'\]"):
        load_manifest(vectors)


def test_manifest_with_a_state_input_as_hyperparameter_is_rejected(tmp_path: Path) -> None:
    manifest, files = build(("batch_norm",))
    write(tmp_path, manifest, files)
    _edit_manifest(tmp_path, lambda d: d["methods"]["batch_norm"]["cases"][0]["hyper"].update(
        running_mean=0.0))
    with pytest.raises(VectorFormatError, match=r"unknown hyperparameter\(s\) \['running_mean'\]"):
        load_manifest(tmp_path)


def test_manifest_with_an_unknown_method_is_rejected(vectors: Path) -> None:
    _edit_manifest(vectors, lambda d: d["methods"].update(
        foo_norm=d["methods"].pop("lp_norm")))
    with pytest.raises(VectorFormatError, match=r"manifest\.json: methods/foo_norm: not a method "
                                                r"of the reference"):
        load_manifest(vectors)


def test_catalog_with_an_unknown_hyperparameter_is_rejected() -> None:
    text = ('method = "rms_norm"\n[[case]]\nname = "a"\nseed = 1\nshape = [2, 3]\n'
            'hyper = {axis = -1, eps = 1e-6, epsilon = 1e-5}\n')
    with pytest.raises(ValueError, match="unknown hyperparameter") as info:
        parse_catalog(text, "cases/rms_norm.toml")
    assert _one_line(info.value) == (
        "cases/rms_norm.toml: case 'a': unknown hyperparameter(s) ['epsilon'] for rms_norm, "
        "expected names from ['axis', 'eps']")


# --- 6. a manifest without methods says so -------------------------------------------------


def test_manifest_without_methods_is_rejected_naming_it(vectors: Path) -> None:
    path = _edit_manifest(vectors, lambda d: d.update(methods={}))
    with pytest.raises(VectorFormatError) as info:
        load_manifest(vectors)
    assert _one_line(info.value).startswith(f"{path}: defines no methods")


def test_run_on_a_manifest_without_methods_says_so(vectors: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    _edit_manifest(vectors, lambda d: d.update(methods={}))
    status = main(["run", "--adapter", "fakes.adapters:REFERENCE", "--vectors", str(vectors),
                   "--no-progress"])
    err = capsys.readouterr().err
    assert status == 2
    assert "defines no methods" in err
    assert "matches no test" not in err


def test_build_from_no_catalog_fails_naming_the_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no case catalog"):
        build(cases_root=tmp_path)


# --- 7. an output directory that cannot be written -----------------------------------------


def _usage_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_build_to_an_unwritable_directory_is_a_usage_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Tests may run as root, which ignores file modes; fail the write the way a read-only
    # directory does.
    def refuse(self: Path, data: bytes) -> int:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "write_bytes", refuse)
    assert _build(tmp_path / "out", "lp_norm") == 2
    line = _usage_error(capsys)
    assert line.startswith(f"normspec: error: --out {tmp_path / 'out'}: cannot write the "
                           "vectors there: Permission denied")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes to read-only directories")
def test_build_to_a_read_only_directory_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # pragma: no cover
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        assert _build(out, "lp_norm") == 2
    finally:
        out.chmod(0o755)
    assert f"--out {out}: cannot write the vectors there" in _usage_error(capsys)


def test_build_under_a_regular_file_is_a_usage_error(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    assert _build(tmp_path / "file" / "vectors", "lp_norm") == 2
    assert f"--out {tmp_path / 'file' / 'vectors'}: cannot write" in _usage_error(capsys)


# --- 8. vector files that cannot be used: one line naming the file -------------------------


def _record_sha(vectors: Path, method: str, dtype: str) -> None:
    import hashlib

    data = (vectors / method / f"{dtype}.safetensors").read_bytes()
    _edit_manifest(vectors, lambda d: d["methods"][method]["dtypes"][dtype].update(
        sha256=hashlib.sha256(data).hexdigest()))


@pytest.mark.parametrize(("damage", "message"), [
    ("missing", "cannot be read"),
    ("flipped", "sha256 [0-9a-f]{64} does not match"),
    ("garbage", "not a valid safetensors file"),
    ("truncated", "not a valid safetensors file"),
    ("directory", "cannot be read"),
])
def test_unusable_vector_file_is_one_line_naming_it(vectors: Path, damage: str,
                                                    message: str) -> None:
    path = vectors / "rms_norm" / "float32.safetensors"
    if damage in ("missing", "directory"):
        path.unlink()
        if damage == "directory":
            path.mkdir()
    elif damage == "flipped":
        data = bytearray(path.read_bytes())
        data[-1] ^= 1
        path.write_bytes(bytes(data))
    else:
        path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json" if damage == "garbage"
                         else path.read_bytes()[:1000])
        _record_sha(vectors, "rms_norm", "float32")
    manifest = load_manifest(vectors)
    with pytest.raises(VectorFormatError, match=message) as info:
        next(manifest.cases("rms_norm", "float32"))
    assert _one_line(info.value).startswith(f"{path}: ")


def test_unreadable_manifest_is_one_line_naming_it(vectors: Path) -> None:
    (vectors / "manifest.json").unlink()
    (vectors / "manifest.json").mkdir()
    with pytest.raises(VectorFormatError) as info:
        load_manifest(vectors)
    assert _one_line(info.value).startswith(f"{vectors / 'manifest.json'}: ")


def test_check_reports_a_missing_file_naming_it(vectors: Path) -> None:
    (vectors / "rms_norm" / "float16.safetensors").unlink()
    result = check(vectors, ("rms_norm",))
    assert [p for p in result.problems if "cannot be read" in p] == [
        f"{vectors / 'rms_norm' / 'float16.safetensors'}: cannot be read (No such file or "
        "directory)"]
