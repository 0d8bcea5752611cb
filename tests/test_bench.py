"""``normspec bench``: the bytes model, the statistics, the JSON schema, the harness and the
CLI on tiny shapes with the numpy adapter, and the fallback for a conformance-only adapter.

No speed is asserted anywhere: timing figures are only checked for shape and consistency.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from normspec import reference
from normspec.adapters.bench import Prepared, is_benchmarkable
from normspec.adapters.numpy_adapter import ADAPTER as NUMPY
from normspec.conformance.bench import bytes_model, harness, machine, output, timing, workloads
from normspec.conformance.cli import main

TINY = timing.Budget(warmup=1, seconds=0.0, min_samples=2, max_samples=2)


@pytest.fixture
def tiny_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every family at two tiny sizes (one table shape, one sweep point), so runs take
    milliseconds."""
    def shapes(family: str, device: str, *, quick: bool) -> tuple[workloads.Shape, ...]:
        if family == "rows":
            return (workloads.Shape("rows", "rows", (8, 64)),
                    workloads.Shape("rows", "sweep", (4, 64)))
        return (workloads.Shape("maps", "maps", (2, 32, 4, 4)),
                workloads.Shape("maps", "sweep", (1, 32, 4, 4)))

    monkeypatch.setattr(workloads, "shapes", shapes)


# --- the bytes model ---

@pytest.mark.parametrize("method", reference.METHODS)
def test_every_registered_method_has_a_bytes_model(method: str) -> None:
    from normspec.conformance.vectors import catalog

    case = catalog.load_catalog(method).cases[0]
    shape = case.steps[0].shape if case.steps else case.shape
    hyper = case.steps[0].hyper if case.steps else case.hyper
    x = int(np.prod(shape)) * 4
    module = reference.get(method)
    y = x if not hasattr(module, "output_shape") else int(
        np.prod(module.output_shape(tuple(shape), hyper))) * 4
    fwd = bytes_model.model(method, shape, hyper, dtype="float32", mode="forward")
    both = bytes_model.model(method, shape, hyper, dtype="float32", mode="forward+backward")
    assert (fwd.io_read, fwd.io_write) == (x, y)
    assert (both.io_read, both.io_write) == (2 * x + y, x + y)
    assert both.extra >= fwd.extra >= 0


def test_bytes_model_of_layer_norm_counts_parameters_and_statistics_apart() -> None:
    t = bytes_model.model("layer_norm", (4096, 1024), {"axis": -1, "eps": 1e-5},
                          dtype="bfloat16", mode="forward+backward")
    x = 4096 * 1024 * 2
    assert t.io == 5 * x
    params = 2 * 1024 * 2                # weight and bias in bfloat16
    saved = 4096 * 2 * 4                 # mean and rstd per row, in float32
    assert t.extra_read == 2 * params + saved
    assert t.extra_write == saved + params  # the saved statistics, the parameter gradients


def test_bytes_model_of_batch_norm_counts_its_state_read_and_written() -> None:
    hyper = workloads.SPECS["batch_norm"].hyper
    t = bytes_model.model("batch_norm", (8, 16, 4, 4), hyper, dtype="float16", mode="forward")
    state = 2 * 16 * 4 + 8               # float32 running mean and var, the int64 counter
    assert t.extra_read == 2 * 16 * 2 + state
    assert t.extra_write == state


def test_rms_norm_saves_one_statistic_and_layer_norm_two() -> None:
    hyper = {"axis": -1, "eps": 1e-6}
    rms = bytes_model.arrays("rms_norm", (64, 32), hyper, dtype="float32", present=("x",))
    ln = bytes_model.arrays("layer_norm", (64, 32), hyper, dtype="float32", present=("x",))
    assert (rms.saved, ln.saved) == (64 * 4, 2 * 64 * 4)


def test_overrides_say_why() -> None:
    for method in bytes_model.OVERRIDES:
        assert method in reference.METHODS
    lrn = bytes_model.notes("local_response_norm", (2, 7, 3),
                            {"size": 3, "alpha": 1e-4, "beta": 0.75, "k": 2.0}, dtype="float32")
    assert any("recomputes" in n for n in lrn)


def test_bytes_model_rejects_unknown_mode_and_dtype() -> None:
    with pytest.raises(ValueError, match="argument 'mode'"):
        bytes_model.model("layer_norm", (2, 3), {"axis": -1, "eps": 0.0}, dtype="float32",
                          mode="backward")
    with pytest.raises(ValueError, match="argument 'dtype'"):
        bytes_model.model("layer_norm", (2, 3), {"axis": -1, "eps": 0.0}, dtype="int8",
                          mode="forward")


# --- statistics and timing ---

def test_stats_median_quartiles_and_extremes() -> None:
    s = timing.Stats.of([4.0, 1.0, 3.0, 2.0, 100.0])
    assert (s.median, s.min, s.max, s.n) == (3.0, 1.0, 100.0, 5)
    assert (s.q1, s.q3, s.iqr) == (2.0, 4.0, 2.0)
    with pytest.raises(ValueError, match="samples"):
        timing.Stats.of([])


def test_measure_warms_up_then_samples_within_the_budget() -> None:
    calls: list[int] = []
    ticks = iter(float(i) for i in range(1000))
    budget = timing.Budget(warmup=3, seconds=4.0, min_samples=2, max_samples=10)
    stats = timing.measure(lambda: calls.append(1), budget, clock=lambda: next(ticks))
    # each sample takes 1 fake second: 4 samples spend the budget
    assert stats.n == 4
    assert stats.median == 1.0
    assert len(calls) == 3 + 4


def test_kernel_and_copy_are_sampled_in_alternation() -> None:
    order: list[str] = []
    budget = timing.Budget(warmup=1, seconds=0.0, min_samples=3, max_samples=3)
    kernel, copy = timing.measure_pair(lambda: order.append("k"), lambda: order.append("c"),
                                       budget)
    assert order == ["k", "c"] * 4  # the warm-up pair, then three
    assert copy is not None
    assert kernel.n == copy.n == 3


def test_a_call_longer_than_the_budget_gets_three_samples() -> None:
    ticks = iter(float(10 * i) for i in range(1000))  # every call takes 10 fake seconds
    budget = timing.Budget(warmup=1, seconds=1.0, min_samples=5, max_samples=100)
    stats, none = timing.measure_pair(lambda: None, None, budget, clock=lambda: next(ticks))
    assert none is None
    assert stats.n == 3


def test_gbs() -> None:
    assert timing.gbs(2_000_000_000, 0.5) == 4.0


# --- the machine ---

def test_last_level_cache_reads_sys(tmp_path: Path) -> None:
    for i, (level, kind, size) in enumerate([(1, "Data", "32K"), (2, "Unified", "1024K"),
                                             (3, "Unified", "32768K"), (1, "Instruction",
                                                                         "32K")]):
        d = tmp_path / f"index{i}"
        d.mkdir()
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
    size, source = machine.last_level_cache(tmp_path)
    assert size == 32 << 20
    assert "L3" in source


def test_known_peaks() -> None:
    assert machine.peak_for("NVIDIA H200")[0] == 4800.0
    assert machine.peak_for("NVIDIA H100 80GB HBM3")[0] == 3350.0
    assert machine.peak_for("AMD EPYC")[0] is None


# --- the harness, the JSON and the CLI ---

def _run(adapters: tuple[str, ...], **kw: Any) -> dict[str, Any]:
    config = harness.Config(adapters=adapters, budget=TINY, **kw)
    h = harness.Harness(config)
    return h.run(h.plan())


def test_numpy_run_validates_against_the_schema(tiny_shapes: None) -> None:
    doc = _run(("numpy",), methods=("layer_norm", "group_norm"))
    output.validate(doc)
    ok = [r for r in doc["results"] if r["status"] == "ok"]
    assert {(r["method"], r["mode"], r["kind"]) for r in ok} == {
        (m, mode, k) for m in ("layer_norm", "group_norm")
        for mode in ("forward", "forward+backward") for k in ("rows", "maps", "sweep")
        if (m == "layer_norm") == (k == "rows") or k == "sweep"}
    for r in ok:
        assert r["timing"] == "prepared"
        assert r["label"] == "numpy/numpy"
        assert r["gbs"] == pytest.approx(r["bytes"]["io"] / r["time_s"]["median"] / 1e9)
        assert r["copy"]["nbytes"] == r["x_bytes"]
        assert r["pct_copy"] == pytest.approx(100 * r["gbs"] / r["copy"]["gbs"])
        assert r["pct_peak"] is None
        assert r["dram"] is False
    assert doc["machine"]["llc_source"]
    assert "XLA_FLAGS" in doc["machine"]["env"]
    assert "numpy" in doc["adapters"]["numpy"]["versions"]


def test_schema_rejects_a_result_without_its_timing() -> None:
    doc = {"schema": "normspec-bench/1", "date": "", "normspec": "", "command": [],
           "device": "cpu", "quick": True,
           "machine": {"cpu": "", "cpu_count": 1, "llc_bytes": None, "llc_source": "",
                       "env": {}, "note": ""},
           "gpu": None, "peak": {"gbs": None, "source": ""}, "adapters": {},
           "bytes_model": {"convention": "", "page": ""}, "results": [{"status": "ok"}]}
    with pytest.raises(jsonschema.ValidationError):
        output.validate(doc)
    doc["results"] = [{"status": "skip", "reason": "why"}]
    output.validate(doc)


def test_a_conformance_only_adapter_is_timed_through_the_protocol(tiny_shapes: None) -> None:
    from fakes import adapters as fakes

    assert not is_benchmarkable(fakes.REFERENCE)
    assert is_benchmarkable(NUMPY)
    doc = _run(("fakes.adapters:REFERENCE",), methods=("rms_norm",), modes=("forward",))
    output.validate(doc)
    ok = [r for r in doc["results"] if r["status"] == "ok"]
    assert ok
    assert all(r["timing"] == "protocol" and r["variant"] == "protocol" for r in ok)
    # the roofline of an adapter without bench_copy is NumPy's copy on the CPU
    assert all("numpy copyto" in r["copy"]["how"] for r in ok)
    assert doc["adapters"][fakes.REFERENCE.name]["bench"] == "protocol"


class _Declining:
    """A benchmarkable adapter with a variant that cannot run and a mode it declines."""

    name = "declining"

    def versions(self) -> dict[str, str]:
        return {}

    def devices(self) -> tuple[str, ...]:
        return ("cpu",)

    def support(self, method: str, dtype: str, device: str) -> Any:
        return NUMPY.support(method, dtype, device)

    def forward(self, *a: Any, **k: Any) -> Any:
        raise AssertionError("a benchmarkable adapter is never timed through forward")

    vjp = jvp = second_order = forward

    def bench_variants(self, device: str) -> dict[str, str | None]:
        return {"fast": None, "gone": "no compiler here"}

    def bench_prepare(self, method: str, inputs: Any, hyper: Any, *, dtype: str, device: str,
                      variant: str, backward: bool, cotangent: Any) -> Prepared:
        if backward:
            raise NotImplementedError("forward only")
        if method == "group_norm":
            raise RuntimeError("kernel crashed")
        return Prepared(lambda: None, compile_s=0.25)

    def bench_copy(self, nbytes: int, *, dtype: str, device: str) -> Any:
        return lambda: None


def test_skips_and_errors_are_results_with_reasons(tiny_shapes: None) -> None:
    h = harness.Harness(harness.Config(adapters=("x",), methods=("layer_norm", "group_norm"),
                                       budget=TINY), load=lambda spec: _Declining())
    doc = h.run(h.plan())
    output.validate(doc)
    by = {(r.get("method"), r.get("mode"), r["status"]) for r in doc["results"]}
    assert ("layer_norm", "forward", "ok") in by
    assert ("layer_norm", "forward+backward", "skip") in by
    assert ("group_norm", "forward", "error") in by
    gone = [r for r in doc["results"] if r.get("variant") == "gone"]
    assert gone
    assert gone[0]["reason"] == "no compiler here"
    ok = [r for r in doc["results"] if r["status"] == "ok"]
    assert all(r["compile_s"] == 0.25 for r in ok)


def test_quick_leaves_compile_out_unless_asked() -> None:
    class Both(_Declining):
        def bench_variants(self, device: str) -> dict[str, str | None]:
            return {"eager": None, "compile": None}

    quick = harness.Harness(harness.Config(adapters=("x",), quick=True), load=lambda s: Both())
    quick.plan()
    assert quick.variants["declining"]["compile"] is not None
    asked = harness.Harness(harness.Config(adapters=("x",), quick=True, variants=("compile",)),
                            load=lambda s: Both())
    asked.plan()
    assert asked.variants["declining"] == {"compile": None}


def test_generic_workload_from_the_catalog() -> None:
    s = workloads.spec("lp_norm")
    assert isinstance(s, workloads.Spec)
    assert "lp_norm.toml" in s.source
    assert s.family == "rows"
    assert s.present == ("x",)
    assert isinstance(workloads.spec("sync_batch_norm"), str)  # integer inputs: no generator
    assert "unknown method" in str(workloads.spec("nope"))


def test_workload_inputs_are_rounded_to_the_dtype() -> None:
    s = workloads.SPECS["batch_norm"]
    w = workloads.make("batch_norm", s, workloads.Shape("maps", "maps", (2, 4, 3, 3)),
                       "bfloat16")
    x = w.inputs["x"]
    assert x is not None
    assert np.array_equal(workloads.rounded(x, "bfloat16"), x)
    assert w.inputs["num_batches_tracked"] is not None
    assert w.inputs["running_var"] is not None
    assert (w.inputs["running_var"] > 0).all()
    assert w.cotangent.shape == (2, 4, 3, 3)


def test_cli_quick_prints_the_table_and_writes_json_and_plots(
        tiny_shapes: None, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(timing, "QUICK", TINY)
    monkeypatch.setattr(harness, "QUICK", TINY)

    def three(family: str, device: str, *, quick: bool) -> tuple[workloads.Shape, ...]:
        return tuple(workloads.Shape("rows", "sweep" if n != 8 else "rows", (n, 64))
                     for n in (2, 4, 8))

    monkeypatch.setattr(workloads, "shapes", three)
    out = tmp_path / "bench.json"
    status = main(["bench", "--quick", "--adapter", "numpy", "--method", "rms_norm",
                   "--json", str(out), "--plot", str(tmp_path / "plots"), "--no-progress"])
    assert status == 0
    text = capsys.readouterr().out
    assert "GB/s" in text
    assert "% copy" in text
    assert "rms_norm" in text
    doc = json.loads(out.read_text())
    output.validate(doc)
    assert doc["quick"] is True
    assert "--quick" in doc["command"]
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "rms_norm-float32-forward-cpu.png", "rms_norm-float32-forward_backward-cpu.png"]


def test_cli_rejects_unknown_methods_and_adapters(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--method", "nope", "--adapter", "numpy"]) == 2
    assert main(["bench", "--adapter", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown method" in err
    assert "unknown adapter" in err


def test_the_guide_s_benchmarkable_example_runs(tiny_shapes: None) -> None:
    pytest.importorskip("torch")
    root = Path(__file__).resolve().parents[1]
    spec = f"{root / 'docs' / 'examples' / 'minimal_bench_adapter.py'}:ADAPTER"
    doc = _run((spec,), methods=("rms_norm",))
    output.validate(doc)
    ok = [r for r in doc["results"] if r["status"] == "ok"]
    assert {r["mode"] for r in ok} == {"forward", "forward+backward"}
    assert all(r["label"] == "minimal-bench/eager" for r in ok)
    assert all(r["copy"]["how"] == "minimal-bench bench_copy" for r in ok)


@pytest.mark.parametrize(("adapter", "module", "variant"), [
    pytest.param("torch", "torch", "eager", marks=pytest.mark.torch),
    pytest.param("jax", "jax", "jit", marks=pytest.mark.jax),
    pytest.param("onnxruntime", "onnxruntime", "ort", marks=pytest.mark.onnx)])
def test_built_in_extensions_time_their_own_kernels(tiny_shapes: None, adapter: str, module: str,
                                                     variant: str) -> None:
    pytest.importorskip(module)
    doc = _run((adapter,), methods=("layer_norm",), variants=(variant,), sweep=False)
    output.validate(doc)
    by_mode = {r["mode"]: r for r in doc["results"] if r.get("method") == "layer_norm"}
    assert by_mode["forward"]["status"] == "ok"
    assert by_mode["forward"]["copy"]["gbs"] > 0
    if adapter == "onnxruntime":  # forward only: the backward is a skip with the reason
        assert by_mode["forward+backward"]["status"] == "skip"
        assert "derivatives" in by_mode["forward+backward"]["reason"]
    else:
        assert by_mode["forward+backward"]["status"] == "ok"
    if adapter == "jax":  # lowered and compiled ahead, reported apart
        assert by_mode["forward"]["compile_s"] > 0
