"""The conformance runner: golden vectors -> adapter (in a worker) -> tolerance model -> results.

For each adapter x method x dtype x case, one worker round trip makes the calls the selected
checks need (the forward call serves both ``forward`` and ``state``); each returned quantity gets
its own verdict: ``error`` when it cannot be compared (type, dtype, shape), else ``pass`` or
``fail`` from the tolerance model (a NaN/Inf pattern that differs from the reference's, in either
direction, is a ``fail``). A check's status is the worst of its quantities' verdicts, and then
the adapter's ledger is applied (``xfail``, ``xpass``).

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
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from .isolation import Call, Foreign, Outcome, SupportInfo, Worker, WorkerInfo, WorkerStartError
from .ledger import Ledger, load_ledger
from .results import (
    CHECK_ORDER,
    NOT_RUN,
    AdapterRecord,
    QuantityResult,
    Report,
    Result,
    make_id,
    worst_status,
)
from .vectors import DTYPES, Manifest, VectorCase, VectorStep, load_manifest

DEFAULT_TIMEOUT = 60.0
"""Seconds one adapter call may take before it counts as hung (compilation included)."""

DEFAULT_STARTUP_TIMEOUT = 300.0
"""Seconds an adapter may take to load (a cold import of a framework can be slow)."""

Compare = Callable[..., Any]
"""``compare_quantity(method, dtype, quantity, tol_class, got, expected, case, *, check)``."""


KNOWN_DEVICES: tuple[str, ...] = ("cpu", "cuda", "gpu", "rocm", "mps", "xpu", "tpu")
"""Device names that are valid on some machine even where no adapter has them now; a run on
one of them that no adapter can use is a failure ("no check ran"), any other name a usage
error. An adapter may offer further names of its own."""


class SelectionError(ValueError):
    """An unknown method, dtype, check or case pattern in a run's selection."""


@dataclass(frozen=True)
class RunConfig:
    """What to run. Empty ``methods`` means every method that has vectors."""

    adapters: tuple[str, ...] = ("numpy",)
    device: str = "cpu"
    dtypes: tuple[str, ...] = DTYPES
    methods: tuple[str, ...] = ()
    cases: tuple[str, ...] = ()
    """Globs (fnmatch) on case names, e.g. ``offset_*``: a case runs when it matches any of
    them. Empty means every case."""
    exclude_cases: tuple[str, ...] = ()
    """Globs on case names to leave out (applied after ``cases``)."""
    checks: tuple[str, ...] = CHECK_ORDER
    timeout: float = DEFAULT_TIMEOUT
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT
    """Seconds an adapter may take to load in its worker (importing a framework)."""
    vectors: str | None = None
    """Directory holding ``manifest.json``; None means the installed spec/vectors."""
    ledger_dir: Path | None = None
    """Where ``<adapter>.toml`` ledgers are looked up; None means the built-in ledgers."""
    jobs: int = 1
    """How many adapters run at the same time (each waits on its own worker processes)."""
    workers: int = 1
    """Worker processes per adapter. Each takes the adapter's next case from a shared queue,
    so a slow adapter (JAX compiling) spreads over the cores the fast ones have left."""
    shard: tuple[int, int] = (1, 1)
    """``(K, N)``: run only the K-th of N deterministic, balanced parts of the selection."""


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
    not_applicable: Mapping[str, str] = field(default_factory=dict)
    """Checks of ``checks`` the method declares not applicable (check -> reason): reported
    as ``not_applicable`` without calling the adapter."""


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
        declared = manifest.not_applicable(method)
        trajectories = {c["name"] for c in manifest.data["methods"][method]["cases"]
                        if "trajectory" in c}
        for dtype in config.dtypes:
            if dtype not in manifest.dtypes(method):
                continue
            skipped = dict(manifest.skipped(method, dtype))
            for case, qs in quantities.items():
                if not selected(case, config.cases, config.exclude_cases):
                    continue
                # A check the method declares not applicable has no quantity, but it is
                # planned all the same, so that every report shows it (with its reason).
                na = {} if case in trajectories else {
                    c: r for c, r in declared.items() if c in config.checks}
                present = set(checks_of(qs)) | set(na)
                checks = tuple(c for c in CHECK_ORDER if c in present and c in config.checks)
                if checks:
                    planned.append(PlannedCase(method, dtype, case, checks, qs,
                                               skipped.get(case, ""), na))
    if not planned:
        raise SelectionError(
            f"the selection matches no test (methods {list(methods)}, dtypes "
            f"{list(config.dtypes)}, checks {list(config.checks)}, cases {list(config.cases)}, "
            f"excluded cases {list(config.exclude_cases)})")
    return shard_of(planned, *config.shard)


def shard_of(planned: Sequence[PlannedCase], index: int, count: int) -> list[PlannedCase]:
    """The ``index``-th (1-based) of ``count`` parts of ``planned``: every ``count``-th case,
    starting at position ``index - 1`` of the stable plan order.

    The parts are disjoint, cover the plan, and differ by at most one case each; dealing the
    cases out in turn spreads every method and dtype over all shards, so the expensive ones
    (a compiling framework) do not all land in one. All checks of a case stay together: they
    share one round trip to the adapter. ``normspec report merge`` undoes this order.
    """
    if not (isinstance(index, int) and isinstance(count, int) and 1 <= index <= count):
        raise SelectionError(f"shard {index}/{count}: expected K/N with 1 <= K <= N")
    return list(planned[index - 1::count])


def selected(case: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Whether ``case`` matches one of the ``include`` globs (any, when empty) and none of the
    ``exclude`` globs."""
    if include and not any(fnmatch.fnmatchcase(case, g) for g in include):
        return False
    return not any(fnmatch.fnmatchcase(case, g) for g in exclude)


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
    # NaN where the reference has none (and the reverse) is a value mismatch, classified by
    # the comparison like any other: a ``fail``, in both directions.
    return value


def _value_for(check: str, key: str, value: object, tol_class: str) -> object | None:
    """The returned array for quantity ``key`` of ``check`` (``step2/running_mean`` in a
    trajectory); None if optional and absent."""
    if check == "jvp":
        return value
    if isinstance(value, Foreign):
        raise _Invalid(f"{check}: got {value.type_name} ({value.text}), expected a dict of "
                       f"float64 arrays")
    if not isinstance(value, dict):
        raise _Invalid(f"{check}: got {type(value).__name__}, expected a dict of float64 arrays")
    if key not in value:
        if tol_class == "statistic" or key.rsplit("/", 1)[-1] == "num_batches_tracked":
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
        worker = Worker(spec, config.device, methods, config.dtypes, timeout=config.timeout,
                        startup_timeout=config.startup_timeout)
        session = cls(spec=spec, config=config, manifest=manifest, compare=compare,
                      worker=worker)
        try:
            session.info = worker.start()
        except WorkerStartError as exc:
            if exc.usage:
                worker.close()
                raise SelectionError(str(exc)) from None
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
        if planned.not_applicable:
            # Not applicable is the method's property, whatever the adapter: no call is made.
            rest = replace(planned, checks=tuple(c for c in planned.checks
                                                 if c not in planned.not_applicable),
                           not_applicable={})
            done = {r.check: r for r in self.run_case(rest)} if rest.checks else {}
            kind = done[rest.checks[0]].kind if rest.checks else "native"
            for check, reason in planned.not_applicable.items():
                done[check] = self._result(
                    planned, check, status="not_applicable", kind=kind,
                    message=f"{check} is not applicable to {planned.method}: {reason}")
            return [done[c] for c in planned.checks]
        support = self._support(planned.method, planned.dtype)
        if support.state != "supported" or planned.skip_reason:
            status = "error" if support.state == "error" else "skip"
            reason = support.reason if support.state != "supported" else (
                f"no vectors in {planned.dtype}: {planned.skip_reason}")
            kind = support.kind if support.kind in ("native", "composed") else "native"
            return [self._result(planned, c, status=status, kind=kind, message=reason)
                    for c in planned.checks]
        declared = {c: support.not_implemented[c] for c in planned.checks
                    if c in support.not_implemented}
        runnable = tuple(c for c in planned.checks if c not in declared)
        results: dict[str, Result] = {
            c: self._not_implemented(planned, c, declared[c], support.kind) for c in declared}
        if runnable:
            results.update(self._run_checks(planned, runnable, support))
        return [results[c] for c in planned.checks]

    def _not_implemented(self, planned: PlannedCase, check: str, reason: str, kind: str
                         ) -> Result:
        return self._result(planned, check, status="skip", kind=_kind(kind),
                            message=f"not implemented by the adapter: {reason}")

    def _run_checks(self, planned: PlannedCase, checks: tuple[str, ...], support: SupportInfo
                    ) -> dict[str, Result]:
        case = self.manifest.case(planned.method, planned.dtype, planned.case)
        assert self.worker is not None
        if case.trajectory:
            outcomes = self._trajectory(planned, case, support.not_produced)
        else:
            inputs, hyper = adapter_arguments(case.inputs, case.hyper)
            outcomes = self.worker.run_case(planned.method, planned.dtype, inputs, hyper,
                                            _calls(checks, case))
        by_op = {o.op: o for o in outcomes}
        refined = by_op.get("case_support")
        kind = support.kind
        not_produced = dict(support.not_produced)
        if refined is not None and not refined.ok:
            # A per-case support answer that raises is an adapter bug, like support() raising.
            return {c: self._result(planned, c, status="error", kind=_kind(kind),
                                    message=f"case_support() failed: {refined.error}")
                    for c in checks}
        if refined is not None and isinstance(refined.value, SupportInfo):
            answer = refined.value
            if answer.state != "supported":
                reason = answer.reason or "no reason given"
                return {c: self._result(planned, c, status="skip", kind=_kind(answer.kind),
                                        message=f"declined by the adapter for this case: "
                                                f"{reason}")
                        for c in checks}
            kind = answer.kind
            not_produced.update(answer.not_produced)
            late = {c: answer.not_implemented[c] for c in checks if c in answer.not_implemented}
        else:
            late = {}
        results: dict[str, Result] = {}
        for check in checks:
            if check in late:
                results[check] = self._not_implemented(planned, check, late[check], kind)
                continue
            outcome = by_op["forward" if check == "state" else check]
            results[check] = self._evaluate(planned, case, check, outcome, _kind(kind),
                                            not_produced)
        return results

    def _trajectory(self, planned: PlannedCase, case: VectorCase,
                    not_produced: Mapping[str, str]) -> list[Outcome]:
        """Run a trajectory: one forward call per step, each fed the state the adapter itself
        returned from the step before (the reference's state only enters step 1).

        Returns the ``case_support`` outcome and one ``forward`` outcome whose value holds
        every step's results under ``<label>/<key>``. A step that fails ends the trajectory:
        the forward outcome is then that step's error (or its decline). An adapter that does
        not produce a state quantity cannot run a trajectory: it is declined, with its reason.
        """
        assert self.worker is not None
        first = case.trajectory[0]
        names = tuple(first.state_in)
        fixed = {k: v for k, v in case.inputs.items() if k not in names}
        state: dict[str, Any] = dict(first.state_in)
        values: dict[str, Any] = {}
        outcomes: list[Outcome] = []
        duration, compile_s, run_s = 0.0, 0.0, 0.0
        timed = True
        for i, step in enumerate(case.trajectory):
            calls = [Call("case_support"), Call("forward")] if i == 0 else [Call("forward")]
            got = self.worker.run_case(planned.method, planned.dtype,
                                       {**fixed, **state, "x": step.x}, dict(step.hyper), calls)
            by_op = {o.op: o for o in got}
            if i == 0 and "case_support" in by_op:
                support = by_op["case_support"]
                outcomes.append(support)
                if not support.ok or (isinstance(support.value, SupportInfo)
                                      and support.value.state != "supported"):
                    return outcomes
                lacking = {**not_produced, **(support.value.not_produced if isinstance(
                    support.value, SupportInfo) else {})}
                missing = [n for n in names if n != "num_batches_tracked"
                           and f"forward/{n}" in lacking]
                if missing:
                    q = f"forward/{missing[0]}"
                    return [*outcomes, Outcome("forward", declined=(
                        f"the adapter does not produce {q} ({lacking[q]}), which each step of "
                        "a trajectory feeds to the next"))]
            fwd = by_op["forward"]
            duration += fwd.duration_s
            if fwd.compile_s is None or fwd.run_s is None:
                timed = False
            else:
                compile_s, run_s = compile_s + fwd.compile_s, run_s + fwd.run_s
            if fwd.declined:
                return [*outcomes, replace(fwd, duration_s=duration)]
            if not fwd.ok:
                return [*outcomes, replace(fwd, duration_s=duration, error=(
                    f"trajectory {step.label} of {len(case.trajectory)} steps: {fwd.error}"))]
            if not isinstance(fwd.value, dict):
                return [*outcomes, Outcome("forward", duration_s=duration, error=(
                    f"trajectory {step.label}: got {type(fwd.value).__name__}, expected a dict "
                    "of float64 arrays"))]
            values.update({f"{step.label}/{k}": v for k, v in fwd.value.items()})
            if step.hyper.get("training", False):
                try:
                    state = _next_state(step, fwd.value)
                except _Invalid as exc:
                    return [*outcomes, Outcome("forward", duration_s=duration, error=(
                        f"trajectory {step.label}: {exc}; the next step needs the state this "
                        "one returns"))]
        return [*outcomes, Outcome("forward", value=values, duration_s=duration,
                                   compile_s=compile_s if timed else None,
                                   run_s=run_s if timed else None)]

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

    def _quantity(self, planned: PlannedCase, case: VectorCase, outcome: Outcome, q: str,
                  tol_class: str, not_produced: Mapping[str, str]) -> QuantityResult:
        """The verdict on one quantity; never raises for a bad value (that is its verdict)."""
        path = q.split("/", 1)[1] if "/" in q else "y"
        label, _, key = path.rpartition("/")
        produced = produced_name(q)
        if produced in not_produced:
            return QuantityResult.not_compared(
                q, tol_class, "skip", f"not produced by the adapter: {not_produced[produced]}")
        try:
            raw = _value_for(outcome.op, path, outcome.value, tol_class)
            if raw is None:
                return QuantityResult.not_compared(
                    q, tol_class, "skip",
                    "not returned by the adapter (a step counter only some frameworks keep)"
                    if key == "num_batches_tracked"
                    else "not returned by the adapter (an optional statistic)")
            expected = case.expected[q]
            got = _as_checked_array(raw, q, expected)
            view = case
            if label:
                view = case.step_view(next(s for s in case.trajectory if s.label == label))
            cmp = self._compare(planned, key, tol_class, got, expected, view, outcome.op)
        except _Internal as exc:
            return QuantityResult.not_compared(q, tol_class, "error", str(exc))
        except _Invalid as exc:
            return QuantityResult.not_compared(q, tol_class, "error", f"invalid result: {exc}")
        passed = bool(cmp.passed)
        return QuantityResult(
            name=q, passed=passed, error=float(cmp.error), budget=float(cmp.budget),
            headroom=float(cmp.headroom), mismatched=int(cmp.mismatched), total=int(cmp.total),
            max_abs=float(cmp.max_abs), max_rel=float(cmp.max_rel), tol_class=tol_class,
            status="pass" if passed else "fail",
            message="" if passed else f"{q} [{tol_class}] is not within its budget:\n"
                                      f"{cmp.message}",
            nonfinite_mismatched=int(getattr(cmp, "nonfinite_mismatched", 0)))

    def _evaluate(self, planned: PlannedCase, case: VectorCase, check: str, outcome: Outcome,
                  kind: str, not_produced: Mapping[str, str]) -> Result:
        repro = repro_command(self.spec, self.config.device, planned.method, planned.dtype,
                              planned.case, check)
        common: dict[str, Any] = {"kind": kind, "repro": repro,
                                  "duration_s": outcome.duration_s,
                                  "compile_s": outcome.compile_s, "run_s": outcome.run_s}
        if outcome.declined:
            return self._result(planned, check, status="skip",
                                message=f"declined by the adapter: {outcome.declined}", **common)
        if not outcome.ok:
            return self._result(planned, check, status="error",
                                message=f"{outcome.error}\nReproduce: {repro}", **common)
        quantities = tuple(
            self._quantity(planned, case, outcome, q, tol_class, not_produced)
            for q, tol_class in planned.quantities.items() if check_of(q, tol_class) == check)
        compared = [r for r in quantities if r.status in ("pass", "fail")]
        worst = max(compared, key=lambda r: _sort_key(r.headroom), default=None)
        status = worst_status(r.status for r in quantities)
        if status == "skip" and not any(produced_name(r.name) in not_produced
                                        for r in quantities):
            # Nothing compared although the adapter ran: every quantity was optional and absent.
            status = "error"
            messages = [f"{check}: nothing to compare (every quantity absent)"]
        else:
            messages = [r.message for r in quantities
                        if r.status in ("fail", "error") or (status == "skip" and r.message)]
        message = "\n".join(messages)
        if status in ("fail", "error"):
            message = f"{message}\nReproduce: {repro}"
        return self._result(planned, check, status=status, message=message,
                            error=worst.error if worst else None,
                            budget=worst.budget if worst else None,
                            headroom=worst.headroom if worst else None,
                            quantities=quantities, **common)


def produced_name(quantity: str) -> str:
    """The name an adapter's ``not_produced`` uses for ``quantity``: a trajectory's
    ``forward/step2/running_var`` is ``forward/running_var`` at every step."""
    check, _, path = quantity.partition("/")
    return f"{check}/{path.rsplit('/', 1)[-1]}" if "/" in path else quantity


def _kind(kind: str) -> str:
    return kind if kind in ("native", "composed") else "native"


def adapter_arguments(inputs: Mapping[str, Any], hyper: Mapping[str, Any]
                      ) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the adapter receives for a case: every input (primals, state with the int64 step
    counter, integer and boolean constants) in ``inputs``, and the hyperparameters.

    Since vector format 2 the step counter is a state input in the vectors themselves, so this
    is a copy; it stays the one place that says what crosses to an adapter.
    """
    return dict(inputs), dict(hyper)


def _next_state(step: VectorStep, returned: Mapping[str, Any]) -> dict[str, Any]:
    """The state an adapter returned from a training step, as the inputs of the next step.

    The running statistics must come back as float64 arrays of their shape. A step counter the
    adapter does not keep (Flax has none) advances by one, as the spec says it does.
    """
    out: dict[str, Any] = {}
    for name, previous in step.state_in.items():
        value = returned.get(name)
        if name == "num_batches_tracked":
            if value is None:
                out[name] = np.array(int(previous) + 1, dtype=np.int64)
                continue
            if not isinstance(value, np.ndarray) or value.shape != () or not (
                    np.isfinite(value) and float(value).is_integer()):
                raise _Invalid(f"the returned {name} is {value!r}, expected a 0-d array "
                               "holding an integer")
            out[name] = np.array(int(value), dtype=np.int64)
            continue
        if value is None:
            raise _Invalid(f"the adapter returned no {name!r} (keys: {sorted(returned)})")
        out[name] = _as_checked_array(value, name, previous)
    return out


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
    from .tolerance import compare_quantity

    return compare_quantity


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
        "timeout_s": config.timeout, "startup_timeout_s": config.startup_timeout,
        "vectors": vectors, "shard": {"index": config.shard[0], "count": config.shard[1]},
        "jobs": config.jobs, "workers": config.workers,
        "selection": {"adapters": list(config.adapters), "methods": list(config.methods),
                      "dtypes": list(config.dtypes), "checks": list(config.checks),
                      "case": config.cases[0] if len(config.cases) == 1 else None,
                      "cases": list(config.cases), "exclude_cases": list(config.exclude_cases)},
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
        self.report.meta["vectors_sha256"] = self.manifest.digest
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
        the results so far, with ``meta.interrupted`` set when the run was cut short and
        ``meta.aborted`` saying why when it stopped on an error (corrupted vectors, a device no
        selected adapter has). A run in which no check executed is a failure too: it says so
        in ``meta.aborted``.
        """
        groups: list[list[AdapterSession]] = []
        try:
            self.verify_vectors()
            methods = tuple(dict.fromkeys(p.method for p in self.plan))
            known = all_ids(self.manifest)
            for spec in self.config.adapters:
                first = AdapterSession.open(spec, self.config, self.manifest, self.compare,
                                            methods, known)
                group = [first]
                groups.append(group)
                self.report.adapters.append(first.record())
                # an adapter that failed to load answers every case with that error at once
                extra = max(0, min(self.config.workers, len(self.plan)) - 1)
                for _ in range(extra if first.info is not None else 0):
                    group.append(AdapterSession.open(spec, self.config, self.manifest,
                                                     self.compare, methods, known))
            sessions = [g[0] for g in groups]
            self._check_unique_names(sessions)
            self._check_device(sessions)
            self._run_sessions(groups, on_result)
            if self.report.results and all(r.status in NOT_RUN for r in self.report.results):
                self.report.meta["aborted"] = (
                    f"no check ran: all {len(self.report.results)} selected checks were "
                    f"skipped on device {self.config.device!r} (see the skip reasons)")
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                self.report.meta["interrupted"] = True
            else:
                first_line = str(exc).strip().splitlines()
                self.report.meta["aborted"] = (
                    f"{type(exc).__name__}: {first_line[0] if first_line else ''}").rstrip(": ")
            raise
        finally:
            for group in groups:
                for session in group:
                    session.close()
            self.finish()
        return self.report

    def _run_sessions(self, groups: Sequence[Sequence[AdapterSession]],
                      on_result: Callable[[Result], None] | None) -> None:
        """Run the plan on every adapter: one after the other, or ``config.jobs`` adapters at a
        time. Each adapter's workers (``config.workers``) take its cases from one shared queue,
        each in a thread that waits on its own worker process. Results land in the report in
        adapter order and plan order, so the report does not depend on the timing."""
        jobs = max(1, min(self.config.jobs, len(groups)))
        if jobs == 1 and all(len(g) == 1 for g in groups):
            for group in groups:
                for planned in self.plan:
                    for result in group[0].run_case(planned):
                        self.report.results.append(result)
                        if on_result is not None:
                            on_result(result)
            return
        per: list[list[list[Result]]] = [[[] for _ in self.plan] for _ in groups]
        queues = [iter(range(len(self.plan))) for _ in groups]
        stop = threading.Event()
        lock = threading.Lock()

        def work(g: int, session: AdapterSession) -> None:
            while not stop.is_set():
                with lock:
                    index = next(queues[g], None)
                if index is None:
                    return
                results = session.run_case(self.plan[index])
                with lock:
                    if stop.is_set():  # results of a worker killed by the interrupt: dropped
                        return
                    per[g][index] = results
                    if on_result is not None:
                        for result in results:
                            on_result(result)

        # FIFO submission: the first `jobs` adapters' workers start first, the rest as they end
        threads = sum(len(g) for g in groups[:jobs])
        pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="normspec-adapter")
        futures = [pool.submit(work, g, session)
                   for g, group in enumerate(groups) for session in group]
        try:
            pending = set(futures)
            while pending:
                # A timeout keeps the main thread responsive to Ctrl-C and SIGTERM.
                _, pending = wait(pending, timeout=0.5)
            for future in futures:
                future.result()
        except BaseException:
            stop.set()
            for group in groups:  # unblocks the threads waiting on their workers
                for session in group:
                    session.close()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            with lock:
                self.report.results.extend(
                    r for results in per for case_results in results for r in case_results)

    def _check_unique_names(self, sessions: Sequence[AdapterSession]) -> None:
        seen: dict[str, str] = {}
        for session in sessions:
            if session.name in seen:
                raise SelectionError(
                    f"adapters {seen[session.name]!r} and {session.spec!r} are both named "
                    f"{session.name!r}; their results and ledgers would merge under the same "
                    f"ids (give each adapter a unique name)")
            seen[session.name] = session.spec

    def _check_device(self, sessions: Sequence[AdapterSession]) -> None:
        loaded = [s.info for s in sessions if s.info is not None]
        device = self.config.device
        available = sorted({d for info in loaded for d in info.devices})
        if loaded and device not in available and device not in KNOWN_DEVICES:
            raise SelectionError(
                f"unknown device {device!r}: no selected adapter has it (their devices: "
                f"{', '.join(available) or 'none'}; other known device names: "
                f"{', '.join(d for d in KNOWN_DEVICES if d not in available)})")

    def finish(self) -> None:
        """Stamp the end time on the report (idempotent)."""
        self.report.meta["finished"] = _now()
        self.report.meta["wall_time_s"] = round(time.perf_counter() - self._t0, 3)


__all__ = [
    "DEFAULT_STARTUP_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "KNOWN_DEVICES",
    "AdapterSession",
    "PlannedCase",
    "RunConfig",
    "Runner",
    "SelectionError",
    "adapter_arguments",
    "all_ids",
    "check_of",
    "checks_of",
    "default_compare",
    "plan",
    "repro_command",
    "run_metadata",
    "selected",
    "shard_of",
]
