"""Trajectories: K training steps then evaluation, the adapter's own state threaded between steps.

The runner-side mutant of the issue ("state threaded from the reference instead of the
adapter's own") is killed here: :func:`test_threading_the_reference_state_is_caught` swaps the
runner's threading for the reference's state and shows the suite fails it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from normspec.conformance import runner as runner_module
from normspec.conformance.runner import RunConfig, Runner
from normspec.conformance.vectors import load_manifest
from normspec.conformance.vectors.catalog import parse_catalog
from normspec.conformance.vectors.manifest import carried_budgets
from normspec.reference import batch_norm

TRAJECTORIES = "traj-*"


def _run(spec: str, **selection: Any) -> list[Any]:
    selection.setdefault("cases", (TRAJECTORIES,))
    config = RunConfig(adapters=(spec,), methods=("batch_norm",), **selection)
    return Runner(config).run().results


def test_the_vectors_hold_every_batch_the_initial_state_and_the_state_after_each_step() -> None:
    case = load_manifest().case("batch_norm", "float32", "traj-cumulative-biased")
    labels = [s.label for s in case.trajectory]
    assert labels == ["step1", "step2", "step3", "step4", "step5", "eval"]
    assert int(case.inputs["num_batches_tracked"]) == 3
    assert "x" not in case.inputs
    # the reference's state threads from each step's expected values into the next step
    state = {"running_mean": case.inputs["running_mean"],
             "running_var": case.inputs["running_var"], "num_batches_tracked": 3}
    for step in case.trajectory:
        out = batch_norm.forward(step.x, case.inputs["weight"], case.inputs["bias"], **state,
                                 **step.hyper)
        np.testing.assert_array_equal(out["y"], step.expected["y"])
        if step.label != "eval":
            for k in ("running_mean", "running_var", "num_batches_tracked"):
                np.testing.assert_array_equal(out[k], step.expected[k])
            state = {"running_mean": out["running_mean"], "running_var": out["running_var"],
                     "num_batches_tracked": int(out["num_batches_tracked"])}
    assert case.trajectory[-1].hyper["training"] is False
    assert all(s.hyper["training"] for s in case.trajectory[:-1])


def test_catalog_trajectories_cover_what_the_issue_lists() -> None:
    manifest = load_manifest()
    specs = [c for c in manifest.data["methods"]["batch_norm"]["cases"] if "trajectory" in c]
    estimators = [c["hyper"]["running_var_estimator"] for c in specs]
    assert estimators.count("biased") >= estimators.count("unbiased") >= 6
    assert all(len(c["trajectory"]) >= 6 for c in specs)  # >= 5 steps, then evaluation
    weights = {c["hyper"]["batch_stat_weight"] for c in specs}
    assert {0.0, 1.0, "cumulative"} <= weights
    one_per_channel = [c for c in specs for s in c["trajectory"][:-1]
                       if math.prod(s["shape"]) // s["shape"][1] == 1]
    assert one_per_channel
    stress = {s["dist"]["dist"] for c in specs for s in c["trajectory"]}
    assert {"offset", "huge", "tiny"} <= stress
    assert any(c["hyper"].get("channel_axis") == -1 for c in specs)


def test_carried_budgets_follow_the_contraction_of_the_update() -> None:
    manifest = load_manifest()
    ema = manifest.case("batch_norm", "float64", "traj-ema-unbiased").trajectory
    assert carried_budgets(ema[:1]) == 1.0
    # f = 0.1 at every step: F_k = 1 + 0.9 F_(k-1)
    f = 0.0
    for k in range(1, len(ema)):
        f = 1.0 + 0.9 * f
        assert carried_budgets(ema[:k + 1]) == pytest.approx(1.0 + f)
    replace = manifest.case("batch_norm", "float64", "traj-weight1-unbiased").trajectory
    assert carried_budgets(replace) == 2.0  # f = 1 forgets: only the last update is carried
    cumulative = manifest.case("batch_norm", "float64", "traj-cumulative-unbiased").trajectory
    k = len(cumulative) - 1
    assert carried_budgets(cumulative) == pytest.approx(1.0 + (k + 1) / 2)


def test_runner_feeds_the_adapter_its_own_state_and_passes_it() -> None:
    results = [r for r in _run("fakes.adapters:OWN_STATE", dtypes=("float32",))
               if r.status != "skip"]  # cases limited to other dtypes
    assert len(results) >= 24
    assert all(r.status == "pass" for r in results), [
        (r.id, r.message[:200]) for r in results if r.status != "pass"]


def test_threading_the_reference_state_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mutant: the runner hands each step the reference's state, so an adapter's drift
    could never show. The marked adapter notices, and every trajectory errors."""

    def reference_state(step: Any, returned: Any) -> dict[str, Any]:
        manifest = load_manifest()
        for name in manifest.case_names("batch_norm", "float32"):
            case = manifest.case("batch_norm", "float32", name)
            for i, s in enumerate(case.trajectory[:-1]):
                if s is step or (s.label == step.label and np.array_equal(s.x, step.x)):
                    return dict(case.trajectory[i + 1].state_in)
        raise AssertionError("step not found")

    monkeypatch.setattr(runner_module, "_next_state", reference_state)
    results = _run("fakes.adapters:OWN_STATE", dtypes=("float32",))
    errors = [r for r in results if r.status == "error"]
    assert errors
    assert all("reference's state" in r.message for r in errors)


def test_a_failing_step_ends_the_trajectory_with_its_label() -> None:
    results = _run("fakes.adapters:FAILING_STEP", dtypes=("float64",),
                   cases=("traj-ema-unbiased",))
    assert {r.check for r in results} == {"forward", "state"}
    assert all(r.status == "error" for r in results)
    assert all("trajectory step3 of 6 steps" in r.message for r in results)


def test_an_adapter_that_produces_no_state_is_declined_not_failed() -> None:
    results = _run("fakes.adapters:NO_RUNNING_VAR", dtypes=("float64",),
                   cases=("traj-ema-biased",))
    assert results
    assert all(r.status == "skip" for r in results)
    assert all("forward/running_var" in r.message and "feeds to the next" in r.message
               for r in results)


def test_state_kept_wider_than_the_dtype_is_fed_back_as_it_was_returned() -> None:
    # the numpy adapter keeps half-precision running statistics in float32, as frameworks do
    results = _run("numpy", dtypes=("float16", "bfloat16"))
    assert results
    assert all(r.status in ("pass", "skip") for r in results)


BASE = '''method = "batch_norm"
[[case]]
name = "t"
seed = 1
shape = [4, 3]
hyper = { eps = 1e-5, batch_stat_weight = 0.1, running_var_estimator = "biased" }
state = ["running_mean", "running_var"]
'''


SINGLE = BASE.replace("hyper = { eps", "hyper = { training = true, eps")


@pytest.mark.parametrize(("extra", "message"), [
    ('step = [{}]\nhyper2 = 1', "unknown key(s) ['hyper2']"),
    ('step = [{ color = 1 }]', "step1: unknown key(s) ['color']"),
    ('step = [{ shape = [4, 5] }]', "changes the shape of"),
    ('step = [{ inputs = { weight = "normal" } }]', "a step draws only its batch 'x'"),
    ('step = [{ hyper = { training = false } }]', "'hyper' overrides ['training']"),
    ('step = [{ hyper = { momentum = 0.1 } }]', "'hyper' overrides ['momentum']"),
    ('step = []', "one or more [[case.step]] tables"),
    ('eval = {}', "'eval' without [[case.step]] tables"),
])
def test_bad_trajectories_are_rejected_naming_the_case(extra: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"x\.toml: case 't'") as info:
        parse_catalog(BASE + extra + "\n", "x.toml")
    assert "x.toml: case 't'" in str(info.value)
    assert message in str(info.value)


def test_training_in_a_trajectory_hyper_is_rejected() -> None:
    text = BASE.replace('hyper = { eps', 'hyper = { training = true, eps') + "step = [{}]\n"
    with pytest.raises(ValueError, match="a trajectory sets it per step"):
        parse_catalog(text, "x.toml")


def test_a_method_without_state_has_no_trajectory() -> None:
    text = ('method = "layer_norm"\n[[case]]\nname = "t"\nseed = 1\nshape = [2, 3]\n'
            'hyper = { axis = -1, eps = 1e-5 }\nstep = [{}]\n')
    with pytest.raises(ValueError, match="keeps no running state"):
        parse_catalog(text, "x.toml")


@pytest.mark.parametrize(("inputs", "message"), [
    ('{ num_batches_tracked = { dist = "values", values = 2.5 } }', "expected integers"),
    ('{ num_batches_tracked = { dist = "values", values = [1, 2] } }',
     "expected one integer, got shape [2]"),
    ('{ num_batches_tracked = "normal" }', "expected one of ['prefix', 'values']"),
    ('{ running_var = { dist = "values", values = [1, 2] } }', "expected [3]"),
])
def test_bad_literal_inputs_are_rejected(inputs: str, message: str, tmp_path: Path) -> None:
    text = SINGLE + f"inputs = {inputs}\n"
    from normspec.conformance.vectors.generate import build_method

    with pytest.raises(ValueError, match=r"x\.toml: case 't'") as info:
        build_method(parse_catalog(text, "x.toml"))
    assert message in str(info.value)


def test_the_counter_is_refused_as_a_hyperparameter() -> None:
    text = SINGLE.replace('eps = 1e-5', 'eps = 1e-5, num_batches_tracked = 3')
    with pytest.raises(ValueError, match="inputs of batch_norm, not hyperparameters"):
        parse_catalog(text, "x.toml")


def test_literal_values_give_exact_float_state() -> None:
    from normspec.conformance.vectors.generate import build_method

    text = SINGLE + 'inputs = { running_var = { dist = "values", values = [0.0, 1.0, 2.5] } }\n'
    built = build_method(parse_catalog(text, "x.toml"), dtypes=("float32",))
    case = built.entry["cases"][0]
    assert case["inputs"]["running_var"]["dist"] == {"dist": "values", "values": [0.0, 1.0, 2.5]}
    assert case["inputs"]["num_batches_tracked"]["element"] == "int64"


def test_a_version_1_manifest_is_refused_with_what_changed(tmp_path: Path) -> None:
    import json

    from normspec.conformance.vectors import VectorFormatError

    data = json.loads(load_manifest().source and (
        Path(__file__).resolve().parents[1] / "spec" / "vectors" / "manifest.json").read_text())
    data["format_version"] = 1
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(VectorFormatError) as info:
        load_manifest(tmp_path)
    text = str(info.value)
    assert "format version 1, but this normspec reads format version 2" in text
    assert "num_batches_tracked" in text
    assert "normspec vectors build" in text
