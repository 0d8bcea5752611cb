"""The coverage table (normspec coverage, docs/coverage.md): every required row has its cases."""

from __future__ import annotations

from pathlib import Path

import pytest
from normspec.conformance.cli import main
from normspec.conformance.coverage import (
    COVERAGE,
    RowCoverage,
    coverage_markdown,
    degenerate,
    method_coverage,
    samples,
    split_page,
)

PAGE = Path(__file__).resolve().parents[1] / "docs" / "coverage.md"


def _row(method: str, name: str) -> RowCoverage:
    return next(c for c in method_coverage(method).rows if c.row.name == name)


def _rows() -> list[object]:
    params = []
    for method, rows in COVERAGE.items():
        for row in rows:
            if row.minimum < 2:
                continue
            marks = [pytest.mark.xfail(strict=True, reason=row.pending)] if row.pending else []
            params.append(pytest.param(method, row.name, marks=marks,
                                       id=f"{method}-{row.name.replace(' ', '_')}"))
    return params


@pytest.mark.parametrize(("method", "name"), _rows())
def test_required_row_has_its_minimum_in_every_meaningful_dtype(method: str, name: str) -> None:
    cov = _row(method, name)
    short = {d: list(v) for d, v in cov.cases.items() if len(v) < cov.row.minimum}
    assert not short, f"{method}: row {name!r} needs {cov.row.minimum} cases per dtype: {short}"


def test_no_row_is_short() -> None:
    short = [f"{m}: {c.row.name}" for m in COVERAGE for c in method_coverage(m).rows if c.short]
    assert not short


def test_biased_running_variance_has_as_many_cases_as_unbiased() -> None:
    biased = _row("batch_norm", "biased running variance").cases
    unbiased = _row("batch_norm", "unbiased running variance").cases
    assert all(len(biased[d]) >= len(unbiased[d]) for d in unbiased), (biased, unbiased)


def test_tiny_with_a_bias_is_degenerate_and_does_not_count() -> None:
    by_dtype = samples("layer_norm")
    tiny = {d: next(s for s in ss if s.spec.name == "tiny") for d, ss in by_dtype.items()}
    # (x - mean) * rstd is ~1e-13 next to an O(1) bias: y is the bias to the last bit
    assert degenerate(tiny["float32"])
    assert degenerate(tiny["float64"])
    without_eps = next(s for s in by_dtype["float32"] if s.spec.name == "tiny-eps=0")
    assert not degenerate(without_eps)
    row = _row("layer_norm", "tiny scale")
    assert "tiny" not in row.cases["float32"]
    assert "tiny" in row.degenerate["float32"]
    assert "tiny-eps=0" in row.cases["float32"]


def test_estimator_rows_need_a_visible_difference() -> None:
    # f = 0.01, n = 20: var/19 * 0.01 is 5e-4 of the running variance, inside bfloat16's budget
    row = _row("batch_norm", "biased running variance")
    assert "train-flax-biased" in row.cases["float32"]
    assert "train-flax-biased" not in row.cases["bfloat16"]


def test_committed_page_is_up_to_date() -> None:
    committed, _ = split_page(PAGE.read_text(encoding="utf-8"))
    fresh = coverage_markdown([method_coverage(m) for m in COVERAGE])
    assert committed.rstrip() == fresh.rstrip(), (
        "docs/coverage.md is stale: run `normspec coverage --mutants tests --markdown "
        "docs/coverage.md`")


def test_cli_writes_the_page_for_one_method(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                            ) -> None:
    out = tmp_path / "coverage.md"
    assert main(["coverage", "--method", "lp_norm", "--markdown", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert "## lp_norm" in text
    assert "## layer_norm" not in text
    assert "| clamped branch |" in text
    assert "p = 1, eps = 0" in capsys.readouterr().out


def test_cli_rejects_an_unknown_method(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["coverage", "--method", "foo_norm"]) == 2
    assert "--method: unknown method(s) ['foo_norm']" in capsys.readouterr().err
