"""``normspec run`` end to end: exit status, the JSON/JUnit/Markdown reports, usage errors,
interruption, ``normspec list`` and the adapter-author example."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
from fakes import adapters as fake_adapters
from fakes.adapters import ReferenceAdapter
from fakes.compare import strict_compare
from fakes.signals import run_then_sigterm
from fakes.vectors import build_vectors, case_names
from normspec import reference
from normspec.adapters import Support, registry
from normspec.conformance import runner
from normspec.conformance.cli import main
from normspec.conformance.reports import markdown, validate_report
from normspec.conformance.results import Report, Result

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "minimal_adapter.py"


@pytest.fixture(scope="module")
def vectors(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_vectors(tmp_path_factory.mktemp("vectors"))


@pytest.fixture
def strict(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compare with the strict stand-in, so these tests exercise the plumbing only."""
    monkeypatch.setattr(runner, "default_compare", lambda: strict_compare)


def _first(vectors: Path) -> str:
    return case_names(vectors, "layer_norm", "float32")[0]


def _cli(vectors: Path, adapter: str, tmp_path: Path, *extra: str) -> int:
    return main(["run", "--adapter", adapter, "--method", "layer_norm", "--dtype", "float32",
                 "--case", _first(vectors), "--vectors", str(vectors), "--no-progress",
                 "--json", str(tmp_path / "r.json"), "--junit", str(tmp_path / "r.xml"),
                 "--markdown", str(tmp_path / "r.md"), *extra])


def _json(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "r.json").read_text())


@pytest.mark.usefixtures("strict")
def test_passing_run_exits_0_with_valid_reports(vectors: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(vectors, "fakes.adapters:REFERENCE", tmp_path) == 0
    doc = _json(tmp_path)
    validate_report(doc)
    assert doc["format"] == "normspec-report/1.2"
    assert doc["summary"] == {"pass": 4, "fail": 0, "error": 0, "skip": 0, "xfail": 0,
                              "xpass": 0, "not_applicable": 0, "total": 4, "ok": True}
    first = doc["results"][0]
    assert first["id"] == f"layer_norm[{_first(vectors)}]-float32-forward"
    assert first["versions"] == {"numpy": first["versions"]["numpy"], "fake": "1"}
    assert doc["meta"]["wall_time_s"] > 0
    assert doc["adapters"][0]["name"] == "fake_reference"
    suites = ET.parse(tmp_path / "r.xml").getroot()
    assert suites.tag == "testsuites"
    assert suites.get("tests") == "4"
    assert suites.get("failures") == "0"
    md = (tmp_path / "r.md").read_text()
    assert ("| method | dtype | device | pass | fail | xfail | xpass | error | skip | n/a |"
            in md)
    assert "| layer_norm | float32 | cpu | 4 | 0 | 0 | 0 | 0 | 0 | 0 |" in md
    out = capsys.readouterr().out
    assert "normspec conformance summary" in out
    assert "PASSED" in out


@pytest.mark.usefixtures("strict")
def test_failing_run_exits_1_and_reports_the_failure(vectors: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(vectors, "fakes.adapters:OFF", tmp_path) == 1
    out = capsys.readouterr().out
    # The failure heads the summary with its full id (brackets are not eaten as markup).
    assert f"FAIL fake_off layer_norm[{_first(vectors)}]-float32-jvp" in out
    assert "Reproduce: normspec run --adapter fakes.adapters:OFF" in out
    doc = _json(tmp_path)
    validate_report(doc)
    assert doc["summary"]["fail"] == 1
    assert doc["summary"]["ok"] is False
    failure = next(r for r in doc["results"] if r["status"] == "fail")
    assert failure["check"] == "jvp"
    assert failure["headroom"] > 1
    assert failure["quantities"][0]["name"] == "jvp"
    cases = ET.parse(tmp_path / "r.xml").getroot().iter("testcase")
    failed = [c for c in cases if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == [failure["id"]]
    assert failure["repro"] in failed[0].findtext("failure", "")
    md = (tmp_path / "r.md").read_text()
    assert f"<code>{failure['id']}</code> (fail)" in md


@pytest.mark.usefixtures("strict")
def test_crashing_adapter_exits_1_and_reports_are_written(vectors: Path,
                                                          tmp_path: Path) -> None:
    assert _cli(vectors, "fakes.adapters:SEGFAULTING", tmp_path) == 1
    doc = _json(tmp_path)
    validate_report(doc)
    assert [r["status"] for r in doc["results"]] == ["pass", "pass", "error", "pass"]
    errors = ET.parse(tmp_path / "r.xml").getroot().findall(".//testcase/error")
    assert len(errors) == 1
    assert "SIGSEGV" in (errors[0].text or "")


@pytest.mark.usefixtures("strict")
def test_xpass_exits_1(vectors: Path, tmp_path: Path) -> None:
    ledgers = tmp_path / "ledgers"
    ledgers.mkdir()
    (ledgers / "fake_reference.toml").write_text(
        f'[[xfail]]\nid = "layer_norm[{_first(vectors)}]-float32-jvp"\n'
        'reason = "stale entry"\nevidence = "https://example.invalid/1"\n')
    assert _cli(vectors, "fakes.adapters:REFERENCE", tmp_path, "--ledger-dir",
                str(ledgers)) == 1
    doc = _json(tmp_path)
    assert doc["summary"]["xpass"] == 1
    failures = ET.parse(tmp_path / "r.xml").getroot().findall(".//testcase/failure")
    assert [f.get("type") for f in failures] == ["xpass"]


@pytest.mark.usefixtures("strict")
def test_interrupt_writes_the_reports_so_far(vectors: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    original = runner.AdapterSession.run_case
    calls = []

    def interrupt_second(self: runner.AdapterSession, planned: runner.PlannedCase) -> list:
        calls.append(planned)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, planned)

    monkeypatch.setattr(runner.AdapterSession, "run_case", interrupt_second)
    rc = main(["run", "--adapter", "fakes.adapters:REFERENCE", "--method", "layer_norm",
               "--dtype", "float32", "--vectors", str(vectors), "--no-progress",
               "--json", str(tmp_path / "r.json"), "--junit", str(tmp_path / "r.xml")])
    assert rc == 130
    doc = _json(tmp_path)
    validate_report(doc)
    assert doc["meta"]["interrupted"] is True
    assert doc["summary"]["ok"] is False
    assert doc["summary"]["total"] == 4  # the first case's checks only
    ET.parse(tmp_path / "r.xml")


def test_sigterm_writes_the_reports_so_far(vectors: Path, tmp_path: Path) -> None:
    # A CI job's timeout sends SIGTERM: the run stops like Ctrl-C and still writes its report.
    report = tmp_path / "r.json"
    status, err = run_then_sigterm(
        ["--adapter", "fakes.adapters:HANGING", "--method", "layer_norm", "--dtype", "float32",
         "--vectors", str(vectors), "--no-progress", "--json", str(report)], 3)
    assert status == 130, err
    doc = json.loads(report.read_text())
    validate_report(doc)
    assert doc["meta"]["interrupted"] is True


def _stderr_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


@pytest.mark.parametrize(("args", "text"), [
    (["--adapter", "no_such_adapter"], "unknown adapter 'no_such_adapter'"),
    (["--adapter", "fakes.adapters:REFERENCE", "--method", "no_norm"],
     "unknown method 'no_norm'"),
    (["--adapter", "fakes.adapters:NOT_AN_ADAPTER"], "expected an object implementing"),
    (["--adapter", "no_such_module:ADAPTER"], "module 'no_such_module' not found"),
    (["--adapter", "fakes.adapters:NO_SUCH_ATTRIBUTE"], "has no attribute 'NO_SUCH_ATTRIBUTE'"),
    (["--adapter", "fakes.adapters:REFERENCE", "--device", "cdua"], "unknown device 'cdua'"),
    (["--adapter", "fakes.adapters:REFERENCE", "--adapter", "fakes.adapters:ReferenceAdapter"],
     "are both named 'fake_reference'"),
], ids=["adapter", "method", "not-an-adapter", "no-module", "no-attribute", "device",
        "same-name"])
def test_unknown_names_exit_2_with_one_line(vectors: Path, args: list[str], text: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["run", *args, "--vectors", str(vectors), "--no-progress"])
    assert rc == 2
    line = _stderr_line(capsys)
    assert line.startswith("normspec: error: ")
    assert text in line


def test_unknown_dtype_is_rejected_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "--dtype", "float8"])
    assert info.value.code == 2
    assert "float8" in capsys.readouterr().err


def test_tampered_vector_file_exits_2_naming_it(vectors: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    copy = shutil.copytree(vectors, tmp_path / "vectors")
    target = copy / "layer_norm" / "float32.safetensors"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0x01
    target.write_bytes(bytes(data))
    rc = main(["run", "--adapter", "fakes.adapters:REFERENCE", "--vectors", str(copy),
               "--dtype", "float32", "--no-progress"])
    assert rc == 2
    line = _stderr_line(capsys)
    assert "float32.safetensors" in line
    assert "sha256" in line


def test_manifest_failing_its_schema_exits_2_naming_it(vectors: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    copy = shutil.copytree(vectors, tmp_path / "vectors")
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["format_version"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    rc = main(["run", "--adapter", "fakes.adapters:REFERENCE", "--vectors", str(copy),
               "--no-progress"])
    assert rc == 2
    assert "manifest.json" in _stderr_line(capsys)


def test_broken_ledger_exits_2_naming_the_file(vectors: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "fake_reference.toml").write_text('[[xfail]]\nid = "nope"\n')
    rc = _cli(vectors, "fakes.adapters:REFERENCE", tmp_path, "--ledger-dir", str(tmp_path))
    assert rc == 2
    assert "fake_reference.toml" in _stderr_line(capsys)


def test_schema_rejects_a_result_with_an_unknown_status() -> None:
    report = Report(meta={"normspec_version": "0", "platform": "p", "python": "3", "hostname": "",
                          "started": "", "finished": "", "wall_time_s": 0.0,
                          "interrupted": False, "argv": [], "device": "cpu", "selection": {}})
    report.results.append(Result(adapter="a", device="cpu", method="layer_norm", case="c",
                                 dtype="float32", check="vjp", status="pass",
                                 error=float("nan"), headroom=float("inf")))
    doc = report.to_dict()
    validate_report(doc)
    assert doc["results"][0]["error"] is None  # NaN is not JSON: unmeasurable is null
    doc["results"][0]["status"] = "maybe"
    with pytest.raises(jsonschema.ValidationError):
        validate_report(doc)


def test_markdown_lists_xfails_with_their_reason() -> None:
    report = Report(meta={})
    report.results.append(Result(adapter="a", device="cpu", method="layer_norm", case="c",
                                 dtype="float16", check="vjp", status="xfail",
                                 ledger="known | issue (evidence: x)"))
    text = markdown(report)
    assert "## Expected failures (ledger, 1)" in text
    assert "| a | `layer_norm[c]-float16-vjp` | known \\| issue (evidence: x) |" in text


def test_list_shows_methods_adapters_and_support(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import EntryPoint

    eps = {n: EntryPoint(name=n, value=v, group=registry.GROUP) for n, v in (
        ("fake", "fakes.adapters:NO_HALF"), ("broken", "fakes.adapters:broken_factory"))}
    monkeypatch.setattr(registry, "_entry_points", lambda: eps)
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "layer_norm" in out
    assert "Layer normalization" in out  # the method's one-line description
    assert "fake_no_half" in out
    assert "composed" in out
    assert "unsupported: no float16 kernels in this fake (batch_norm float16, ...)" in out
    assert "unavailable: ImportError: deliberately missing dependency" in out


def test_list_shows_every_method_of_the_scope_with_its_text_unmangled(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(registry, "_entry_points", lambda: {})
    monkeypatch.setattr(reference, "NOT_YET_SPECIFIED", {"planned_norm": "why it [waits]"})
    assert main(["list"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for m in reference.METHODS:
        assert m in out
    # a description's square brackets are text, not console markup
    assert "``[range_min, range_max]``" in out
    assert "planned_norm" in out
    assert "not yet specified: why it [waits]" in out


def test_list_shows_forward_only_adapters_and_support_errors_with_their_type(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import EntryPoint

    class RaisingSupport(ReferenceAdapter):
        name = "raising_support"

        def support(self, method: str, dtype: str, device: str) -> Support:
            raise KeyError(method)

    monkeypatch.setattr(fake_adapters, "RAISING_SUPPORT", RaisingSupport(), raising=False)
    eps = {n: EntryPoint(name=n, value=v, group=registry.GROUP) for n, v in (
        ("fwd", "fakes.adapters:FORWARD_ONLY"), ("raising", "fakes.adapters:RAISING_SUPPORT"))}
    monkeypatch.setattr(registry, "_entry_points", lambda: eps)
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "composed (forward only)" in out
    assert "this fake runtime computes no derivatives" in out
    assert "error: KeyError: 'layer_norm'" in out


@pytest.fixture(scope="module")
def rms_vectors(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_vectors(tmp_path_factory.mktemp("rms"), ("rms_norm",))


def test_minimal_example_adapter_passes_through_normspec_run(
        rms_vectors: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    rc = main(["run", "--adapter", f"{EXAMPLE}:ADAPTER", "--method", "rms_norm",
               "--dtype", "float32", "--dtype", "float64", "--vectors", str(rms_vectors),
               "--no-progress", "--json", str(tmp_path / "r.json")])
    doc = _json(tmp_path)
    bad = [(r["id"], r["message"]) for r in doc["results"] if r["status"] != "pass"]
    assert bad == []
    assert rc == 0
    assert {r["kind"] for r in doc["results"]} == {"composed"}
    assert doc["adapters"][0]["name"] == "minimal"
