"""Mutation self-test: the suite passes the careful numpy adapter and fails every mutant.

This is the calibration of the tolerance model run both ways: a budget loose enough to absorb
a real bug class lets a mutant survive; a budget tight enough to fail the straightforward
two-pass formulas fails the numpy adapter.
"""

from __future__ import annotations

from collections import Counter
from functools import cache
from pathlib import Path

import pytest
from mutants import SPECS, TARGETS, bug_class
from normspec.conformance.coverage import MutantKills, baseline, kill, mutation_markdown, split_page
from normspec.conformance.results import Report
from normspec.conformance.runner import RunConfig, Runner

PAGE = Path(__file__).resolve().parents[1] / "docs" / "coverage.md"
MIN_KILLING_CASES = 2
"""A bug class seen by one case only is one catalog edit away from being invisible."""


def _run(spec: str, **selection: object) -> Report:
    config = RunConfig(adapters=(spec,), **selection)  # type: ignore[arg-type]
    return Runner(config).run()


@cache
def _baseline() -> dict[str, str]:
    return baseline(sorted({m for targets in TARGETS.values() for m in targets}))


@cache
def _kills(name: str) -> MutantKills:
    return kill(name, SPECS[name], TARGETS[name], bug_class(name), _baseline())


def test_there_are_at_least_fifteen_mutants() -> None:
    assert len(SPECS) >= 15


def test_every_mutant_names_the_methods_of_its_bug_class() -> None:
    assert set(TARGETS) == set(SPECS)


def test_numpy_adapter_passes_every_case_in_every_dtype() -> None:
    report = _run("numpy")
    counts = Counter(r.status for r in report.results)
    assert counts["pass"] > 2000
    # not_applicable: checks a method declares it has no quantity for (never from the adapter)
    bad = [r.id for r in report.results if r.status not in ("pass", "skip", "not_applicable")]
    assert not bad, f"{len(bad)} non-passing results, first: {bad[:5]}"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_mutant_is_killed_by_two_cases_in_each_method_it_targets(name: str) -> None:
    kills = _kills(name)
    thin = {m: list(kills.killing_cases.get(m, ())) for m in kills.targets
            if len(kills.killing_cases.get(m, ())) < MIN_KILLING_CASES}
    assert not thin, f"{name}: fewer than {MIN_KILLING_CASES} killing cases in {thin}"


def test_committed_mutation_score_is_up_to_date() -> None:
    _, committed = split_page(PAGE.read_text(encoding="utf-8"))
    fresh = mutation_markdown([_kills(name) for name in SPECS])
    assert committed.rstrip() == fresh.rstrip(), (
        "docs/coverage.md's mutation score is stale: run `normspec coverage --mutants tests "
        "--markdown docs/coverage.md`")


def test_one_pass_float32_variance_fails_the_large_offset_cases() -> None:
    report = _run(SPECS["mutant-one-pass-variance"], dtypes=("float32",),
                  methods=("layer_norm", "group_norm", "instance_norm", "batch_norm"))
    failing_cases = {r.case for r in report.results if r.status == "fail"}
    offset_cases = {r.case for r in report.results if "offset" in r.case}
    assert offset_cases, "the catalogs lost their large-offset cases"
    assert offset_cases & failing_cases, "one-pass variance in float32 survived every offset case"
