"""The conformance runner: golden vectors -> adapter (in a worker) -> tolerance model -> results.

For each adapter x method x dtype x case, one worker round trip makes the calls the selected
checks need (the forward call serves both ``forward`` and ``state``); each returned quantity is
validated (type, dtype, shape, unexpected NaN: an ``error``) and compared with the tolerance
model (``pass`` or ``fail``), then the adapter's ledger is applied (``xfail``, ``xpass``).

:class:`AdapterSession` runs one case at a time (the pytest plugin uses it directly);
:class:`Runner` drives a whole selection and fills a :class:`~.results.Report`. Workers are
started with multiprocessing's *spawn* method, so a script that calls :class:`Runner` must keep
its own top-level code under ``if __name__ == "__main__":`` (the ``normspec`` command does).
"""

from __future__ import annotations

import fnmatch
import math
import platform
import shlex
import socket
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from .isolation import Call, Foreign, Outcome, SupportInfo, Worker, WorkerInfo, WorkerStartError
from .ledger import Ledger, load_ledger
from .results import CHECK_ORDER, AdapterRecord, QuantityResult, Report, Result, make_id
from .vectors import DTYPES, Manifest, VectorCase, load_manifest

DEFAULT_TIMEOUT = 60.0
"""Seconds one adapter call may take before it counts as hung (compilation included)."""

Compare = Callable[..., Any]
"""``compare_quantity(method, dtype, quantity, tol_class, got, expected, case, *, check)``."""


class SelectionError(ValueError):
    """An unknown method, dtype, check or case pattern in a run's selection."""


@dataclass(frozen=True)
class RunConfig:
    """What to run. Empty ``methods`` means every method that has vectors."""

    adapters: tuple[str, ...] = ("numpy",)
    device: str = "cpu"
    dtypes: tuple[str, ...] = DTYPES
    methods: tuple[str, ...] = ()
    case: str | None = None
    """A glob (fnmatch) on case names, e.g. ``offset_*``."""
    checks: tuple[str, ...] = CHECK_ORDER
    timeout: float = DEFAULT_TIMEOUT
    vectors: str | None = None
    """Directory holding ``manifest.json``; None means the installed spec/vectors."""
    ledger_dir: Path | None = None
    """Where ``<adapter>.toml`` ledgers are looked up; None means the built-in ledgers."""


@dataclass(frozen=True)
class PlannedCase:
    """One case to run in one dtype, with the checks that apply to it."""

    method: str
    dtype: str
    case: str
    checks: tuple[str, ...]
    quantities: Mapping[str, str]
    """Quantity name (``forward/y``, ``vjp/x``, ...) -> tolerance class."""
    skip_reason: str = ""
    """Why the vectors have no data for this case in this dtype (then every check skips)."""


def check_of(quantity: str, tol_class: str) -> str:
    """The check a quantity belongs to: ``forward/running_mean`` (class state) -> ``state``."""
    head = quantity.split("/", 1)[0]
    return "state" if head == "forward" and tol_class == "state" else head


def checks_of(quantities: Mapping[str, str]) -> tuple[str, ...]:
    """The checks a case has, in :data:`CHECK_ORDER`."""
    present = {check_of(q, c) for q, c in quantities.items()}
    return tuple(c for c in CHECK_ORDER if c in present)


def _case_quantities(manifest: Manifest, method: str) -> dict[str, Mapping[str, str]]:
    return {c["name"]: c["quantities"] for c in manifest.data["methods"][method]["cases"]}


def all_ids(manifest: Manifest) -> set[str]:
    """Every test id the vectors define (all methods, dtypes, cases and checks)."""
    ids: set[str] = set()
    for method in manifest.methods:
        quantities = _case_quantities(manifest, method)
        for dtype in manifest.dtypes(method):
            for case, qs in quantities.items():
                ids.update(make_id(method, case, dtype, c) for c in checks_of(qs))
    return ids


def _unknown(kind: str, names: Sequence[str], known: Sequence[str], where: str) -> None:
    bad = [n for n in names if n not in known]
    if bad:
        raise SelectionError(f"unknown {kind} {', '.join(map(repr, bad))}; expected names from "
                             f"{', '.join(known)} ({where})")


def plan(manifest: Manifest, config: RunConfig) -> list[PlannedCase]:
    """The cases and checks ``config`` selects, in a stable order (method, dtype, case)."""
    methods = config.methods or manifest.methods
    _unknown("method", methods, manifest.methods, f"methods with vectors in {manifest.source}")
    _unknown("dtype", config.dtypes, DTYPES, "the dtypes under test")
    _unknown("check", config.checks, CHECK_ORDER, "the checks")
    planned: list[PlannedCase] = []
    for method in methods:
        quantities = _case_quantities(manifest, method)
        for dtype in config.dtypes:
            if dtype not in manifest.dtypes(method):
                continue
            skipped = dict(manifest.skipped(method, dtype))
            for case, qs in quantities.items():
                if config.case is not None and not fnmatch.fnmatchcase(case, config.case):
                    continue
                checks = tuple(c for c in checks_of(qs) if c in config.checks)
                if checks:
                    planned.append(PlannedCase(method, dtype, case, checks, qs,
                                               skipped.get(case, "")))
    if not planned:
        raise SelectionError(
            f"the selection matches no test (methods {list(methods)}, dtypes "
            f"{list(config.dtypes)}, checks {list(config.checks)}, case {config.case!r})")
    return planned


def repro_command(spec: str, device: str, method: str, dtype: str, case: str, check: str
                  ) -> str:
    """One command that reruns exactly one check."""
    return shlex.join(["normspec", "run", "--adapter", spec, "--device", device, "--method",
                       method, "--dtype", dtype, "--case", case, "--check", check])


# Validation of returned values ----------------------------------------------------------------


class _Invalid(Exception):
    """A returned value the runner cannot compare: the check is an ``error``."""


class _Internal(_Invalid):
    """The comparison itself failed (a normspec bug): the check is an ``error`` too."""


def _as_checked_array(value: object, what: str, expected: np.ndarray) -> np.ndarray:
    if isinstance(value, Foreign):
        raise _Invalid(f"{what}: got {value.type_name} ({value.text}), expected a float64 "
                       f"numpy.ndarray")
    if not isinstance(value, np.ndarray):
        raise _Invalid(f"{what}: got {type(value).__name__}, expected a float64 numpy.ndarray")
    if value.dtype != np.float64:
        raise _Invalid(f"{what}: got dtype {value.dtype}, expected float64 (convert the "
                       f"framework's result with a widening cast after computing)")
    if value.shape != expected.shape:
        raise _Invalid(f"{what}: got shape {value.shape}, expected {expected.shape}")
    with np.errstate(invalid="ignore"):
        nan = np.isnan(value) & ~np.isnan(expected)
    if nan.any():
        first = [tuple(int(i) for i in row) for row in np.argwhere(nan)[:5]]
        raise _Invalid(f"{what}: NaN where the reference has none at {int(nan.sum())} of "
                       f"{value.size} elements; first indices {first}")
    return value


def _value_for(check: str, key: str, value: object, tol_class: str) -> object | None:
    """The returned array for quantity ``key`` of ``check``; None if optional and absent."""
    if check == "jvp":
        return value
    if isinstance(value, Foreign):
        raise _Invalid(f"{check}: got {value.type_name} ({value.text}), expected a dict of "
                       f"float64 arrays")
    if not isinstance(value, dict):
        raise _Invalid(f"{check}: got {type(value).__name__}, expected a dict of float64 arrays")
    if key not in value:
        if tol_class == "statistic" or key == "num_batches_tracked":
            # statistics a framework does not expose are not checked, nor is a step counter
            # that only some frameworks keep (PyTorch does, Flax does not)
            return None
        raise _Invalid(f"{check}: the result has no {key!r} (keys: {sorted(value)})")
    item: object = value[key]
    return item


# One adapter ----------------------------------------------------------------------------------


@dataclass
class AdapterSession:
    """One adapter, its worker, its ledger: runs one case at a time into results."""

    spec: str
    config: RunConfig
    manifest: Manifest
    compare: Compare
    worker: Worker | None = None
    info: WorkerInfo | None = None
    ledger: Ledger = field(default_factory=Ledger)
    load_error: str = ""
    apply_ledger: bool = True
    """False leaves statuses raw (the pytest plugin turns ledger entries into xfail marks)."""

    @classmethod
    def open(cls, spec: str, config: RunConfig, manifest: Manifest, compare: Compare,
             methods: Sequence[str], known_ids: set[str]) -> AdapterSession:
        """Start the worker and load the ledger; a load failure is kept in ``load_error``.

        A broken ledger raises :class:`~.ledger.LedgerError` (a usage error).
        """
        worker = Worker(spec, config.device, methods, config.dtypes, timeout=config.timeout)
        session = cls(spec=spec, config=config, manifest=manifest, compare=compare,
                      worker=worker)
        try:
            session.info = worker.start()
        except WorkerStartError as exc:
            session.load_error = str(exc)
            worker.close()
            session.worker = None
            return session
        try:
            session.ledger = load_ledger(session.info.name, config.ledger_dir, known_ids)
        except BaseException:
            session.close()
            raise
        return session

    @property
    def name(self) -> str:
        """The adapter's own name (its spec while it could not be loaded)."""
        return self.info.name if self.info is not None else self.spec

    def record(self) -> AdapterRecord:
        """What the report says about this adapter."""
        info = self.info
        return AdapterRecord(name=self.name, spec=self.spec,
                             versions=info.versions if info else {},
                             devices=info.devices if info else (), ledger=self.ledger.path,
                             load_error=self.load_error)

    def close(self) -> None:
        """Stop the worker."""
        if self.worker is not None:
            self.worker.close()
            self.worker = None

    def _support(self, method: str, dtype: str) -> SupportInfo:
        info = self.info
        if info is None:
            first = self.load_error.strip().splitlines()
            return SupportInfo("error", reason=f"the adapter failed to load: "
                                               f"{first[-1] if first else '?'}")
        if self.config.device not in info.devices:
            return SupportInfo("unsupported", reason=(
                f"device {self.config.device!r} is not available to adapter {info.name!r} "
                f"(its devices: {', '.join(info.devices) or 'none'})"))
        return info.support.get((method, dtype), SupportInfo("error", reason=(
            f"no support answer for {method} in {dtype}")))

    def _result(self, planned: PlannedCase, check: str, **fields: Any) -> Result:
        result = Result(adapter=self.name, device=self.config.device, method=planned.method,
                        case=planned.case, dtype=planned.dtype, check=check, **fields)
        return self.ledger.apply(result) if self.apply_ledger else result

    def run_case(self, planned: PlannedCase) -> list[Result]:
        """Results of every check of one planned case."""
        support = self._support(planned.method, planned.dtype)
        if support.state != "supported" or planned.skip_reason:
            status = "error" if support.state == "error" else "skip"
            reason = support.reason if support.state != "supported" else (
                f"no vectors in {planned.dtype}: {planned.skip_reason}")
            kind = support.kind if support.kind in ("native", "composed") else "native"
            return [self._result(planned, c, status=status, kind=kind, message=reason)
                    for c in planned.checks]
        case = self.manifest.case(planned.method, planned.dtype, planned.case)
        calls = _calls(planned.checks, case)
        assert self.worker is not None
        outcomes = self.worker.run_case(planned.method, planned.dtype, case.inputs,
                                        dict(case.hyper), calls)
        by_op = {o.op: o for o in outcomes}
        kind = support.kind
        refined = by_op.get("case_support")
        if refined is not None and refined.ok and isinstance(refined.value, dict) \
                and refined.value.get("kind") in ("native", "composed"):
            # the adapter's per-case answer (e.g. a variant it composes from primitives)
            kind = refined.value["kind"]
        results = []
        for check in planned.checks:
            outcome = by_op["forward" if check == "state" else check]
            results.append(self._evaluate(planned, case, check, outcome, kind))
        return results

    def _compare(self, planned: PlannedCase, key: str, tol_class: str, got: np.ndarray,
                 expected: np.ndarray, case: VectorCase, check: str) -> Any:
        try:
            return self.compare(planned.method, planned.dtype, key, tol_class, got, expected,
                                case, check=check)
        except Exception as exc:
            # A bug in normspec, not in the adapter: reported as an error of this check with the
            # traceback, and the run goes on.
            detail = traceback.format_exc(limit=-3)
            raise _Internal(f"{check}/{key}: the tolerance model raised {type(exc).__name__}: "
                           f"{exc} (a normspec bug)\n{detail}") from None

    def _evaluate(self, planned: PlannedCase, case: VectorCase, check: str, outcome: Outcome,
                  kind: str) -> Result:
        repro = repro_command(self.spec, self.config.device, planned.method, planned.dtype,
                              planned.case, check)
        common: dict[str, Any] = {"kind": kind, "repro": repro,
                                  "duration_s": outcome.duration_s}
        if not outcome.ok:
            return self._result(planned, check, status="error",
                                message=f"{outcome.error}\nReproduce: {repro}", **common)
        quantities: list[QuantityResult] = []
        messages: list[str] = []
        try:
            for q, tol_class in planned.quantities.items():
                if check_of(q, tol_class) != check:
                    continue
                key = q.split("/", 1)[1] if "/" in q else "y"
                raw = _value_for(outcome.op, key, outcome.value, tol_class)
                if raw is None:
                    continue
                expected = case.expected[q]
                got = _as_checked_array(raw, q, expected)
                cmp = self._compare(planned, key, tol_class, got, expected, case, outcome.op)
                quantities.append(QuantityResult(
                    name=q, passed=bool(cmp.passed), error=float(cmp.error),
                    budget=float(cmp.budget), headroom=float(cmp.headroom),
                    mismatched=int(cmp.mismatched), total=int(cmp.total),
                    max_abs=float(cmp.max_abs), max_rel=float(cmp.max_rel), tol_class=tol_class))
                if not cmp.passed:
                    messages.append(f"{q} [{tol_class}] is not within its budget:\n"
                                    f"{cmp.message}")
        except _Invalid as exc:
            prefix = "" if isinstance(exc, _Internal) else "invalid result: "
            return self._result(planned, check, status="error",
                                message=f"{prefix}{exc}\nReproduce: {repro}",
                                quantities=tuple(quantities), **common)
        worst = max(quantities, key=lambda r: _sort_key(r.headroom), default=None)
        status = "pass" if all(r.passed for r in quantities) else "fail"
        if not quantities:
            status, messages = "error", [f"{check}: nothing to compare (every quantity absent)"]
        message = "\n".join(messages)
        if status != "pass":
            message = f"{message}\nReproduce: {repro}"
        return self._result(planned, check, status=status, message=message,
                            error=worst.error if worst else None,
                            budget=worst.budget if worst else None,
                            headroom=worst.headroom if worst else None,
                            quantities=tuple(quantities), **common)


def _sort_key(headroom: float | None) -> float:
    if headroom is None:
        return -math.inf
    return math.inf if math.isnan(headroom) else headroom


def _calls(checks: Sequence[str], case: VectorCase) -> list[Call]:
    calls: list[Call] = [Call("case_support")]
    if "forward" in checks or "state" in checks:
        calls.append(Call("forward"))
    if "vjp" in checks:
        calls.append(Call("vjp", {"cotangent": case.cotangent}))
    if "jvp" in checks:
        calls.append(Call("jvp", {"tangent": dict(case.tangent)}))
    if "second_order" in checks:
        calls.append(Call("second_order", {"cotangent": case.cotangent,
                                           "tangent": dict(case.tangent)}))
    return calls


# A whole run ----------------------------------------------------------------------------------


def default_compare() -> Compare:
    """The tolerance model's ``compare_quantity``."""
    module = import_module("normspec.conformance.tolerance")
    compare: Compare = module.compare_quantity
    return compare


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _version() -> str:
    try:
        return version("normspec")
    except PackageNotFoundError:
        return "unknown"


def run_metadata(config: RunConfig, argv: Sequence[str], vectors: str) -> dict[str, Any]:
    """The ``meta`` object of a report, before the run."""
    try:
        hostname = socket.gethostname()
    except OSError:
        hostname = ""
    return {
        "normspec_version": _version(), "platform": platform.platform(),
        "machine": platform.machine(), "python": platform.python_version(),
        "hostname": hostname, "started": _now(), "finished": "", "wall_time_s": 0.0,
        "interrupted": False, "argv": list(argv), "device": config.device,
        "timeout_s": config.timeout, "vectors": vectors,
        "selection": {"adapters": list(config.adapters), "methods": list(config.methods),
                      "dtypes": list(config.dtypes), "checks": list(config.checks),
                      "case": config.case},
    }


class Runner:
    """Runs a :class:`RunConfig`; :attr:`report` is valid (and writable) at every moment."""

    def __init__(self, config: RunConfig, *, argv: Sequence[str] = (),
                 compare: Compare | None = None, manifest: Manifest | None = None) -> None:
        self.config = config
        self.manifest = manifest if manifest is not None else load_manifest(config.vectors)
        self.compare = compare if compare is not None else default_compare()
        self.plan = plan(self.manifest, config)
        self.report = Report(meta=run_metadata(config, argv, self.manifest.source))
        self._t0 = time.perf_counter()

    def verify_vectors(self) -> None:
        """Read every selected vector file now (sha256 checked), so corruption stops the run
        before any adapter starts."""
        for method, dtype in dict.fromkeys((p.method, p.dtype) for p in self.plan):
            self.manifest.tensors(method, dtype)

    @property
    def total(self) -> int:
        """Number of results the run will produce."""
        return len(self.config.adapters) * sum(len(p.checks) for p in self.plan)

    def run(self, on_result: Callable[[Result], None] | None = None) -> Report:
        """Run everything and return the report; ``on_result`` sees each result as it comes.

        Whatever happens (an exception, Ctrl-C), the workers are stopped and the report holds
        the results so far, with ``meta.interrupted`` set when the run did not complete.
        """
        self.verify_vectors()
        methods = tuple(dict.fromkeys(p.method for p in self.plan))
        known = all_ids(self.manifest)
        sessions: list[AdapterSession] = []
        try:
            for spec in self.config.adapters:
                session = AdapterSession.open(spec, self.config, self.manifest, self.compare,
                                              methods, known)
                sessions.append(session)
                self.report.adapters.append(session.record())
            for session in sessions:
                for planned in self.plan:
                    for result in session.run_case(planned):
                        self.report.results.append(result)
                        if on_result is not None:
                            on_result(result)
        except BaseException:
            self.report.meta["interrupted"] = True
            raise
        finally:
            for session in sessions:
                session.close()
            self.finish()
        return self.report

    def finish(self) -> None:
        """Stamp the end time on the report (idempotent)."""
        self.report.meta["finished"] = _now()
        self.report.meta["wall_time_s"] = round(time.perf_counter() - self._t0, 3)


__all__ = ["DEFAULT_TIMEOUT", "AdapterSession", "PlannedCase", "RunConfig", "Runner",
           "SelectionError", "all_ids", "check_of", "checks_of", "default_compare", "plan",
           "repro_command", "run_metadata"]
