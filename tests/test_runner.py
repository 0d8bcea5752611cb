"""The runner: statuses per check, isolation failures as errors, selection, ledger, repro."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from fakes.compare import strict_compare
from fakes.vectors import build_vectors, case_names
from normspec.conformance.cli import build_parser
from normspec.conformance.ledger import LedgerError
from normspec.conformance.results import Report
from normspec.conformance.runner import (
    RunConfig,
    Runner,
    SelectionError,
    all_ids,
    check_of,
    checks_of,
)
from normspec.conformance.vectors import load_manifest

CHECKS = ("forward", "vjp", "jvp", "second_order")


@pytest.fixture(scope="module")
def vectors(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_vectors(tmp_path_factory.mktemp("vectors"))


def _run(vectors: Path, adapter: str, *, case: str, dtypes: tuple[str, ...] = ("float32",),
         **kw: object) -> Report:
    config = RunConfig(adapters=(adapter,), methods=("layer_norm",), dtypes=dtypes, cases=(case,),
                       vectors=str(vectors), **kw)  # type: ignore[arg-type]
    return Runner(config, compare=strict_compare).run()


def _first(vectors: Path) -> str:
    return case_names(vectors, "layer_norm", "float32")[0]


def test_reference_adapter_passes_every_check(vectors: Path) -> None:
    report = _run(vectors, "fakes.adapters:REFERENCE", case="*")
    names = case_names(vectors, "layer_norm", "float32")
    assert len(report.results) == len(names) * len(CHECKS)
    assert {r.status for r in report.results} == {"pass"}
    assert not report.failed
    first = report.results[0]
    assert first.id == f"layer_norm[{names[0]}]-float32-forward"
    assert first.kind == "composed"
    assert first.headroom is not None
    assert first.headroom <= 1
    assert {q.name for q in first.quantities} >= {"forward/y", "forward/mean"}


@pytest.mark.parametrize(("adapter", "text"), [
    ("fakes.adapters:RAISING", "RuntimeError: deliberate failure inside the adapter"),
    ("fakes.adapters:WRONG_SHAPE", "invalid result: jvp: got shape"),
    ("fakes.adapters:WRONG_DTYPE", "invalid result: jvp: got dtype float32, expected float64"),
    ("fakes.adapters:FOREIGN", "invalid result: jvp: got builtins.list"),
    ("fakes.adapters:SEGFAULTING", "killed by signal SIGSEGV during jvp"),
    ("fakes.adapters:ABORTING", "killed by signal SIGABRT during jvp"),
    ("fakes.adapters:HANGING", "timed out: jvp did not return within 0.5 s"),
], ids=["raises", "wrong-shape", "wrong-dtype", "not-an-array", "segfault", "abort", "hang"])
def test_misbehaving_jvp_is_an_error_and_the_run_goes_on(vectors: Path, adapter: str,
                                                         text: str) -> None:
    # Two dtypes: the case after the failure runs too, in the same (or a restarted) worker.
    timeout = 2.0 if "HANGING" in adapter else 60.0
    report = _run(vectors, adapter, case=_first(vectors), dtypes=("float32", "float64"),
                  timeout=timeout)
    text = text.replace("0.5 s", f"{timeout:g} s")
    for dtype in ("float32", "float64"):
        status = {r.check: r.status for r in report.results if r.dtype == dtype}
        assert status == {"forward": "pass", "vjp": "pass", "jvp": "error",
                          "second_order": "pass"}, dtype
    for jvp in (r for r in report.results if r.check == "jvp"):
        assert text in jvp.message
        assert jvp.message.endswith(jvp.repro)
    assert report.failed


def test_missing_gradient_is_an_error(vectors: Path) -> None:
    report = _run(vectors, "fakes.adapters:MISSING_GRADIENT", case=_first(vectors))
    vjp = next(r for r in report.results if r.check == "vjp")
    assert vjp.status == "error"
    assert "the result has no 'x'" in vjp.message


def test_wrong_values_fail_with_a_numpy_testing_style_message(vectors: Path) -> None:
    report = _run(vectors, "fakes.adapters:OFF", case=_first(vectors))
    jvp = next(r for r in report.results if r.check == "jvp")
    assert jvp.status == "fail"
    assert "Mismatched elements:" in jvp.message
    assert "First mismatched indices:" in jvp.message
    assert jvp.headroom is not None
    assert jvp.headroom > 1
    assert jvp.message.splitlines()[-1] == f"Reproduce: {jvp.repro}"


def test_repro_command_selects_exactly_that_check(vectors: Path) -> None:
    report = _run(vectors, "fakes.adapters:OFF", case="*")
    failing = next(r for r in report.results if r.status == "fail")
    argv = shlex.split(failing.repro)
    assert argv[:2] == ["normspec", "run"]
    args = build_parser().parse_args([*argv[1:], "--vectors", str(vectors)])
    config = RunConfig(adapters=tuple(args.adapter), device=args.device, dtypes=tuple(args.dtype),
                       methods=tuple(args.method), cases=tuple(args.case), checks=tuple(args.check),
                       vectors=args.vectors)
    rerun = Runner(config, compare=strict_compare).run()
    assert [(r.id, r.status) for r in rerun.results] == [(failing.id, "fail")]


def test_unsupported_dtype_gives_skips_with_the_adapters_reason(vectors: Path) -> None:
    report = _run(vectors, "fakes.adapters:NO_HALF", case=_first(vectors),
                  dtypes=("float32", "float16"))
    by_dtype = {(r.dtype, r.status) for r in report.results}
    assert by_dtype == {("float32", "pass"), ("float16", "skip")}
    skip = next(r for r in report.results if r.status == "skip")
    assert skip.message == "no float16 kernels in this fake"
    assert not report.failed


def test_missing_device_gives_skips(vectors: Path) -> None:
    report = _run(vectors, "fakes.adapters:REFERENCE", case=_first(vectors), device="cuda")
    assert {r.status for r in report.results} == {"skip"}
    assert "device 'cuda' is not available" in report.results[0].message
    # nothing ran on the requested device: never a silent pass
    assert report.failed
    assert "no check ran" in report.meta["aborted"]


def test_adapter_that_fails_to_load_errors_every_check(vectors: Path) -> None:
    report = _run(vectors, "fakes.adapters:broken_factory", case=_first(vectors))
    assert {r.status for r in report.results} == {"error"}
    assert "ImportError: deliberately missing dependency" in report.adapters[0].load_error
    assert report.failed


def test_vector_skipped_case_is_a_skip_with_the_vectors_reason(vectors: Path) -> None:
    manifest = load_manifest(vectors)
    skipped = manifest.skipped("layer_norm", "float16")
    if not skipped:
        pytest.skip("the layer_norm catalog has no case skipped in float16")
    name, reason = skipped[0]
    report = _run(vectors, "fakes.adapters:REFERENCE", case=name, dtypes=("float16",))
    assert {r.status for r in report.results} == {"skip"}
    assert reason in report.results[0].message


@pytest.mark.parametrize(("change", "pattern"), [
    ({"methods": ("layer_norm", "no_such_norm")}, "unknown method 'no_such_norm'"),
    ({"dtypes": ("float8",)}, "unknown dtype 'float8'"),
    ({"checks": ("hessian",)}, "unknown check 'hessian'"),
    ({"cases": ("no-case-has-this-name",)}, "the selection matches no test"),
], ids=["method", "dtype", "check", "case"])
def test_bad_selection_is_a_clear_error(vectors: Path, change: dict[str, object],
                                        pattern: str) -> None:
    base = {"adapters": ("fakes.adapters:REFERENCE",), "methods": ("layer_norm",),
            "vectors": str(vectors)}
    with pytest.raises(SelectionError, match=pattern):
        Runner(RunConfig(**{**base, **change}), compare=strict_compare)  # type: ignore[arg-type]


def test_checks_follow_the_quantities() -> None:
    quantities = {"forward/y": "output", "forward/mean": "statistic",
                  "forward/running_mean": "state", "vjp/x": "input_grad", "jvp": "jvp"}
    assert check_of("forward/running_mean", "state") == "state"
    assert check_of("forward/mean", "statistic") == "forward"
    assert checks_of(quantities) == ("forward", "state", "vjp", "jvp")


def test_all_ids_cover_every_dtype_and_check(vectors: Path) -> None:
    ids = all_ids(load_manifest(vectors))
    name = _first(vectors)
    assert {f"layer_norm[{name}]-{d}-{c}" for d in ("float64", "bfloat16") for c in CHECKS} <= ids
    assert f"layer_norm[{name}]-float32-state" not in ids  # layer_norm has no running state


# Ledger ---------------------------------------------------------------------------------------


def _ledger(tmp_path: Path, adapter: str, body: str) -> Path:
    (tmp_path / f"{adapter}.toml").write_text(body)
    return tmp_path


def test_ledger_turns_a_failure_into_xfail(vectors: Path, tmp_path: Path) -> None:
    name = _first(vectors)
    ledger = _ledger(tmp_path, "fake_off", f'''
[[xfail]]
id = "layer_norm[{name}]-float32-jvp"
reason = "deliberately off by 1%"
evidence = "tests/fakes/adapters.py"
''')
    report = _run(vectors, "fakes.adapters:OFF", case=name, ledger_dir=ledger)
    jvp = next(r for r in report.results if r.check == "jvp")
    assert jvp.status == "xfail"
    assert jvp.ledger == "deliberately off by 1% (evidence: tests/fakes/adapters.py)"
    assert "Mismatched elements" in jvp.message
    assert not report.failed
    assert report.adapters[0].ledger == str(ledger / "fake_off.toml")


def test_ledger_is_strict_an_unexpected_pass_fails_the_run(vectors: Path,
                                                           tmp_path: Path) -> None:
    name = _first(vectors)
    ledger = _ledger(tmp_path, "fake_reference", f'''
[[xfail]]
id = "layer_norm[{name}]-float32-vjp"
reason = "was broken once"
evidence = "https://example.invalid/issue/1"
''')
    report = _run(vectors, "fakes.adapters:REFERENCE", case=name, ledger_dir=ledger)
    vjp = next(r for r in report.results if r.check == "vjp")
    assert vjp.status == "xpass"
    assert "unexpectedly passed" in vjp.message
    assert report.failed


def test_device_specific_entry_applies_only_on_that_device(vectors: Path,
                                                           tmp_path: Path) -> None:
    name = _first(vectors)
    ledger = _ledger(tmp_path, "fake_off", f'''
[[xfail]]
id = "layer_norm[{name}]-float32-jvp"
reason = "only on GPUs"
evidence = "https://example.invalid/issue/2"
device = "cuda"
''')
    report = _run(vectors, "fakes.adapters:OFF", case=name, ledger_dir=ledger)
    assert next(r for r in report.results if r.check == "jvp").status == "fail"


@pytest.mark.parametrize(("body", "pattern"), [
    ('[[xfail]]\nid = "layer_norm[nope]-float32-jvp"\nreason = "r"\nevidence = "e"\n',
     r"test id 'layer_norm\[nope\]-float32-jvp' does not exist"),
    ('[[xfail]]\nid = "ID"\nevidence = "e"\n', "key 'reason' is None, expected a non-empty"),
    ('[[xfail]]\nid = "ID"\nreason = "r"\nevidence = ""\n', "key 'evidence' is ''"),
    ('[[xfail]]\nid = "ID"\nreason = "r"\nevidence = "e"\nstrict = false\n',
     r"unknown key\(s\) \['strict'\]"),
    ('[[xfail]]\nid = "ID"\nreason = "r"\nevidence = "e"\n' * 2, "duplicate entry"),
    ("[[xfail]\n", "invalid TOML"),
], ids=["unknown-id", "no-reason", "empty-evidence", "unknown-key", "duplicate", "bad-toml"])
def test_bad_ledgers_are_rejected_at_load_time(vectors: Path, tmp_path: Path, body: str,
                                               pattern: str) -> None:
    ledger = _ledger(tmp_path, "fake_reference",
                     body.replace("ID", f"layer_norm[{_first(vectors)}]-float32-jvp"))
    with pytest.raises(LedgerError, match=pattern) as info:
        _run(vectors, "fakes.adapters:REFERENCE", case=_first(vectors), ledger_dir=ledger)
    assert str(ledger / "fake_reference.toml") in str(info.value)


def test_the_step_counter_arrives_as_state_whenever_statistics_are_tracked() -> None:
    import numpy as np
    from normspec.conformance.runner import adapter_arguments
    from normspec.conformance.vectors import load_manifest

    manifest = load_manifest()
    tracking = 0
    for case in manifest.cases("batch_norm", "float32"):
        inputs, hyper = adapter_arguments(case.inputs, case.hyper)
        assert "num_batches_tracked" not in hyper, case.name
        if "running_mean" in inputs:
            tracking += 1
            counter = inputs["num_batches_tracked"]
            assert counter.dtype == np.int64, case.name
            assert counter.shape == (), case.name
        else:
            assert "num_batches_tracked" not in inputs, case.name
    assert tracking >= 20
    counted = manifest.case("batch_norm", "float32", "train-cumulative-nbt=4")
    assert int(counted.inputs["num_batches_tracked"]) == 4
