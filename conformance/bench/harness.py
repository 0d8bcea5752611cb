"""The benchmark run: every (method, shape, dtype, adapter variant, mode), timed, with its copy
roofline measured in the same run on a buffer of the input's size.

Each sample of a kernel is followed by a sample of the copy (see
:func:`.timing.measure_pair`), so that kernel and roofline see the same machine load.

An adapter with the benchmarking extension (:mod:`normspec.adapters.bench`) prepares each call
on its device and times only the call; any other adapter is timed through the conformance
protocol (``forward``, and ``forward`` then ``vjp``), conversions included, under the variant
name ``protocol``, with NumPy's copy as the roofline on the CPU. Nothing in a run raises
for one bad combination: it becomes a ``skip`` (with the reason) or an ``error`` result.
"""

from __future__ import annotations

import datetime as _dt
import gc
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from normspec.adapters.bench import Prepared, is_benchmarkable

from . import bytes_model, machine, workloads
from .timing import FULL, QUICK, Budget, Stats, gbs, measure_pair

SCHEMA_ID = "normspec-bench/1"
PROTOCOL = "protocol"
CONVENTION = ("io = bytes of the arrays of x's shape: forward reads x and writes y (2|x|); "
              "forward+backward also reads x and dy and writes dx (5|x|). extra = parameters, "
              "state, constants, saved statistics and parameter gradients. GB/s = io / median "
              "time; see spec/bytes-model.md")


@dataclass(frozen=True)
class Config:
    """What to benchmark."""

    adapters: tuple[str, ...]
    device: str = "cpu"
    methods: tuple[str, ...] = workloads.DEFAULT_METHODS
    dtypes: tuple[str, ...] = ("float32",)
    modes: tuple[str, ...] = bytes_model.MODES
    variants: tuple[str, ...] = ()
    """Only these variants (empty: all; ``--quick`` leaves out ``compile``)."""
    quick: bool = False
    sweep: bool = True
    """Include the size sweep (off: only the rows/maps shapes of the table)."""
    peak_gbs: float | None = None
    note: str = ""
    seed: int = 0
    budget: Budget | None = None

    @property
    def timing(self) -> Budget:
        return self.budget or (QUICK if self.quick else FULL)


@dataclass(frozen=True)
class Item:
    """One timed combination, before it runs (the progress bar counts these)."""

    adapter: str
    variant: str
    method: str
    dtype: str
    mode: str
    shape: workloads.Shape


Load = Callable[[str], Any]


def _default_load(spec: str) -> Any:
    from normspec.adapters import registry

    return registry.load(spec)


@dataclass
class Harness:
    """Plans and runs a benchmark; :attr:`document` is the JSON result."""

    config: Config
    load: Load = _default_load
    argv: Sequence[str] = ()
    adapters: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, dict[str, str | None]] = field(default_factory=dict)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    _copies: dict[str, tuple[tuple[str, int], Callable[[], object] | None, str]] = field(
        default_factory=dict)

    # --- planning ---

    def _variants(self, adapter: Any) -> dict[str, str | None]:
        if not is_benchmarkable(adapter):
            ok = self.config.device in adapter.devices()
            return {PROTOCOL: None if ok else
                    f"device {self.config.device!r} unavailable to {adapter.name}"}
        found = dict(adapter.bench_variants(self.config.device))
        wanted = self.config.variants
        out: dict[str, str | None] = {}
        for v, why in found.items():
            if wanted and v not in wanted:
                continue
            if not wanted and self.config.quick and v == "compile" and why is None:
                why = ("left out by --quick: its first compile takes about a minute on a CPU; "
                       "select it with --variant compile")
            out[v] = why
        return out

    def plan(self) -> list[Item]:
        """Load the adapters and list every combination that will be timed."""
        for spec in self.config.adapters:
            adapter = self.load(spec)
            self.adapters[adapter.name] = adapter
            self.variants[adapter.name] = self._variants(adapter)
        items: list[Item] = []
        for method in self.config.methods:
            s = workloads.spec(method)
            if isinstance(s, str):
                self._skip(method=method, reason=s)
                continue
            for shape in workloads.shapes(s.family, self.config.device, quick=self.config.quick):
                if shape.label == "sweep" and not self.config.sweep:
                    continue
                why = workloads.check_shape(method, s, shape.shape)
                if why is not None:
                    self._skip(method=method, reason=why, shape=shape)
                    continue
                for dtype in self.config.dtypes:
                    for name, adapter in self.adapters.items():
                        for variant, reason in self.variants[name].items():
                            if reason is not None:
                                continue
                            support = adapter.support(method, dtype, self.config.device)
                            if not support.supported:
                                self._skip(adapter=name, variant=variant, method=method,
                                           dtype=dtype, shape=shape, reason=support.reason)
                                continue
                            items.extend(Item(name, variant, method, dtype, mode, shape)
                                         for mode in self.config.modes)
        for name, table in self.variants.items():
            for variant, reason in table.items():
                if reason is not None:
                    self._skip(adapter=name, variant=variant, reason=reason)
        return items

    def _skip(self, **what: Any) -> None:
        shape = what.pop("shape", None)
        if shape is not None:
            what.update(family=shape.family, kind=shape.label, shape=list(shape.shape))
        self.skipped.append({"status": "skip", **what})

    # --- running ---

    def run(self, items: Sequence[Item], on_result: Callable[[dict[str, Any]], None] | None = None
            ) -> dict[str, Any]:
        """Time every item; returns the JSON document."""
        workload: workloads.Workload | None = None
        key: tuple[str, str, tuple[int, ...]] | None = None
        for item in items:
            if key != (item.method, item.dtype, item.shape.shape):
                workload = None
                gc.collect()
                s = workloads.spec(item.method)
                assert not isinstance(s, str)
                workload = workloads.make(item.method, s, item.shape, item.dtype, self.config.seed)
                key = (item.method, item.dtype, item.shape.shape)
            assert workload is not None
            result = self._one(item, workload)
            self.results.append(result)
            if on_result is not None:
                on_result(result)
        return self.document()

    def _prepare(self, adapter: Any, item: Item, w: workloads.Workload) -> Prepared:
        backward = item.mode == "forward+backward"
        if item.variant != PROTOCOL:
            prepared: Prepared = adapter.bench_prepare(
                item.method, w.inputs, w.hyper, dtype=item.dtype, device=self.config.device,
                variant=item.variant, backward=backward, cotangent=w.cotangent)
            return prepared

        def run() -> object:
            out = adapter.forward(item.method, w.inputs, w.hyper, dtype=item.dtype,
                                  device=self.config.device)
            if backward:
                return adapter.vjp(item.method, w.inputs, w.hyper, w.cotangent,
                                   dtype=item.dtype, device=self.config.device)
            return out

        return Prepared(run, None, note="the conformance protocol: float64 NumPy in and out, "
                                        "conversions included")

    def _copy(self, adapter: Any, dtype: str, nbytes: int
              ) -> tuple[Callable[[], object] | None, str]:
        """The copy kernel for ``nbytes`` (kept while the size stays, one per adapter), and
        how it copies or why there is none."""
        ckey = (dtype, nbytes)
        held = self._copies.get(adapter.name)
        if held is not None and held[0] == ckey:
            return held[1], held[2]
        self._copies.pop(adapter.name, None)  # free the last size's buffers first
        run: Callable[[], object] | None = None
        try:
            if is_benchmarkable(adapter):
                run = adapter.bench_copy(nbytes, dtype=dtype, device=self.config.device)
                how = f"{adapter.name} bench_copy"
            elif self.config.device == "cpu":
                from normspec.adapters.numpy_adapter._bench import NumpyBench

                run = NumpyBench().bench_copy(nbytes, dtype=dtype, device="cpu")
                how = "numpy copyto (the adapter has no bench_copy)"
            else:
                how = f"no copy kernel on {self.config.device}: the adapter has no bench_copy"
        except Exception as exc:  # a copy that cannot run leaves the percentage unknown
            run, how = None, f"copy failed: {type(exc).__name__}: {exc}"
        self._copies[adapter.name] = (ckey, run, how)
        return run, how

    def _one(self, item: Item, w: workloads.Workload) -> dict[str, Any]:
        adapter = self.adapters[item.adapter]
        traffic = bytes_model.model(item.method, item.shape.shape, w.hyper, dtype=item.dtype,
                                    mode=item.mode, present=w.present)
        x_bytes = int(np.prod(item.shape.shape)) * bytes_model.ITEMSIZE[item.dtype]
        record: dict[str, Any] = {
            "adapter": item.adapter, "variant": item.variant,
            "label": f"{item.adapter}/{item.variant}", "method": item.method,
            "dtype": item.dtype, "mode": item.mode, "family": item.shape.family,
            "kind": item.shape.label, "shape": list(item.shape.shape), "x_bytes": x_bytes,
            "bytes": traffic.as_dict(), "dram": self._dram(x_bytes),
            "timing": PROTOCOL if item.variant == PROTOCOL else "prepared",
        }
        copy_run, how = self._copy(adapter, item.dtype, x_bytes)
        try:
            prepared: Prepared | None = self._prepare(adapter, item, w)
            assert prepared is not None
            compile_s, note = prepared.compile_s, prepared.note
            # kernel and copy sampled in alternation: the same load for both
            stats, copy_stats = measure_pair(prepared.run, copy_run, self.config.timing)
        except NotImplementedError as exc:
            return {**record, "status": "skip", "reason": str(exc) or "not implemented"}
        except Exception as exc:
            return {**record, "status": "error", "reason": f"{type(exc).__name__}: {exc}"}
        finally:
            prepared = None  # free the device buffers of this call
        copy: dict[str, Any] = {"nbytes": x_bytes, "moved_bytes": 2 * x_bytes, "how": how}
        copy_bw = None
        if copy_stats is not None:
            copy_bw = gbs(2 * x_bytes, copy_stats.median)
            copy.update(time_s=copy_stats.as_dict(), gbs=copy_bw)
        else:
            copy["error"] = how
        bw = gbs(traffic.io, stats.median)
        peak = self.peak()[0]
        return {**record, "status": "ok", "reason": "", "note": note,
                **self._timed(stats, bw, traffic.total), "compile_s": compile_s,
                "copy": copy,
                "pct_copy": 100.0 * bw / copy_bw if copy_bw else None,
                "pct_peak": 100.0 * bw / peak if peak else None}

    @staticmethod
    def _timed(stats: Stats, bw: float, total: int) -> dict[str, Any]:
        return {"time_s": stats.as_dict(), "gbs": bw, "gbs_total": gbs(total, stats.median)}

    def _dram(self, x_bytes: int) -> bool | None:
        cache = self.cache_bytes()
        return None if cache is None else x_bytes > cache

    def cache_bytes(self) -> int | None:
        """The last-level cache the inputs are compared with: the GPU's L2, or the CPU's LLC."""
        if self.config.device != "cpu":
            info = self.gpu()
            return None if info is None else info.get("l2_cache_bytes")
        return machine.last_level_cache()[0]

    def gpu(self) -> dict[str, Any] | None:
        if self.config.device == "cpu":
            return None
        try:
            return machine.gpu_info()
        except Exception:  # no torch, or a broken CUDA install: the result says unknown
            return None

    def peak(self) -> tuple[float | None, str]:
        if self.config.peak_gbs is not None:
            return self.config.peak_gbs, "--peak-gbs"
        if self.config.device == "cpu":
            return None, "unknown for CPUs (pass --peak-gbs)"
        info = self.gpu()
        return machine.peak_for(info["name"]) if info else (None, "unknown: no GPU name")

    def document(self) -> dict[str, Any]:
        """The run as JSON (see spec/bench.schema.json)."""
        from .. import cli as _cli

        peak, source = self.peak()
        adapters = {}
        for name, adapter in self.adapters.items():
            try:
                versions = {k: str(v) for k, v in adapter.versions().items()}
            except Exception as exc:
                versions = {"error": f"{type(exc).__name__}: {exc}"}
            adapters[name] = {"versions": versions, "variants": self.variants[name],
                              "bench": "prepared" if is_benchmarkable(adapter) else PROTOCOL}
        return {
            "schema": SCHEMA_ID,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "normspec": _cli._version(),
            "command": list(self.argv) or ["normspec", "bench"],
            "device": self.config.device,
            "quick": self.config.quick,
            "budget": vars(self.config.timing),
            "machine": machine.host(self.config.note),
            "gpu": self.gpu(),
            "peak": {"gbs": peak, "source": source},
            "python_executable": sys.executable,
            "adapters": adapters,
            "bytes_model": {"convention": CONVENTION, "page": "spec/bytes-model.md"},
            "results": [*self.results, *self.skipped],
        }


def by_label(results: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """OK results grouped by ``adapter/variant``."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for r in results:
        if r.get("status") == "ok":
            out.setdefault(str(r["label"]), []).append(r)
    return out


__all__ = ["CONVENTION", "PROTOCOL", "SCHEMA_ID", "Config", "Harness", "Item", "by_label"]
