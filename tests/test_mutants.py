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


MOMENTS = ("batch_norm", "layer_norm", "rms_norm", "instance_norm", "group_norm")
TARGETS: dict[str, tuple[str, ...]] = {
    "mutant-running-var-biased": ("batch_norm",),
    "mutant-running-var-unbiased": ("batch_norm",),
    "mutant-inverted-momentum": ("batch_norm",),
    "mutant-interleaved-groups": ("group_norm",),
    "mutant-layer-norm-last-axis-only": ("layer_norm",),
    "mutant-instance-norm-batch-stats": ("instance_norm",),
    "mutant-rms-norm-subtracts-mean": ("rms_norm",),
    "mutant-lrn-alpha-not-divided": ("local_response_norm",),
    "mutant-lrn-window-onnx-even": ("local_response_norm",),
    "mutant-lp-norm-eps-added": ("lp_norm",),
    "mutant-weight-grad-channels-last-sum": MOMENTS,
}
"""The methods a mutant's bug class lives in; it must fail a check there. A mutant not listed
is run against every method (its bug is shared machinery: eps, variance, accumulation...)."""


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
    report = _run(SPECS[name], methods=TARGETS.get(name, ()))
    failing = [r for r in report.results if r.status in ("fail", "error")]
    assert failing, f"{name} passed every check: the suite cannot see this bug class"


def test_one_pass_float32_variance_fails_the_large_offset_cases() -> None:
    report = _run(SPECS["mutant-one-pass-variance"], dtypes=("float32",),
                  methods=("layer_norm", "group_norm", "instance_norm", "batch_norm"))
    failing_cases = {r.case for r in report.results if r.status == "fail"}
    offset_cases = {r.case for r in report.results if "offset" in r.case}
    assert offset_cases, "the catalogs lost their large-offset cases"
    assert offset_cases & failing_cases, "one-pass variance in float32 survived every offset case"
