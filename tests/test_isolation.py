"""The worker process: an adapter that raises, hangs or kills its process gives an outcome
with an error for that call, and the following calls still run."""

from __future__ import annotations

import numpy as np
import pytest
from normspec.conformance.isolation import Call, Foreign, Worker, WorkerStartError

HYPER = {"axis": -1, "eps": 1e-5}


def _inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {"x": rng.standard_normal((3, 5)), "weight": rng.standard_normal(5)}


def _calls() -> list[Call]:
    rng = np.random.default_rng(8)
    g = rng.standard_normal((3, 5))
    t = {"x": rng.standard_normal((3, 5)), "weight": rng.standard_normal(5)}
    return [Call("forward"), Call("vjp", {"cotangent": g}), Call("jvp", {"tangent": t}),
            Call("second_order", {"cotangent": g, "tangent": t})]


def _run(spec: str, timeout: float = 30.0, **kw: int) -> list:
    with Worker(spec, "cpu", ["layer_norm"], ["float32"], timeout=timeout, **kw) as worker:
        worker.start()
        return worker.run_case("layer_norm", "float32", _inputs(), HYPER, _calls())


def test_start_reports_name_versions_devices_and_support() -> None:
    with Worker("fakes.adapters:NO_HALF", "cpu", ["layer_norm"], ["float32", "float16"]) as w:
        info = w.start()
    assert info.name == "fake_no_half"
    assert info.versions["fake"] == "1"
    assert info.devices == ("cpu",)
    assert info.support["layer_norm", "float32"].state == "supported"
    assert info.support["layer_norm", "float32"].kind == "composed"
    assert info.support["layer_norm", "float16"].state == "unsupported"
    assert info.support["layer_norm", "float16"].reason == "no float16 kernels in this fake"


def test_a_correct_adapter_answers_every_call() -> None:
    outcomes = _run("fakes.adapters:REFERENCE")
    assert [o.op for o in outcomes] == ["forward", "vjp", "jvp", "second_order"]
    assert all(o.ok for o in outcomes)
    assert set(outcomes[0].value) == {"y", "mean", "var", "rstd"}
    assert outcomes[2].value.shape == (3, 5)


def test_raising_adapter_gives_its_traceback_and_the_case_goes_on() -> None:
    outcomes = _run("fakes.adapters:RAISING")
    assert [o.ok for o in outcomes] == [True, True, False, True]
    assert "RuntimeError: deliberate failure inside the adapter" in outcomes[2].error
    assert "fakes/adapters.py" in outcomes[2].error
    assert "isolation.py" not in outcomes[2].error  # the worker's own frames are left out


def test_foreign_objects_come_back_described_not_unpickled() -> None:
    outcomes = _run("fakes.adapters:FOREIGN")
    assert isinstance(outcomes[2].value, Foreign)
    assert outcomes[2].value.type_name == "builtins.list"


@pytest.mark.parametrize(("spec", "signal"), [
    ("fakes.adapters:SEGFAULTING", "SIGSEGV"), ("fakes.adapters:ABORTING", "SIGABRT")],
    ids=["segfault", "abort"])
def test_crash_is_an_error_and_a_new_worker_runs_the_rest(spec: str, signal: str) -> None:
    outcomes = _run(spec)
    assert [o.ok for o in outcomes] == [True, True, False, True]
    assert f"killed by signal {signal} during jvp" in outcomes[2].error
    assert "faulthandler" in outcomes[2].error
    assert outcomes[3].value["x"].shape == (3, 5)


def test_hang_past_the_timeout_is_an_error_and_the_rest_runs() -> None:
    outcomes = _run("fakes.adapters:HANGING", timeout=0.5)
    assert [o.ok for o in outcomes] == [True, True, False, True]
    assert "timed out: jvp did not return within 0.5 s" in outcomes[2].error


def test_worker_gives_up_after_repeated_crashes() -> None:
    with Worker("fakes.adapters:SEGFAULTING", "cpu", ["layer_norm"], ["float32"],
                max_restarts=0) as worker:
        worker.start()
        jvp = [c for c in _calls() if c.op == "jvp"]
        first = worker.run_case("layer_norm", "float32", _inputs(), HYPER, jvp)
        second = worker.run_case("layer_norm", "float32", _inputs(), HYPER, jvp)
    assert "SIGSEGV" in first[0].error
    assert second[0].error.startswith("not run: jvp crashed or timed out 1 times in a row")


def test_answers_to_other_calls_do_not_reset_the_give_up_count() -> None:
    # case_support answers at once, forward hangs: the case_support answers in between must
    # not restart the count, or a hanging adapter costs one timeout per case (hours).
    calls = [Call("case_support"), Call("forward")]
    with Worker("fakes.adapters:HANGING_FORWARD", "cpu", ["layer_norm"], ["float32"],
                timeout=0.5, max_restarts=1) as worker:
        worker.start()
        runs = [worker.run_case("layer_norm", "float32", _inputs(), HYPER, calls)
                for _ in range(4)]
    forward = [next(o for o in run if o.op == "forward") for run in runs]
    assert [o.error.split(":")[0] for o in forward] == ["timed out", "timed out", "not run",
                                                        "not run"]
    assert all(o.duration_s == 0.0 for o in forward[2:])  # given up: never waited on again


def test_devices_must_be_a_tuple_of_names_not_a_string() -> None:
    with Worker("fakes.adapters:STRING_DEVICES", "cpu", ["layer_norm"], ["float32"]) as worker, \
            pytest.raises(WorkerStartError, match="devices\\(\\) returned str 'cpu'"):
        worker.start()


def test_ndarray_subclass_results_cross_as_plain_arrays() -> None:
    with Worker("fakes.adapters:SUBCLASS_RESULT", "cpu", ["layer_norm"], ["float32"]) as worker:
        worker.start()
        (out,) = worker.run_case("layer_norm", "float32", _inputs(), HYPER, [Call("forward")])
    assert out.ok, out.error
    assert type(out.value["y"]) is np.ndarray


def test_load_failure_raises_with_the_adapters_traceback() -> None:
    with Worker("fakes.adapters:broken_factory", "cpu", ["layer_norm"], ["float32"]) as worker, \
            pytest.raises(WorkerStartError, match="ImportError: deliberately missing dependency"):
        worker.start()


def test_in_place_updates_do_not_leak_into_later_calls() -> None:
    # MUTATING adds 1 to x after each forward; a leaked update would change the second one.
    inputs = _inputs()
    with Worker("fakes.adapters:MUTATING", "cpu", ["layer_norm"], ["float32"]) as worker:
        worker.start()
        a, b = worker.run_case("layer_norm", "float32", inputs, HYPER,
                               [Call("forward"), Call("forward")])
    np.testing.assert_array_equal(a.value["mean"], b.value["mean"])
