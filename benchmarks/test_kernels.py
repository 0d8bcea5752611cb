"""The pytest-benchmark suite (``nox -s bench``): each method's prepared call per adapter
variant, and each framework's copy roofline, on the first table shape of its family.

Kept out of the test session: pytest's ``testpaths`` is ``tests/``, and this folder is only
collected when named (``pytest benchmarks``). ``NORMSPEC_BENCH_DEVICE`` picks the device
(default ``cpu``). Each benchmark records the bytes model's ``io`` bytes and the effective GB/s
of its median in ``extra_info``, so ``--benchmark-json`` carries them.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from normspec.adapters import registry
from normspec.adapters.bench import is_benchmarkable
from normspec.conformance.bench import bytes_model, workloads

DEVICE = os.environ.get("NORMSPEC_BENCH_DEVICE", "cpu")
ADAPTERS = ("numpy", "torch", "jax", "onnxruntime")
METHODS = workloads.DEFAULT_METHODS
MODES = bytes_model.MODES


def _load(name: str) -> Any:
    try:
        adapter = registry.load(name)
        adapter.versions()
    except Exception as exc:  # an uninstalled framework: skipped, not failed
        pytest.skip(f"{name}: {type(exc).__name__}: {exc}")
    if not is_benchmarkable(adapter):
        pytest.skip(f"{name} has no benchmarking extension")
    return adapter


def _variants() -> list[tuple[str, str]]:
    pairs = [("numpy", "numpy"), ("torch", "eager"), ("torch", "compile"), ("jax", "jit"),
             ("onnxruntime", "ort")]
    return [p for p in pairs if p[0] in ADAPTERS]


def _shape(method: str) -> tuple[workloads.Spec, workloads.Shape]:
    spec = workloads.spec(method)
    assert isinstance(spec, workloads.Spec)
    return spec, workloads.shapes(spec.family, DEVICE, quick=False)[0]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("adapter_name", "variant"), _variants(),
                         ids=[f"{a}-{v}" for a, v in _variants()])
def test_method(benchmark: Any, adapter_name: str, variant: str, method: str,
                mode: str) -> None:
    adapter = _load(adapter_name)
    why = adapter.bench_variants(DEVICE).get(variant)
    if why is not None:
        pytest.skip(why)
    spec, shape = _shape(method)
    w = workloads.make(method, spec, shape, "float32")
    try:
        prepared = adapter.bench_prepare(method, w.inputs, w.hyper, dtype="float32",
                                         device=DEVICE, variant=variant,
                                         backward=mode != "forward", cotangent=w.cotangent)
    except NotImplementedError as exc:
        pytest.skip(str(exc))
    traffic = bytes_model.model(method, shape.shape, w.hyper, dtype="float32", mode=mode,
                                present=w.present)
    benchmark.extra_info.update(shape=list(shape.shape), io_bytes=traffic.io,
                                compile_s=prepared.compile_s, device=DEVICE)
    benchmark.pedantic(prepared.run, rounds=10, warmup_rounds=2, iterations=1)
    benchmark.extra_info["gbs"] = traffic.io / benchmark.stats.stats.median / 1e9


@pytest.mark.parametrize("adapter_name", ["numpy", "torch", "jax", "onnxruntime"])
def test_copy(benchmark: Any, adapter_name: str) -> None:
    adapter = _load(adapter_name)
    nbytes = 8192 * 2048 * 4 if DEVICE == "cpu" else 16384 * 8192 * 4
    run = adapter.bench_copy(nbytes, dtype="float32", device=DEVICE)
    benchmark.extra_info.update(nbytes=nbytes, device=DEVICE)
    benchmark.pedantic(run, rounds=10, warmup_rounds=2, iterations=1)
    benchmark.extra_info["gbs"] = 2 * nbytes / benchmark.stats.stats.median / 1e9
