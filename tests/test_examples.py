"""The guide's example adapters, run through ``normspec run`` as a reader would run them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fakes.vectors import build_vectors
from normspec.adapters import DERIVATIVE_CHECKS
from normspec.conformance.cli import main
from normspec.conformance.reports import validate_report

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"
FORWARD_ONLY = EXAMPLES / "forward_only_adapter.py"

NO_DERIVATIVES = "an inference kernel: it computes no derivatives"
NO_MEAN_SQUARE = "the kernel keeps only rrms, the statistic a backward pass would reuse"
NEEDS_EPS = "the kernel requires eps > 0"


@pytest.fixture(scope="module")
def rms_vectors(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_vectors(tmp_path_factory.mktemp("rms"), ("rms_norm",))


@pytest.fixture(scope="module")
def forward_only_run(rms_vectors: Path, tmp_path_factory: pytest.TempPathFactory
                     ) -> tuple[int, dict[str, Any], str]:
    out = tmp_path_factory.mktemp("forward_only")
    rc = main(["run", "--adapter", f"{FORWARD_ONLY}:ADAPTER", "--method", "rms_norm",
               "--vectors", str(rms_vectors), "--no-progress", "--json", str(out / "r.json"),
               "--markdown", str(out / "r.md")])
    doc = json.loads((out / "r.json").read_text())
    return rc, doc, (out / "r.md").read_text()


def _declined(result: dict[str, Any]) -> bool:
    return NEEDS_EPS in result["message"]


def test_forward_only_example_exits_0_with_a_valid_report(
        forward_only_run: tuple[int, dict[str, Any], str]) -> None:
    rc, doc, _ = forward_only_run
    validate_report(doc)
    assert rc == 0
    assert doc["summary"]["fail"] == doc["summary"]["error"] == 0
    assert doc["adapters"][0]["name"] == "forward-only"
    assert {r["kind"] for r in doc["results"]} == {"native"}


def test_forward_only_example_skips_derivatives_with_its_reason(
        forward_only_run: tuple[int, dict[str, Any], str]) -> None:
    _, doc, _ = forward_only_run
    derivatives = [r for r in doc["results"] if r["check"] in DERIVATIVE_CHECKS]
    assert {r["check"] for r in derivatives} == set(DERIVATIVE_CHECKS)
    assert {r["status"] for r in derivatives} == {"skip"}
    in_vectors = [r for r in derivatives if "no vectors in" not in r["message"]]
    assert in_vectors
    assert all(r["message"] == f"not implemented by the adapter: {NO_DERIVATIVES}"
               for r in in_vectors)


def test_forward_only_example_passes_forward_in_every_dtype(
        forward_only_run: tuple[int, dict[str, Any], str]) -> None:
    _, doc, _ = forward_only_run
    forward = [r for r in doc["results"] if r["check"] == "forward"
               and r["status"] != "skip"]
    assert {r["dtype"] for r in forward} == {"float64", "float32", "float16", "bfloat16"}
    assert [(r["id"], r["message"]) for r in forward if r["status"] != "pass"] == []


def test_forward_only_example_declared_quantity_is_skipped_and_the_others_compared(
        forward_only_run: tuple[int, dict[str, Any], str]) -> None:
    _, doc, _ = forward_only_run
    passed = [r for r in doc["results"] if r["check"] == "forward" and r["status"] == "pass"]
    assert passed
    for r in passed:
        verdicts = {q["name"]: q for q in r["quantities"]}
        assert verdicts["forward/mean_square"]["status"] == "skip", r["id"]
        assert verdicts["forward/mean_square"]["message"] == (
            f"not produced by the adapter: {NO_MEAN_SQUARE}")
        assert verdicts["forward/y"]["status"] == "pass", r["id"]
        assert verdicts["forward/rrms"]["status"] == "pass", r["id"]


def test_forward_only_example_declines_eps_0_cases_without_calling_forward(
        rms_vectors: Path, forward_only_run: tuple[int, dict[str, Any], str]) -> None:
    _, doc, markdown = forward_only_run
    manifest = json.loads((rms_vectors / "manifest.json").read_text())
    eps_0 = {c["name"] for c in manifest["methods"]["rms_norm"]["cases"]
             if c["hyper"]["eps"] == 0}
    assert eps_0
    declined = [r for r in doc["results"] if r["check"] == "forward" and _declined(r)]
    # The kernel raises for eps = 0: an error here would mean forward was called anyway.
    assert {r["case"] for r in declined} == eps_0
    assert {r["status"] for r in declined} == {"skip"}
    assert all(r["quantities"] == [] for r in declined)
    assert NEEDS_EPS in markdown
    assert NO_DERIVATIVES in markdown
