"""Checks a method declares not applicable (its reference module's ``NOT_APPLICABLE``): the
vectors hold no such quantity, and every report shows a distinct ``not_applicable`` outcome
with the reason; a method that declares nothing cannot lose a check."""

from __future__ import annotations

import io
import json
import shutil
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from fakes.compare import strict_compare
from fakes.vectors import build_vectors, case_names
from normspec.conformance.cli import main
from normspec.conformance.ledger import LedgerError
from normspec.conformance.merge import merge_reports
from normspec.conformance.reports import (
    junit_tree,
    markdown,
    print_summary,
    validate_report,
    write_json,
)
from normspec.conformance.results import worst_headroom
from normspec.conformance.runner import RunConfig, Runner, all_ids
from normspec.conformance.vectors import VectorFormatError, load_manifest
from normspec.conformance.vectors.catalog import not_applicable
from rich.console import Console

REASON = {"jvp": "defined by its backward pass: no tangent map",
          "second_order": "the cotangent map is nonlinear: no transpose"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_vectors(tmp_path_factory.mktemp("vectors"))


def _edit(src: Path, dst: Path, *, drop: tuple[str, ...], declare: dict[str, str]) -> Path:
    """A copy of ``src`` whose layer_norm cases hold no quantity of the checks ``drop`` and
    whose method entry declares ``declare`` not applicable (the tensors stay, unused)."""
    shutil.copytree(src, dst)
    path = dst / "manifest.json"
    doc = json.loads(path.read_text())
    entry = doc["methods"]["layer_norm"]
    for case in entry["cases"]:
        case["quantities"] = {q: c for q, c in case["quantities"].items()
                              if q.split("/", 1)[0] not in drop}
    if declare:
        entry["not_applicable"] = declare
    path.write_text(json.dumps(doc, indent=1))
    return dst


@pytest.fixture(scope="module")
def vectors(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _edit(built, tmp_path_factory.mktemp("na") / "v", drop=("jvp", "second_order"),
                 declare=REASON)


def _run(vectors: Path, adapter: str = "fakes.adapters:REFERENCE", **kw: object):
    config = RunConfig(adapters=(adapter,), methods=("layer_norm",), dtypes=("float32",),
                       vectors=str(vectors), **kw)  # type: ignore[arg-type]
    return Runner(config, compare=strict_compare).run()


def test_declared_checks_are_not_applicable_with_their_reason(vectors: Path) -> None:
    report = _run(vectors)
    names = case_names(vectors, "layer_norm", "float32")
    by = {(r.case, r.check): r for r in report.results}
    assert len(report.results) == 4 * len(names)
    for name in names:
        assert by[(name, "forward")].status == "pass"
        assert by[(name, "vjp")].status == "pass"
        for check in ("jvp", "second_order"):
            r = by[(name, check)]
            assert r.status == "not_applicable"
            assert r.message == f"{check} is not applicable to layer_norm: {REASON[check]}"
            assert r.headroom is None
            assert r.quantities == ()
    assert not report.failed
    assert worst_headroom(report.results) is not None  # n/a never hides the measured ones
    # An n/a check is no pass: the ids exist in the run, not among the ledger's known ids.
    assert not any(i.endswith(("-jvp", "-second_order"))
                   for i in all_ids(load_manifest(str(vectors))))


def test_a_selection_of_only_not_applicable_checks_ran_nothing(vectors: Path) -> None:
    report = _run(vectors, checks=("jvp",))
    assert {r.status for r in report.results} == {"not_applicable"}
    assert report.failed
    assert "no check ran" in report.meta["aborted"]


def test_every_report_format_shows_not_applicable(vectors: Path, tmp_path: Path) -> None:
    report = _run(vectors, cases=(case_names(vectors, "layer_norm", "float32")[0],))
    doc = report.to_dict()
    validate_report(doc)
    assert doc["format"] == "normspec-report/1.2"
    assert doc["summary"]["not_applicable"] == 2
    assert doc["summary"]["pass"] == 2
    assert doc["summary"]["ok"] is True
    na = [r for r in doc["results"] if r["status"] == "not_applicable"]
    assert [r["check"] for r in na] == ["jvp", "second_order"]
    assert REASON["jvp"] in na[0]["message"]

    suites = junit_tree(report).getroot()
    assert suites.get("skipped") == "2"
    assert suites.get("failures") == "0"
    skipped = suites.findall(".//testcase/skipped[@type='normspec.not_applicable']")
    assert len(skipped) == 2
    assert REASON["jvp"] in (skipped[0].get("message") or "")
    assert suites.findall(".//testcase/properties/property[@value='not_applicable']")
    assert not suites.findall(".//skipped[@type='normspec.skip']")

    md = markdown(report)
    assert "| skip | n/a | worst headroom |" in md
    assert "| layer_norm | float32 | cpu | 2 | 0 | 0 | 0 | 0 | 0 | 2 |" in md
    assert "## Not applicable (2)" in md
    assert REASON["second_order"] in md
    assert "## Skipped" not in md

    buffer = io.StringIO()
    print_summary(report, Console(file=buffer, width=200, color_system=None))
    out = buffer.getvalue()
    assert "n/a" in out
    assert "2 not_applicable" in out
    assert "PASSED" in out
    assert f"NOT APPLICABLE fake_reference layer_norm: 1 checks: jvp is not applicable to " \
           f"layer_norm: {REASON['jvp']}" in out

    # A merge of the JSON report keeps the outcome and its reason.
    write_json(report, tmp_path / "r.json")
    merged = merge_reports([tmp_path / "r.json"])
    assert [r.status for r in merged.results] == [r.status for r in report.results]
    assert merged.to_dict()["summary"]["not_applicable"] == 2


def test_cli_run_writes_not_applicable_in_every_report(vectors: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from normspec.conformance import runner

    monkeypatch.setattr(runner, "default_compare", lambda: strict_compare)
    first = case_names(vectors, "layer_norm", "float32")[0]
    rc = main(["run", "--adapter", "fakes.adapters:REFERENCE", "--method", "layer_norm",
               "--dtype", "float32", "--case", first, "--vectors", str(vectors),
               "--no-progress", "--json", str(tmp_path / "r.json"),
               "--junit", str(tmp_path / "r.xml"), "--markdown", str(tmp_path / "r.md")])
    assert rc == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    validate_report(doc)
    assert doc["summary"]["not_applicable"] == 2
    assert ET.parse(tmp_path / "r.xml").getroot().findall(
        ".//skipped[@type='normspec.not_applicable']")
    assert "## Not applicable (2)" in (tmp_path / "r.md").read_text()


def test_an_adapter_cannot_make_a_check_not_applicable(built: Path) -> None:
    # ForwardOnly declares vjp/jvp/second_order not implemented: that is a skip, not n/a.
    report = _run(built, "fakes.adapters:FORWARD_ONLY")
    assert "not_applicable" not in {r.status for r in report.results}
    assert {r.status for r in report.results if r.check != "forward"} == {"skip"}


def test_a_method_that_declares_nothing_cannot_lose_a_check(built: Path, tmp_path: Path) -> None:
    missing = _edit(built, tmp_path / "missing", drop=("jvp",), declare={})
    with pytest.raises(VectorFormatError, match="has no jvp quantity, and the method does not "
                                                "declare jvp not applicable"):
        load_manifest(str(missing))


def test_a_declared_check_holds_no_quantity(built: Path, tmp_path: Path) -> None:
    both = _edit(built, tmp_path / "both", drop=(), declare={"jvp": "no tangent map"})
    with pytest.raises(VectorFormatError, match="holds jvp quantities, but the method "
                                                "declares jvp not applicable"):
        load_manifest(str(both))


@pytest.mark.parametrize(("declared", "text"), [
    ({"forward": "x"}, "check 'forward', expected names from"),
    ({"jvp": ""}, "expected a non-empty reason"),
    (["jvp"], "expected a dict check -> reason"),
])
def test_the_declaration_is_validated(declared: object, text: str) -> None:
    module = types.ModuleType("fake_method")
    module.NOT_APPLICABLE = declared  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=text):
        not_applicable(module)


def test_the_schema_rejects_a_forward_declared_not_applicable(vectors: Path,
                                                               tmp_path: Path) -> None:
    bad = tmp_path / "v"
    shutil.copytree(vectors, bad)
    doc = json.loads((bad / "manifest.json").read_text())
    doc["methods"]["layer_norm"]["not_applicable"]["forward"] = "never"
    (bad / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(VectorFormatError, match="not_applicable"):
        load_manifest(str(bad))


def test_a_ledger_entry_cannot_name_a_not_applicable_check(vectors: Path,
                                                           tmp_path: Path) -> None:
    first = case_names(vectors, "layer_norm", "float32")[0]
    (tmp_path / "fake_reference.toml").write_text(
        f'[[xfail]]\nid = "layer_norm[{first}]-float32-jvp"\nreason = "r"\nevidence = "e"\n')
    with pytest.raises(LedgerError):
        _run(vectors, ledger_dir=tmp_path)


pytest_plugins = ["pytester"]


def test_the_pytest_plugin_skips_with_the_reason(pytester: pytest.Pytester,
                                                 vectors: Path) -> None:
    from importlib.metadata import entry_points

    registered = any(ep.value == "normspec.conformance.plugin"
                     for ep in entry_points(group="pytest11"))
    first = case_names(vectors, "layer_norm", "float32")[0]
    result = pytester.runpytest(
        *([] if registered else ["-p", "normspec.conformance.plugin"]), "--pyargs",
        "normspec.conformance", "--normspec-adapter", "fakes.adapters:REFERENCE",
        "--normspec-method", "layer_norm", "--normspec-dtype", "float32", "--normspec-case",
        first, "--normspec-vectors", str(vectors), "-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=2, skipped=2)
    result.stdout.fnmatch_lines([f"*not applicable: jvp is not applicable to layer_norm: "
                                 f"{REASON['jvp']}*"])


def test_the_coverage_page_lists_the_checks_not_applicable(tmp_path: Path) -> None:
    from normspec.conformance.coverage import coverage_markdown, method_coverage

    own = load_manifest(str(build_vectors(tmp_path, ("gradient_normalization", "lp_norm"))))
    mc = method_coverage("gradient_normalization", own)
    assert set(mc.not_applicable) == {"jvp", "second_order"}
    page = coverage_markdown([mc])
    assert "Not applicable (no vectors; every run reports these checks as not applicable): " \
           "jvp: gradient_normalization is defined by its backward pass" in page
    assert not method_coverage("lp_norm", own).not_applicable
