"""Forward-only and partial adapters, per-case refusals, and one verdict per quantity."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from fakes.compare import strict_compare
from fakes.vectors import build_vectors, case_names
from normspec.adapters import DERIVATIVE_CHECKS, Support
from normspec.conformance.cli import main
from normspec.conformance.reports import markdown, validate_report
from normspec.conformance.results import Report, Result, worst_headroom
from normspec.conformance.runner import RunConfig, Runner
from normspec.conformance.tolerance import compare_arrays


@pytest.fixture(scope="module")
def vectors(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_vectors(tmp_path_factory.mktemp("vectors"))


def _run(vectors: Path, adapter: str, *, case: str = "*", dtypes: tuple[str, ...] = ("float32",),
         **kw: object) -> Report:
    config = RunConfig(adapters=(adapter,), methods=("layer_norm",), dtypes=dtypes,
                       cases=(case,), vectors=str(vectors), **kw)  # type: ignore[arg-type]
    return Runner(config, compare=strict_compare).run()


def _first(vectors: Path) -> str:
    return case_names(vectors, "layer_norm", "float32")[0]


# Forward-only adapters ------------------------------------------------------------------------


def test_forward_only_adapter_skips_derivatives_with_its_reason_and_passes(vectors: Path) -> None:
    report = _run(vectors, "fakes.adapters:FORWARD_ONLY")
    by_check: dict[str, set[str]] = {}
    for r in report.results:
        by_check.setdefault(r.check, set()).add(r.status)
    assert by_check["forward"] == {"pass"}
    for check in DERIVATIVE_CHECKS:
        assert by_check[check] == {"skip"}, check
    skipped = [r for r in report.results if r.check in DERIVATIVE_CHECKS]
    assert all("this fake runtime computes no derivatives" in r.message for r in skipped)
    assert not report.failed


def test_forward_only_plain_run_exits_zero(vectors: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    status = main(["run", "--adapter", "fakes.adapters:FORWARD_ONLY", "--vectors", str(vectors),
                   "--dtype", "float32", "--no-progress", "--json", str(out)])
    assert status == 0
    doc = json.loads(out.read_text())
    validate_report(doc)
    assert doc["summary"]["skip"] > 0
    assert doc["summary"]["error"] == 0


def test_support_rejects_unknown_checks_and_empty_reasons() -> None:
    with pytest.raises(ValueError, match="argument 'not_implemented': got checks \\['grad'\\]"):
        Support(True, not_implemented={"grad": "no"})
    with pytest.raises(ValueError, match="argument 'not_produced': got no reason"):
        Support(True, not_produced={"forward/mean": " "})


# Partial adapters -----------------------------------------------------------------------------


def test_unproduced_quantity_is_skipped_and_the_others_compared(vectors: Path) -> None:
    report = _run(vectors, "fakes.adapters:NO_MEAN", case=_first(vectors))
    forward = next(r for r in report.results if r.check == "forward")
    assert forward.status == "pass"
    verdicts = {q.name: q.status for q in forward.quantities}
    assert verdicts["forward/mean"] == "skip"
    assert verdicts["forward/y"] == "pass"
    mean = next(q for q in forward.quantities if q.name == "forward/mean")
    assert "this fake has no mean output" in mean.message


def test_case_support_refusal_skips_every_check_without_calling(vectors: Path) -> None:
    report = _run(vectors, "fakes.adapters:DECLINING", case=_first(vectors))
    assert {r.status for r in report.results} == {"skip"}
    assert all("this fake declines every case" in r.message for r in report.results)


# One verdict per quantity ---------------------------------------------------------------------


def test_wrong_shape_statistic_does_not_hide_the_output(vectors: Path) -> None:
    report = _run(vectors, "fakes.adapters:WRONG_SHAPE_STATISTIC", case=_first(vectors))
    forward = next(r for r in report.results if r.check == "forward")
    verdicts = {q.name: q.status for q in forward.quantities}
    assert verdicts["forward/y"] == "pass"
    assert verdicts["forward/rstd"] == "error"
    assert forward.status == "error"
    assert "forward/rstd: got shape (7,)" in forward.message
    doc = report.to_dict()
    validate_report(doc)
    quantities = doc["results"][0]["quantities"]
    assert {q["name"]: q["status"] for q in quantities}["forward/y"] == "pass"


def test_extra_and_missing_nan_are_both_failures_with_consistent_messages(vectors: Path) -> None:
    extra = _run(vectors, "fakes.adapters:NAN", case=_first(vectors))
    jvp = next(r for r in extra.results if r.check == "jvp")
    assert jvp.status == "fail"
    missing = _run(vectors, "fakes.adapters:MISSING_NAN", case="inf")
    forward = next(r for r in missing.results if r.check == "forward")
    assert forward.status == "fail"


def test_nan_pattern_comparison_is_symmetric_and_says_what_happened() -> None:
    expected = np.array([np.nan, 1.0, 2.0])
    got_missing = np.array([0.0, 1.0, 2.0])
    got_extra = np.array([np.nan, np.nan, 2.0])
    missing = compare_arrays(got_missing, expected, unit=2.0**-24, r=2.0, budget=4.0)
    extra = compare_arrays(got_extra, expected, unit=2.0**-24, r=2.0, budget=4.0)
    for cmp in (missing, extra):
        assert not cmp.passed
        assert cmp.nonfinite_mismatched == 1
        assert cmp.mismatched == 1
        assert math.isfinite(cmp.error)  # measured where both are finite: a printable number
        assert "NaN/Inf pattern differs from the reference at 1 of them" in cmp.message
        assert "Measured error: inf" not in cmp.message
    assert "the reference has nan, got 0.0" in missing.message
    assert "the reference has 1.0, got nan" in extra.message


# The summary never looks better than the worst result -----------------------------------------


def _result(status: str, headroom: float | None) -> Result:
    return Result(adapter="a", device="cpu", method="layer_norm", case="c", dtype="float32",
                  check="forward", status=status, headroom=headroom)  # type: ignore[arg-type]


@pytest.mark.parametrize(("statuses", "expected"), [
    ([("pass", 0.04), ("fail", None)], math.inf),
    ([("pass", 0.04), ("error", None)], math.inf),
    ([("pass", 0.04), ("fail", 0.5)], math.inf),
    ([("pass", 0.04), ("fail", 3.0)], 3.0),
    ([("pass", 0.04), ("xfail", None)], math.inf),
    ([("pass", 0.04), ("skip", None)], 0.04),
    ([("pass", 0.2), ("pass", 0.04)], 0.2),
], ids=["fail-unmeasured", "error", "fail-pattern", "fail-measured", "xfail", "skip", "passes"])
def test_worst_headroom_never_looks_better_than_the_worst_result(
        statuses: list[tuple[str, float | None]], expected: float) -> None:
    assert worst_headroom([_result(s, h) for s, h in statuses]) == expected


def test_markdown_report_is_complete_with_skip_reasons(vectors: Path) -> None:
    report = _run(vectors, "fakes.adapters:OFF")
    failing = [r for r in report.results if r.status == "fail"]
    assert len(failing) >= 2
    text = markdown(report, max_details=1)
    for r in failing:
        assert r.id in text
    forward_only = markdown(_run(vectors, "fakes.adapters:FORWARD_ONLY"))
    assert "this fake runtime computes no derivatives" in forward_only


def test_a_row_whose_only_overrun_is_an_expected_failure_says_so() -> None:
    from normspec.conformance.reports import headroom_cell

    assert headroom_cell([_result("pass", 0.2), _result("xfail", None)]) == ("inf (xfail)",
                                                                            "yellow")
    assert headroom_cell([_result("pass", 0.2), _result("xfail", 40.0)]) == ("40 (xfail)",
                                                                            "yellow")
    assert headroom_cell([_result("xfail", None), _result("fail", 3.0)]) == ("inf", "red")
    assert headroom_cell([_result("pass", 0.2)]) == ("0.2", "")
