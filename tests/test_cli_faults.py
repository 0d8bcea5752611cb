"""Faults and bad input at the command line: each ends in one clear line or correct handling,
never in a green run by accident, a lost report or a traceback."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from fakes.signals import run_then_sigterm
from fakes.vectors import build_vectors
from normspec.conformance.cli import main
from normspec.conformance.reports import validate_report, write_json
from normspec.conformance.results import Report


@pytest.fixture(scope="module")
def vectors(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_vectors(tmp_path_factory.mktemp("vectors"))


def _run(vectors: Path, *extra: str) -> int:
    return main(["run", "--adapter", "fakes.adapters:REFERENCE", "--method", "layer_norm",
                 "--dtype", "float32", "--vectors", str(vectors), "--no-progress", *extra])


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith("normspec: error: "), err
    return err


def test_vector_error_writes_a_failed_report(vectors: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    copy = shutil.copytree(vectors, tmp_path / "vectors")
    target = copy / "layer_norm" / "float32.safetensors"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0x01
    target.write_bytes(bytes(data))
    report = tmp_path / "r.json"
    assert _run(copy, "--json", str(report)) == 2
    doc = json.loads(report.read_text())
    validate_report(doc)
    assert doc["summary"]["ok"] is False
    assert "sha256" in doc["meta"]["aborted"]


def test_device_no_adapter_has_fails_instead_of_passing(vectors: Path, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    assert _run(vectors, "--device", "cuda", "--json", str(report)) == 1
    doc = json.loads(report.read_text())
    assert doc["summary"]["ok"] is False
    assert doc["summary"]["skip"] == doc["summary"]["total"] > 0
    assert doc["meta"]["aborted"].startswith("no check ran")


@pytest.mark.parametrize("device", ["", " cpu", "cu da"], ids=["empty", "space", "inner-space"])
def test_malformed_device_is_a_usage_error(vectors: Path, device: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _run(vectors, "--device", device)
    assert info.value.code == 2
    assert "expected a device name" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["inf", "1e300", "nan", "0", "-1"])
def test_timeout_out_of_range_is_a_usage_error(vectors: Path, value: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _run(vectors, "--timeout", value)
    assert info.value.code == 2
    assert "expected a number of seconds in (0, 86400]" in capsys.readouterr().err


def test_one_path_for_two_reports_is_refused(vectors: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "r.out")
    assert _run(vectors, "--json", path, "--markdown", path) == 2
    assert "--json and --markdown both write" in _one_line(capsys)
    assert not Path(path).exists()


def test_report_under_a_regular_file_is_refused_before_the_run(
        vectors: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert _run(vectors, "--json", str(blocker / "r.json")) == 2
    assert f"{blocker} is not a directory" in _one_line(capsys)


def test_report_path_that_is_a_directory_is_refused(vectors: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(vectors, "--junit", str(tmp_path)) == 2
    assert "it is a directory" in _one_line(capsys)


def test_missing_ledger_dir_is_refused(vectors: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(vectors, "--ledger-dir", str(tmp_path / "nope")) == 2
    assert "does not exist" in _one_line(capsys)


def test_ledger_path_that_is_a_directory_is_refused(vectors: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "fake_reference.toml").mkdir()
    assert _run(vectors, "--ledger-dir", str(tmp_path)) == 2
    assert "fake_reference.toml: is not a regular file" in _one_line(capsys)


def test_ledger_that_is_not_utf8_is_named(vectors: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "fake_reference.toml").write_bytes(b"# caf\xe9\n")
    assert _run(vectors, "--ledger-dir", str(tmp_path)) == 2
    line = _one_line(capsys)
    assert "fake_reference.toml: is not UTF-8" in line


def test_reports_are_written_atomically(tmp_path: Path) -> None:
    # The previous content stays whole until the new file replaces it; no temporary file stays.
    path = tmp_path / "r.json"
    path.write_text('{"old": true}')
    write_json(Report(meta={"x": 1}), path)
    assert json.loads(path.read_text())["meta"] == {"x": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    # a new report is readable by others as a plain open() would make it, not private
    fresh = tmp_path / "new.json"
    mask = os.umask(0o022)
    try:
        write_json(Report(meta={}), fresh)
    finally:
        os.umask(mask)
    assert fresh.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("delay", [0.3, 0.8, 1.5])
def test_sigterm_in_the_first_second_gives_a_report_and_130(vectors: Path, tmp_path: Path,
                                                            delay: float) -> None:
    report = tmp_path / "r.json"
    # the delay lands inside the start-up: imports, manifest, worker spawn
    status, err = run_then_sigterm(["--adapter", "fakes.adapters:REFERENCE", "--vectors",
                                    str(vectors), "--no-progress", "--json", str(report)], delay)
    assert status == 130, err
    assert "Traceback" not in err
    if report.exists():  # a signal before the argument parser ran has no report path yet
        doc = json.loads(report.read_text())
        validate_report(doc)
        assert doc["meta"]["interrupted"] is True


def test_report_in_a_folder_where_no_file_can_be_created_is_refused(
        vectors: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # /proc/self accepts no new files, even for root (for whom os.access says yes)
    if not Path("/proc/self").is_dir():
        pytest.skip("needs /proc")
    assert _run(vectors, "--json", "/proc/self/r.json") == 2
    assert "is not writable" in _one_line(capsys)


def test_sigterm_during_a_concurrent_run_keeps_the_finished_results(vectors: Path,
                                                                    tmp_path: Path) -> None:
    # Two adapters at once: one hangs, one finishes; the interrupt stops both, and the report
    # keeps what finished, in adapter order, with no result of a killed worker in it.
    report = tmp_path / "r.json"
    status, err = run_then_sigterm(
        ["--adapter", "fakes.adapters:HANGING", "--adapter", "fakes.adapters:REFERENCE",
         "--jobs", "2", "--method", "layer_norm", "--dtype", "float32", "--vectors",
         str(vectors), "--no-progress", "--json", str(report)], 6)
    assert status == 130, err
    doc = json.loads(report.read_text())
    validate_report(doc)
    assert doc["meta"]["interrupted"] is True
    by_adapter = [r["adapter"] for r in doc["results"]]
    assert by_adapter == sorted(by_adapter, key=["fake_hanging", "fake_reference"].index)
    assert "fake_reference" in by_adapter
    assert not any("worker was closed" in r["message"] for r in doc["results"])
