"""Mutation self-test: the suite passes the careful numpy adapter and fails every mutant.

This is the calibration of the tolerance model run both ways: a budget loose enough to absorb
a real bug class lets a mutant survive; a budget tight enough to fail the straightforward
two-pass formulas fails the numpy adapter.
"""

from __future__ import annotations

from collections import Counter

import pytest
from mutants import _MODULES as MUTANT_MODULES
from normspec.conformance.results import Report
from normspec.conformance.runner import RunConfig, Runner

SPECS = {module.MUTANT.name: f"{module.__name__}:MUTANT" for module in MUTANT_MODULES}
"""Each mutant as the ``module:attribute`` the runner loads in its worker process."""


def _run(spec: str, **selection: object) -> Report:
    config = RunConfig(adapters=(spec,), **selection)  # type: ignore[arg-type]
    return Runner(config).run()


def test_there_are_at_least_fifteen_mutants() -> None:
    assert len(SPECS) >= 15


def test_numpy_adapter_passes_every_case_in_every_dtype() -> None:
    report = _run("numpy")
    counts = Counter(r.status for r in report.results)
    assert counts["pass"] > 2000
    bad = [r.id for r in report.results if r.status not in ("pass", "skip")]
    assert not bad, f"{len(bad)} non-passing results, first: {bad[:5]}"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_mutant_fails_at_least_one_check(name: str) -> None:
    report = _run(SPECS[name])
    failing = [r for r in report.results if r.status in ("fail", "error")]
    assert failing, f"{name} passed every check: the suite cannot see this bug class"


def test_one_pass_float32_variance_fails_the_large_offset_cases() -> None:
    report = _run(SPECS["mutant-one-pass-variance"], dtypes=("float32",),
                  methods=("layer_norm", "group_norm", "instance_norm", "batch_norm"))
    failing_cases = {r.case for r in report.results if r.status == "fail"}
    offset_cases = {r.case for r in report.results if "offset" in r.case}
    assert offset_cases, "the catalogs lost their large-offset cases"
    assert offset_cases & failing_cases, "one-pass variance in float32 survived every offset case"
