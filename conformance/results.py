"""Result records of a conformance run, and their JSON form (``spec/report.schema.json``).

One :class:`Result` per test id ``<method>[<case>]-<dtype>-<check>`` and adapter. A
:class:`Report` adds the run's metadata. The JSON layout is versioned by
:data:`REPORT_FORMAT`; a change that renames or removes a field bumps its major number.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["pass", "fail", "error", "skip", "xfail", "xpass", "not_applicable"]
STATUSES: tuple[Status, ...] = ("pass", "fail", "error", "skip", "xfail", "xpass",
                                "not_applicable")
FAILING: frozenset[str] = frozenset({"fail", "error", "xpass"})
"""Statuses that make a run (and its exit status) fail."""

NOT_RUN: frozenset[str] = frozenset({"skip", "not_applicable"})
"""Statuses of a check that ran nothing: ``skip`` (the adapter or the vectors could not run
it) and ``not_applicable`` (the method's definition has no such quantity: its reference
module's ``NOT_APPLICABLE`` says why, and the vectors hold none). Neither is a pass."""

CHECK_ORDER: tuple[str, ...] = ("forward", "state", "vjp", "jvp", "second_order")
"""Every check, in the order a case runs them. ``state`` is the updated running statistics
returned by the forward call of a stateful method."""

REPORT_FORMAT = "normspec-report/1.2"


def make_id(method: str, case: str, dtype: str, check: str) -> str:
    """The stable id ``<method>[<case>]-<dtype>-<check>`` used by ledgers, JUnit and pytest."""
    return f"{method}[{case}]-{dtype}-{check}"


def _finite_or_none(value: float | None) -> float | None:
    # JSON has no NaN or Infinity; an unmeasurable error is reported as null.
    if value is None or not math.isfinite(value):
        return None
    return float(value)


QuantityStatus = Literal["pass", "fail", "error", "skip"]
QUANTITY_ORDER: tuple[QuantityStatus, ...] = ("skip", "pass", "fail", "error")
"""Quantity statuses from best to worst; a check's own status is the worst of its quantities."""


@dataclass(frozen=True)
class QuantityResult:
    """The verdict on one quantity of a check (``forward/y``, ``forward/mean``, ``vjp/x``, ...).

    ``status`` is ``pass`` or ``fail`` after a comparison, ``error`` when the returned value
    cannot be compared (wrong type, dtype or shape; ``message`` says which), and ``skip`` when
    nothing was compared (an optional statistic the adapter does not return, or a quantity it
    declares it cannot produce; ``message`` gives the reason). The numbers are those of the
    comparison, measured over the elements where both arrays are finite;
    ``nonfinite_mismatched`` counts the elements whose NaN/Inf pattern differs.
    """

    name: str
    passed: bool
    error: float | None
    budget: float | None
    headroom: float | None
    mismatched: int
    total: int
    max_abs: float | None
    max_rel: float | None
    tol_class: str = ""
    status: QuantityStatus = "pass"
    message: str = ""
    nonfinite_mismatched: int = 0

    @classmethod
    def not_compared(cls, name: str, tol_class: str, status: QuantityStatus, message: str
                     ) -> QuantityResult:
        """A quantity that was skipped or could not be compared."""
        return cls(name=name, passed=False, error=None, budget=None, headroom=None,
                   mismatched=0, total=0, max_abs=None, max_rel=None, tol_class=tol_class,
                   status=status, message=message)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this quantity."""
        return {"name": self.name, "status": self.status, "passed": self.passed,
                "tol_class": self.tol_class, "message": self.message,
                "error": _finite_or_none(self.error), "budget": _finite_or_none(self.budget),
                "headroom": _finite_or_none(self.headroom), "mismatched": self.mismatched,
                "nonfinite_mismatched": self.nonfinite_mismatched,
                "total": self.total, "max_abs": _finite_or_none(self.max_abs),
                "max_rel": _finite_or_none(self.max_rel)}


def _none_or_float(value: Any) -> float | None:
    return None if value is None else float(value)


def quantity_from_dict(d: Mapping[str, Any]) -> QuantityResult:
    """The :class:`QuantityResult` of one JSON quantity object (format 1.0 or 1.1)."""
    passed = bool(d["passed"])
    return QuantityResult(
        name=d["name"], passed=passed, error=_none_or_float(d["error"]),
        budget=_none_or_float(d["budget"]), headroom=_none_or_float(d["headroom"]),
        mismatched=int(d["mismatched"]), total=int(d["total"]),
        max_abs=_none_or_float(d["max_abs"]), max_rel=_none_or_float(d["max_rel"]),
        tol_class=d.get("tol_class", ""),
        status=d.get("status", "pass" if passed else "fail"), message=d.get("message", ""),
        nonfinite_mismatched=int(d.get("nonfinite_mismatched", 0)))


def result_from_dict(d: Mapping[str, Any]) -> Result:
    """The :class:`Result` of one JSON result object (format 1.0 to 1.2)."""
    return Result(
        adapter=d["adapter"], device=d["device"], method=d["method"], case=d["case"],
        dtype=d["dtype"], check=d["check"], status=d["status"], kind=d["kind"],
        error=_none_or_float(d["error"]), budget=_none_or_float(d["budget"]),
        headroom=_none_or_float(d["headroom"]), message=d["message"], repro=d["repro"],
        duration_s=float(d["duration_s"]),
        quantities=tuple(quantity_from_dict(q) for q in d["quantities"]), ledger=d["ledger"],
        compile_s=_none_or_float(d.get("compile_s")), run_s=_none_or_float(d.get("run_s")))


def adapter_from_dict(d: Mapping[str, Any]) -> AdapterRecord:
    """The :class:`AdapterRecord` of one JSON adapter object."""
    return AdapterRecord(name=d["name"], spec=d["spec"], versions=dict(d["versions"]),
                         devices=tuple(d["devices"]), ledger=d.get("ledger", ""),
                         load_error=d.get("load_error", ""))


def worst_status(statuses: Iterable[QuantityStatus]) -> QuantityStatus:
    """The worst of ``statuses`` in :data:`QUANTITY_ORDER` (``skip`` for none)."""
    return max(statuses, key=QUANTITY_ORDER.index, default="skip")


@dataclass(frozen=True)
class Result:
    """The outcome of one check of one case for one adapter, dtype and device."""

    adapter: str
    device: str
    method: str
    case: str
    dtype: str
    check: str
    status: Status
    kind: str = "native"
    error: float | None = None
    budget: float | None = None
    headroom: float | None = None
    message: str = ""
    repro: str = ""
    duration_s: float = 0.0
    quantities: tuple[QuantityResult, ...] = ()
    ledger: str = ""
    """The ledger entry's reason for xfail and xpass results, else empty."""
    compile_s: float | None = None
    """Of ``duration_s``, the seconds the adapter spent compiling (first call of a shape),
    when the adapter can tell; None otherwise."""
    run_s: float | None = None
    """Of ``duration_s``, the seconds spent running, when the adapter can tell."""

    @property
    def id(self) -> str:
        """The stable test id of this result."""
        return make_id(self.method, self.case, self.dtype, self.check)

    def to_dict(self, versions: Mapping[str, str]) -> dict[str, Any]:
        """The JSON object of this result; ``versions`` are its adapter's framework versions."""
        return {"id": self.id, "adapter": self.adapter, "versions": dict(versions),
                "device": self.device, "method": self.method, "case": self.case,
                "dtype": self.dtype, "check": self.check, "status": self.status,
                "kind": self.kind, "error": _finite_or_none(self.error),
                "budget": _finite_or_none(self.budget),
                "headroom": _finite_or_none(self.headroom), "message": self.message,
                "repro": self.repro, "ledger": self.ledger,
                "duration_s": round(self.duration_s, 6),
                "compile_s": None if self.compile_s is None else round(self.compile_s, 6),
                "run_s": None if self.run_s is None else round(self.run_s, 6),
                "quantities": [q.to_dict() for q in self.quantities]}


@dataclass(frozen=True)
class AdapterRecord:
    """What a run knew about one adapter: its names, versions and devices."""

    name: str
    spec: str
    versions: Mapping[str, str] = field(default_factory=dict)
    devices: tuple[str, ...] = ()
    ledger: str = ""
    load_error: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this adapter."""
        return {"name": self.name, "spec": self.spec, "versions": dict(self.versions),
                "devices": list(self.devices), "ledger": self.ledger,
                "load_error": self.load_error}


def counts(results: Iterable[Result]) -> dict[str, int]:
    """Number of results per status, every status present (zero when absent)."""
    c = Counter(r.status for r in results)
    return {s: c.get(s, 0) for s in STATUSES}


def worst_headroom(results: Iterable[Result]) -> float | None:
    """The worst headroom among ``results`` (error / budget; above 1 fails), or None.

    It never looks better than the worst result: a result that failed, errored or was an
    expected failure without a measured headroom above 1 (a NaN pattern mismatch, an invalid
    value, a crash) counts as ``inf``. Skips and checks not applicable have no headroom.
    """
    worst: float | None = None
    for r in results:
        if r.status in NOT_RUN:
            continue
        value = r.headroom if r.headroom is not None and not math.isnan(r.headroom) else None
        if r.status in ("fail", "error", "xfail") and (value is None or value <= 1.0):
            value = math.inf
        if value is not None and (worst is None or value > worst):
            worst = value
    return worst


@dataclass
class Report:
    """A whole run: metadata, adapters and results. Mutable while the run goes on."""

    meta: dict[str, Any]
    adapters: list[AdapterRecord] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Whether anything failed, errored or passed unexpectedly, or the run was cut short,
        stopped on an error, or ran no check at all."""
        return bool(self.meta.get("interrupted") or self.meta.get("aborted")) or any(
            r.status in FAILING for r in self.results) or any(
            a.load_error for a in self.adapters)

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> Report:
        """The report a JSON report document describes (validate it first)."""
        return cls(meta=dict(document["meta"]),
                   adapters=[adapter_from_dict(a) for a in document["adapters"]],
                   results=[result_from_dict(r) for r in document["results"]])

    def versions_of(self, adapter: str) -> Mapping[str, str]:
        """Framework versions recorded for the adapter named ``adapter``."""
        for a in self.adapters:
            if a.name == adapter:
                return a.versions
        return {}

    def to_dict(self) -> dict[str, Any]:
        """The JSON document described by ``spec/report.schema.json``."""
        return {"format": REPORT_FORMAT, "meta": dict(self.meta),
                "adapters": [a.to_dict() for a in self.adapters],
                "summary": {**counts(self.results), "total": len(self.results),
                            "ok": not self.failed},
                "results": [r.to_dict(self.versions_of(r.adapter)) for r in self.results]}


__all__ = ["CHECK_ORDER", "FAILING", "NOT_RUN", "QUANTITY_ORDER", "REPORT_FORMAT", "STATUSES",
           "AdapterRecord", "QuantityResult", "QuantityStatus", "Report", "Result", "Status",
           "adapter_from_dict", "counts", "make_id", "quantity_from_dict", "result_from_dict",
           "worst_headroom", "worst_status"]
