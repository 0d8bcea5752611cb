"""The GPU path of ``normspec bench``, checked on the CPU: synchronization on a (fake) CUDA
device, torch.compile's availability rule, peaks and cache sizes from a GPU's name, and the
prepared GPU script's plan and time budget (benchmarks/gpu_run.py) with a fake runner.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from normspec.adapters.torch_adapter import bench as torch_bench
from normspec.conformance.bench import harness

ROOT = Path(__file__).resolve().parents[1]


def _gpu_run() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_run", ROOT / "benchmarks" / "gpu_run.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_run"] = module
    spec.loader.exec_module(module)
    return module


def test_torch_calls_synchronize_on_cuda_and_not_on_the_cpu() -> None:
    calls: list[Any] = []
    fake = SimpleNamespace(cuda=SimpleNamespace(synchronize=calls.append))
    cuda = SimpleNamespace(type="cuda")
    torch_bench._sync(fake, cuda)()
    assert calls == [cuda]
    torch_bench._sync(fake, SimpleNamespace(type="cpu"))()
    assert calls == [cuda]


def test_torch_compile_needs_triton_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "triton" else real(name, *a))
    assert "Triton" in str(torch_bench.compiler_missing("cuda"))


def test_torch_compile_needs_a_cxx_compiler_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(torch_bench.shutil, "which", lambda name: None)
    assert "C++ compiler" in str(torch_bench.compiler_missing("cpu"))
    monkeypatch.setattr(torch_bench.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert torch_bench.compiler_missing("cpu") is None


def test_a_gpu_run_compares_with_l2_and_the_spec_peak(monkeypatch: pytest.MonkeyPatch) -> None:
    info = {"name": "NVIDIA H200", "l2_cache_bytes": 60 << 20, "memory_bytes": 1,
            "multiprocessors": 132}
    monkeypatch.setattr(harness.machine, "gpu_info", lambda: info)
    h = harness.Harness(harness.Config(adapters=(), device="cuda"))
    assert h.peak() == (4800.0, "spec sheet (H200)")
    assert h.cache_bytes() == 60 << 20
    assert h._dram(61 << 20) is True
    assert h.document()["gpu"] == info
    given = harness.Harness(harness.Config(adapters=(), device="cuda", peak_gbs=1000.0))
    assert given.peak() == (1000.0, "--peak-gbs")


def test_gpu_script_plans_every_step_on_a_cuda_machine(tmp_path: Path) -> None:
    gpu_run = _gpu_run()
    steps = gpu_run.plan(tmp_path, {"torch_cuda": "NVIDIA H200", "jax_gpu": ["cuda", "gpu"]})
    assert [s.name for s in steps] == ["bench-eager-jit", "bench-compile", "conformance-cuda"]
    for step in steps:
        argv = list(step.argv)
        assert argv[argv.index("--device") + 1] == "cuda"
        for m in gpu_run.METHODS:
            assert m in argv
    eager = list(steps[0].argv)
    assert {"torch", "jax"} <= set(eager)
    assert {"bfloat16", "float32"} <= set(eager)
    assert "--mode" not in eager  # forward and forward+backward: the default
    assert "compile" in steps[1].argv
    assert "--no-sweep" in steps[1].argv
    assert steps[2].argv[1] == "run"
    assert "jax" in steps[2].argv


def test_gpu_script_without_jax_gpu_benchmarks_torch_only(tmp_path: Path) -> None:
    gpu_run = _gpu_run()
    steps = gpu_run.plan(tmp_path, {"torch_cuda": "NVIDIA A100", "jax_gpu": []})
    assert "jax" not in steps[0].argv
    assert gpu_run.plan(tmp_path, {"torch_cuda": None, "jax_gpu": []}) == []


def test_gpu_script_keeps_to_its_budget(tmp_path: Path) -> None:
    gpu_run = _gpu_run()
    steps = gpu_run.plan(tmp_path, {"torch_cuda": "NVIDIA H200", "jax_gpu": ["cuda"]})
    now = [0.0]
    ran: list[tuple[str, float]] = []

    def runner(argv: list[str], limit: float) -> int:
        ran.append((argv[1], limit))
        now[0] += 260.0  # every step takes 260 s
        return 0

    log = gpu_run.execute(steps, 540.0, runner=runner, clock=lambda: now[0])
    assert [e["status"] for e in log] == ["ran", "ran", "skipped"]
    assert ran == [("bench", 300.0), ("bench", 240.0)]
    assert "20 s left" in str(log[2]["reason"])
