"""The golden vectors: readable without normspec, integrity-checked, reproducible, installable.

The committed vectors (spec/vectors) are the thing under test; a session-scoped rebuild in a
temporary directory is what ``normspec vectors check`` compares them with.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from normspec import reference
from normspec.conformance import cli_vectors
from normspec.conformance.vectors import VectorFormatError, load_manifest
from normspec.conformance.vectors.check import compare, ulp_distance
from normspec.conformance.vectors.generate import SIZE_BUDGET, build, write
from normspec.reference import batch_norm
from safetensors import safe_open

REPO = Path(__file__).resolve().parents[1]
VECTORS = REPO / "spec" / "vectors"
DTYPES = ("float64", "float32", "float16", "bfloat16")


def _manifest_json() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / "manifest.json").read_text())
    return data


def _within_1ulp(got: np.ndarray, want: np.ndarray) -> bool:
    if got.shape != want.shape or not np.array_equal(np.isnan(got), np.isnan(want)):
        return False
    finite = np.isfinite(want)
    if not np.array_equal(got[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)]):
        return False
    gap = np.spacing(np.maximum(np.abs(got[finite]), np.abs(want[finite])))
    return bool(np.all(np.abs(got[finite] - want[finite]) <= gap))


# --- reading with safetensors and json only ------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", reference.METHODS)
def test_vector_read_with_safetensors_and_json_matches_the_reference(method: str,
                                                                     dtype: str) -> None:
    # Reading path: json + hashlib + safetensors only, as a non-normspec user would.
    manifest = _manifest_json()
    entry = manifest["methods"][method]
    file_entry = entry["dtypes"][dtype]
    path = VECTORS / file_entry["file"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == file_entry["sha256"]
    case = next(c for c in entry["cases"] if "trajectory" not in c
                and c["name"] in {r["name"] for r in file_entry["cases"]})
    name = case["name"]
    with safe_open(str(path), framework="np") as f:
        names = f.keys()
        tensors = {k: f.get_tensor(k) for k in names if k.startswith(name + "/")}
    inputs = {n: tensors[f"{name}/inputs/{n}"] for n in case["inputs"]}
    for n, spec in case["inputs"].items():
        element = dtype if spec["element"] == "float" else spec["element"]
        assert str(inputs[n].dtype) == element, (n, inputs[n].dtype)
    args = [inputs.get(p) for p in entry["primals"]]
    state = {n: inputs[n] for n in (*case["state"], *case["constants"])}
    module = reference.get(method)
    with np.errstate(all="ignore"):
        fwd = module.forward(*args, **state, **case["hyper"])
        vjp = module.vjp(*args, cotangent=tensors[f"{name}/cotangent"], **state, **case["hyper"])
        tangent = {n: tensors[f"{name}/tangent/{n}"] for n in case["tangents"]}
        declared = entry.get("not_applicable", {})  # checks the method has no quantity for
        jvp = ({} if "jvp" in declared
               else {"jvp": module.jvp(*args, tangent=tangent, **state, **case["hyper"])})
    direct = {**{f"forward/{k}": v for k, v in fwd.items()},
              **{f"vjp/{k}": v for k, v in vjp.items()}, **jvp}
    for quantity, value in direct.items():
        stored = tensors[f"{name}/{quantity}"]
        assert stored.dtype == np.float64
        assert _within_1ulp(stored, value), f"{method} {dtype} {name}: {quantity}"


def test_a_trajectory_read_with_safetensors_and_json_replays_the_reference() -> None:
    manifest = _manifest_json()
    entry = manifest["methods"]["batch_norm"]
    case = next(c for c in entry["cases"] if c["name"] == "traj-cumulative-biased")
    name = case["name"]
    with safe_open(str(VECTORS / "batch_norm" / "float32.safetensors"), framework="np") as f:
        keys = f.keys()
        tensors = {k: f.get_tensor(k) for k in keys if k.startswith(name + "/")}
    assert f"{name}/inputs/x" not in tensors
    assert tensors[f"{name}/inputs/num_batches_tracked"].dtype == np.int64
    weight, bias = tensors[f"{name}/inputs/weight"], tensors[f"{name}/inputs/bias"]
    state: dict[str, Any] = {n: tensors[f"{name}/inputs/{n}"] for n in case["state"]}
    for step in case["trajectory"]:
        label = step["label"]
        x = tensors[f"{name}/{label}/x"]
        assert list(x.shape) == step["shape"]
        out = batch_norm.forward(x, weight, bias, **state, **step["hyper"])
        assert _within_1ulp(tensors[f"{name}/forward/{label}/y"], out["y"])
        if step["hyper"]["training"]:
            state = {"running_mean": tensors[f"{name}/forward/{label}/running_mean"],
                     "running_var": tensors[f"{name}/forward/{label}/running_var"],
                     "num_batches_tracked": int(
                         tensors[f"{name}/forward/{label}/num_batches_tracked"])}
    assert label == "eval"


@pytest.mark.parametrize(("method", "tensor"), [
    ("layer_norm", "axis=0-1d/forward/mean"),
    ("batch_norm", "train-torch-ncl/forward/num_batches_tracked"),
])
def test_scalar_quantities_keep_shape_empty(method: str, tensor: str) -> None:
    path = VECTORS / method / "float32.safetensors"
    with safe_open(str(path), framework="np") as f:
        value = f.get_tensor(tensor)
    assert value.shape == ()


def test_bfloat16_is_the_upper_half_of_float32() -> None:
    """FORMAT.md's recipe: widen BF16 bits by 16 and reinterpret as float32."""
    path = VECTORS / "layer_norm" / "bfloat16.safetensors"
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    name = "normal-n=7/inputs/x"
    begin, end = header[name]["data_offsets"]
    assert header[name]["dtype"] == "BF16"
    bits = np.frombuffer(raw[8 + n + begin:8 + n + end], dtype="<u2").astype(np.uint32) << 16
    widened = bits.view(np.float32).reshape(header[name]["shape"])
    with safe_open(str(path), framework="np") as f:
        loaded = f.get_tensor(name)
    np.testing.assert_array_equal(widened, loaded.astype(np.float32))
    assert json.loads(header["__metadata__"]["normspec"]) == {
        "dtype": "bfloat16", "format_version": 2, "method": "layer_norm"}


# --- the loader ----------------------------------------------------------------------------


def test_loader_returns_exact_float64_inputs_and_classes() -> None:
    manifest = load_manifest()
    case = manifest.case("batch_norm", "float16", "eval-ncl")
    assert case.id == "batch_norm[eval-ncl]-float16"
    assert set(case.inputs) == {"x", "weight", "bias", "running_mean", "running_var",
                                "num_batches_tracked"}
    assert case.inputs["num_batches_tracked"].dtype == np.int64
    assert set(case.state) == {"running_mean", "running_var", "num_batches_tracked"}
    floats = [v for k, v in case.inputs.items() if k != "num_batches_tracked"]
    for value in (*floats, case.cotangent, *case.tangent.values()):
        assert value.dtype == np.float64
        np.testing.assert_array_equal(value.astype(np.float16).astype(np.float64), value)
    assert case.args[0] is case.inputs["x"]
    assert case.tolerance == {"forward/y": "output", "vjp/x": "input_grad",
                              "vjp/weight": "param_grad", "vjp/bias": "param_grad",
                              "jvp": "jvp", "second_order/x": "second_order",
                              "second_order/weight": "second_order",
                              "second_order/bias": "second_order"}
    assert set(case.by_check) == {"forward", "vjp", "jvp", "second_order"}
    np.testing.assert_array_equal(case.by_check["jvp"]["y"], case.jvp)


def test_loader_rejects_unknown_method_and_dtype() -> None:
    manifest = load_manifest()
    with pytest.raises(ValueError, match=r"argument 'method': got 'foo_norm'"):
        list(manifest.cases("foo_norm", "float32"))
    with pytest.raises(ValueError, match=r"argument 'dtype': got 'float8'"):
        list(manifest.cases("layer_norm", "float8"))


def test_overflowing_cases_are_recorded_as_skipped() -> None:
    skipped = dict(load_manifest().skipped("layer_norm", "float16"))
    assert "overflows" in skipped["offset_1e5"]
    assert "65504" in skipped["offset_1e5"]


def test_unexpected_nonfinite_output_fails_the_build(tmp_path: Path) -> None:
    (tmp_path / "rms_norm.toml").write_text(textwrap.dedent("""
        method = "rms_norm"
        [[case]]
        name = "zeros-eps=0"
        seed = 1
        shape = [2, 3]
        hyper = { axis = -1, eps = 0.0 }
        inputs = { x = { dist = "constant", value = 0.0 } }
    """))
    with pytest.raises(ValueError, match=r"rms_norm\.toml: case 'zeros-eps=0' \(float64\): "
                                         r"forward/y has NaN/Inf although every input is finite"):
        build(["rms_norm"], cases_root=tmp_path)


def test_committed_vectors_fit_the_size_budget() -> None:
    files = list(VECTORS.glob("*/*.safetensors"))
    listed = {e["file"] for m in _manifest_json()["methods"].values()
              for e in m["dtypes"].values()}
    assert {p.relative_to(VECTORS).as_posix() for p in files} == listed
    assert len(listed) == len(reference.METHODS) * len(DTYPES)
    total = sum(p.stat().st_size for p in files) + (VECTORS / "manifest.json").stat().st_size
    assert total <= SIZE_BUDGET


def test_importing_the_loader_does_not_import_the_generator() -> None:
    code = ("import sys, normspec.conformance.vectors as v; "
            "print('normspec.conformance.vectors.generate' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


# --- corruption ----------------------------------------------------------------------------


def _broken(data: dict[str, Any], how: str) -> None:
    layer = data["methods"]["layer_norm"]
    if how == "format_version":
        data["format_version"] = 3
    elif how == "missing-field":
        del data["tolerance_classes"]
    elif how == "sha256":
        layer["dtypes"]["float32"]["sha256"] = "not-a-hash"
    elif how == "tolerance-class":
        layer["cases"][0]["quantities"]["forward/y"] = "loose"
    elif how == "extra-field":
        data["note"] = "hello"
    elif how == "lost-case":
        layer["dtypes"]["float32"]["cases"].pop()
    elif how == "moved-file":
        layer["dtypes"]["float32"]["file"] = "rms_norm/float32.safetensors"


@pytest.mark.parametrize(("how", "where"), [
    ("format_version", "format version 3, but this normspec reads format version 2"),
    ("missing-field", "(top level)"),
    ("sha256", "methods/layer_norm/dtypes/float32/sha256"),
    ("tolerance-class", "methods/layer_norm/cases/0/quantities/forward/y"),
    ("extra-field", "(top level)"), ("lost-case", "methods/layer_norm/dtypes/float32"),
    ("moved-file", "methods/layer_norm/dtypes/float32/file"),
])
def test_broken_manifest_is_rejected(tmp_path: Path, how: str, where: str) -> None:
    data = _manifest_json()
    _broken(data, how)
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(VectorFormatError) as info:
        load_manifest(tmp_path)
    assert str(info.value).startswith(str(tmp_path / "manifest.json"))
    assert where in str(info.value)


def test_manifest_that_is_not_json_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(VectorFormatError, match=r"manifest\.json: not valid JSON"):
        load_manifest(tmp_path)


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every method rebuilt from the catalogs, once for this module."""
    out = tmp_path_factory.mktemp("rebuilt")
    manifest, files = build()
    write(out, manifest, files)
    return out


@pytest.fixture
def vectors_copy(tmp_path: Path, rebuilt: Path) -> Path:
    """A copy of the rebuild to tamper with: equal to ``rebuilt`` until a test changes it,
    whether or not the committed vectors are current."""
    target = tmp_path / "vectors"
    shutil.copytree(rebuilt, target)
    return target


def _flip_byte(path: Path, offset_from_end: int = 1) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x40
    path.write_bytes(bytes(data))


def test_tampered_file_fails_its_sha256(vectors_copy: Path) -> None:
    _flip_byte(vectors_copy / "layer_norm" / "float32.safetensors")
    manifest = load_manifest(vectors_copy)
    with pytest.raises(VectorFormatError, match=r"layer_norm/float32\.safetensors: sha256 "
                                                r"[0-9a-f]{64} does not match"):
        next(manifest.cases("layer_norm", "float32"))
    assert next(manifest.cases("layer_norm", "float64")).dtype == "float64"


# --- vectors check -------------------------------------------------------------------------


def test_committed_vectors_match_a_rebuild(rebuilt: Path) -> None:
    result = compare(load_manifest(), load_manifest(rebuilt))
    assert result.problems == []
    assert result.tensors > 1000
    assert result.max_ulp <= 1


def _rewrite(path: Path, manifest_path: Path, method: str, dtype: str, tensor: str,
             change: Any) -> None:
    """Change one element of ``tensor`` and record the new sha256, so only ``check`` sees it."""
    from safetensors.numpy import save

    with safe_open(str(path), framework="np") as f:
        names = f.keys()
        tensors = {k: f.get_tensor(k).copy() for k in names}
        metadata = f.metadata()
    tensors[tensor].flat[0] = change(tensors[tensor].flat[0])
    data = save(tensors, metadata=metadata)
    path.write_bytes(data)
    manifest = json.loads(manifest_path.read_text())
    manifest["methods"][method]["dtypes"][dtype]["sha256"] = hashlib.sha256(data).hexdigest()
    manifest_path.write_text(json.dumps(manifest))


@pytest.mark.parametrize(("dtype", "tensor", "change", "message"), [
    ("float64", "normal-n=7/forward/y", lambda v: v + 0.5, "differ by more than 1 ulp"),
    ("float32", "huge/vjp/x", lambda v: -v, "differ by more than 1 ulp"),
    ("bfloat16", "offset_1e3/inputs/x", lambda v: -v, "differ bitwise"),
    ("float16", "tiny/tangent/x", lambda v: v * 2, "differ bitwise"),
    ("float64", "nan/forward/mean", lambda v: 0.0 if np.isnan(v) else np.nan, "NaN/Inf differ"),
])
def test_check_names_file_case_and_tensor_of_a_flipped_element(
        rebuilt: Path, vectors_copy: Path, dtype: str, tensor: str, change: Any,
        message: str) -> None:
    _rewrite(vectors_copy / "layer_norm" / f"{dtype}.safetensors",
             vectors_copy / "manifest.json", "layer_norm", dtype, tensor, change)
    result = compare(load_manifest(vectors_copy), load_manifest(rebuilt))
    case = tensor.split("/")[0]
    assert len(result.problems) == 1
    assert f"layer_norm/{dtype}.safetensors: case {case!r}, tensor {tensor!r}" in (
        result.problems[0])
    assert message in result.problems[0]


def test_check_reports_a_changed_manifest_field(rebuilt: Path, vectors_copy: Path) -> None:
    manifest = json.loads((vectors_copy / "manifest.json").read_text())
    manifest["methods"]["rms_norm"]["cases"][0]["hyper"]["eps"] = 1e-5
    (vectors_copy / "manifest.json").write_text(json.dumps(manifest))
    result = compare(load_manifest(vectors_copy), load_manifest(rebuilt))
    assert result.problems == [f"{vectors_copy / 'manifest.json'}: methods/rms_norm/cases[0]/"
                               "hyper/eps: committed 1e-05, rebuilt 1e-06"]


def test_check_reports_a_method_missing_from_the_committed_set(rebuilt: Path,
                                                               vectors_copy: Path) -> None:
    manifest = json.loads((vectors_copy / "manifest.json").read_text())
    del manifest["methods"]["lp_norm"]
    (vectors_copy / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(vectors_copy / "lp_norm")
    result = compare(load_manifest(vectors_copy), load_manifest(rebuilt))
    assert result.problems == [f"{vectors_copy / 'manifest.json'}: methods/lp_norm: only in the "
                               "rebuild"]
    assert compare(load_manifest(vectors_copy), load_manifest(rebuilt), partial=True).ok is False


def test_check_reports_stray_files(rebuilt: Path, vectors_copy: Path) -> None:
    shutil.copy(vectors_copy / "lp_norm" / "float32.safetensors",
                vectors_copy / "lp_norm" / "float8.safetensors")
    result = compare(load_manifest(vectors_copy), load_manifest(rebuilt))
    assert result.problems == [f"{vectors_copy / 'lp_norm' / 'float8.safetensors'}: not listed "
                               "in manifest.json"]


def test_ulp_distance() -> None:
    one = np.array([1.0, 0.0, -1.0, 5e-324, 1.0])
    other = np.array([np.nextafter(1.0, 2.0), -0.0, -np.nextafter(1.0, 2.0), -5e-324, 1.0])
    assert ulp_distance(one, other).tolist() == [1, 0, 1, 2, 0]


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="normspec")
    cli_vectors.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    status: int = args.func(args)
    return status


def test_cli_check_passes_on_the_committed_vectors(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(["vectors", "check", "--method", "rms_norm"]) == 0
    assert "vectors check: OK" in capsys.readouterr().out


def test_cli_check_fails_on_a_tampered_copy(vectors_copy: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    _rewrite(vectors_copy / "rms_norm" / "float32.safetensors", vectors_copy / "manifest.json",
             "rms_norm", "float32", "huge/forward/rrms", lambda v: v * 1.5)
    status = _cli(["vectors", "check", "--method", "rms_norm", "--vectors", str(vectors_copy)])
    err = capsys.readouterr().err
    assert status == 1
    assert "rms_norm/float32.safetensors: case 'huge', tensor 'huge/forward/rrms'" in err
    assert "vectors check: FAILED, 1 mismatch(es)" in err


def test_cli_check_fails_on_a_broken_sha(vectors_copy: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    _flip_byte(vectors_copy / "rms_norm" / "float16.safetensors")
    status = _cli(["vectors", "check", "--method", "rms_norm", "--vectors", str(vectors_copy)])
    assert status == 1
    assert "rms_norm/float16.safetensors: sha256" in capsys.readouterr().err


def test_cli_build_writes_a_loadable_set(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(["vectors", "build", "--out", str(tmp_path), "--method", "lp_norm"]) == 0
    assert "lp_norm" in capsys.readouterr().out
    manifest = load_manifest(tmp_path)
    assert manifest.methods == ("lp_norm",)
    assert sorted(p.name for p in (tmp_path / "lp_norm").iterdir()) == sorted(
        f"{d}.safetensors" for d in DTYPES)


def test_cli_rejects_an_unknown_method() -> None:
    from normspec.conformance.cli import UsageError

    with pytest.raises(UsageError, match=r"--method: unknown method\(s\) \['foo_norm'\]"):
        _cli(["vectors", "build", "--method", "foo_norm"])


# --- an installed wheel finds its vectors --------------------------------------------------


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built as a wheel and unpacked like an installation, outside the repo."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("reference", "adapters", "conformance", "spec"):
        shutil.copytree(REPO / package, src / package, ignore=ignore)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--no-index", "-q", "-w", str(root / "dist"), str(src)],
                   check=True, capture_output=True)
    (wheel,) = (root / "dist").glob("normspec-*.whl")
    site = root / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


def test_installed_wheel_loads_its_vectors(installed_wheel: Path, tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import normspec.spec, normspec.conformance.vectors as v
        m = v.load_manifest()
        case = next(m.cases("group_norm", "bfloat16"))
        print(normspec.spec.__file__)
        print(m.source, case.id, case.expected["forward/y"].shape)
    """)
    # -S: no site-packages .pth files, so the repo's editable install cannot answer; the
    # dependencies come from the venv's site-packages on PYTHONPATH, normspec from the wheel.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(installed_wheel), sysconfig.get_paths()["purelib"]])}
    out = subprocess.run([sys.executable, "-S", "-c", script], capture_output=True, text=True,
                         env=env, cwd=tmp_path, check=False)
    assert out.returncode == 0, out.stderr
    location, loaded = out.stdout.splitlines()
    assert Path(location).is_relative_to(installed_wheel)
    assert "manifest.json" in loaded
    assert "group_norm[" in loaded
    assert "-bfloat16" in loaded
