"""pytest plugin (entry point ``pytest11``): the conformance checks as pytest items.

``pytest --pyargs normspec.conformance --normspec-adapter torch`` collects one item per check,
named by its stable test id ``<method>[<case>]-<dtype>-<check>`` under one collector per
adapter, and runs it exactly as ``normspec run`` does (same worker isolation, same tolerance
model). Ledger entries become ``xfail(strict=True)`` marks, so an unexpected pass fails.

Without ``--normspec-adapter`` the plugin only adds its options: it collects nothing and starts
nothing, so it stays out of every other test session.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .results import CHECK_ORDER, Result

_DTYPES = ("float64", "float32", "float16", "bfloat16")


def _timeout(text: str) -> float:
    # argparse (under pytest's parser) turns this ArgumentTypeError into a usage error
    import argparse

    from .options import seconds

    try:
        return seconds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected seconds: {exc}") from None


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the ``--normspec-*`` options."""
    group = parser.getgroup("normspec", "normspec conformance checks")
    group.addoption("--normspec-adapter", action="append", default=[], metavar="NAME",
                    help="run the conformance checks against this adapter (registered name or "
                         "module:attribute; repeatable). Without it the plugin is inactive.")
    group.addoption("--normspec-device", default="cpu", metavar="DEVICE",
                    help="device for the conformance checks (default: cpu)")
    group.addoption("--normspec-dtype", action="append", default=[], choices=_DTYPES,
                    help="dtype under test (repeatable; default: all)")
    group.addoption("--normspec-method", action="append", default=[], metavar="METHOD",
                    help="method to check (repeatable; default: all with vectors)")
    group.addoption("--normspec-check", action="append", default=[], choices=CHECK_ORDER,
                    help="check to run (repeatable; default: all)")
    group.addoption("--normspec-case", action="append", default=[], metavar="GLOB",
                    help="only cases whose name matches this glob (repeatable)")
    group.addoption("--normspec-exclude-case", action="append", default=[], metavar="GLOB",
                    help="leave out cases whose name matches this glob (repeatable)")
    group.addoption("--normspec-timeout", type=_timeout, default=60.0, metavar="S",
                    help="seconds one adapter call may take (default: 60)")
    group.addoption("--normspec-startup-timeout", type=_timeout, default=300.0, metavar="S",
                    help="seconds an adapter may take to load in its worker (default: 300)")
    group.addoption("--normspec-vectors", default=None, metavar="DIR",
                    help="directory with manifest.json (default: the installed vectors)")
    group.addoption("--normspec-ledger-dir", default=None, metavar="DIR",
                    help="directory with <adapter>.toml ledgers (default: the built-in ones)")


@dataclass
class _State:
    """Everything the plugin shares across one test session."""

    config: Any
    manifest: Any
    plan: list[Any]
    known_ids: set[str]
    sessions: dict[str, Any] = field(default_factory=dict)
    cache: dict[tuple[str, str, str, str], dict[str, Result]] = field(default_factory=dict)

    def session(self, spec: str) -> Any:
        """The adapter session of ``spec``, started on first use."""
        if spec not in self.sessions:
            from .runner import AdapterSession, default_compare

            methods = tuple(dict.fromkeys(p.method for p in self.plan))
            session = AdapterSession.open(spec, self.config, self.manifest, default_compare(),
                                          methods, self.known_ids)
            session.apply_ledger = False
            self.sessions[spec] = session
        return self.sessions[spec]

    def result(self, spec: str, planned: Any, check: str) -> Result:
        """The result of one check; the whole case runs (one worker round trip) on first use."""
        key = (spec, planned.method, planned.dtype, planned.case)
        if key not in self.cache:
            results = self.session(spec).run_case(planned)
            self.cache[key] = {r.check: r for r in results}
        return self.cache[key][check]

    def close(self) -> None:
        for session in self.sessions.values():
            session.close()
        self.sessions.clear()


_STATE = pytest.StashKey[_State]()


def pytest_configure(config: pytest.Config) -> None:
    """Validate the options and load the vectors, only when ``--normspec-adapter`` is given."""
    specs = config.getoption("normspec_adapter")
    if not specs:
        return
    from normspec.adapters import registry

    from .ledger import LedgerError
    from .runner import RunConfig, SelectionError, all_ids, plan
    from .vectors import VectorFormatError, load_manifest
    ledger_dir = config.getoption("normspec_ledger_dir")
    try:
        adapters = tuple(registry.check_spec(s) for s in dict.fromkeys(specs))
        run_config = RunConfig(
            adapters=adapters, device=config.getoption("normspec_device"),
            dtypes=tuple(dict.fromkeys(config.getoption("normspec_dtype") or _DTYPES)),
            methods=tuple(dict.fromkeys(config.getoption("normspec_method"))),
            cases=tuple(dict.fromkeys(config.getoption("normspec_case"))),
            exclude_cases=tuple(dict.fromkeys(config.getoption("normspec_exclude_case"))),
            checks=tuple(c for c in CHECK_ORDER
                         if c in (config.getoption("normspec_check") or CHECK_ORDER)),
            timeout=config.getoption("normspec_timeout"),
            startup_timeout=config.getoption("normspec_startup_timeout"),
            vectors=config.getoption("normspec_vectors"),
            ledger_dir=Path(ledger_dir) if ledger_dir else None)
        manifest = load_manifest(run_config.vectors)
        planned = plan(manifest, run_config)
    except (registry.AdapterLoadError, LedgerError, SelectionError, VectorFormatError,
            ValueError) as exc:
        raise pytest.UsageError(f"normspec: {exc}") from None
    state = _State(config=run_config, manifest=manifest, plan=planned,
                   known_ids=all_ids(manifest))
    config.stash[_STATE] = state
    config.add_cleanup(state.close)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Collect the checks from this very module (reached by ``--pyargs normspec.conformance``)."""
    state = parent.config.stash.get(_STATE, None)
    if state is None or file_path.resolve() != Path(__file__).resolve():
        return None
    return ConformanceFile.from_parent(parent, path=file_path)


class ConformanceFile(pytest.File):
    """One collector per adapter below this module."""

    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        state = self.config.stash[_STATE]
        for spec in state.config.adapters:
            yield AdapterCollector.from_parent(self, name=spec, spec=spec)


class AdapterCollector(pytest.Collector):
    """The checks of one adapter, one item per test id; ledger entries become strict xfails."""

    def __init__(self, *, spec: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec

    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        from .ledger import LedgerError
        from .results import make_id

        state = self.config.stash[_STATE]
        try:
            session = state.session(self.spec)
        except LedgerError as exc:
            raise self.CollectError(str(exc)) from None
        device = state.config.device
        for planned in state.plan:
            for check in planned.checks:
                test_id = make_id(planned.method, planned.case, planned.dtype, check)
                item = ConformanceItem.from_parent(self, name=test_id, spec=self.spec,
                                                   planned=planned, check=check)
                entry = session.ledger.lookup(test_id, device)
                if entry is not None:
                    item.add_marker(pytest.mark.xfail(
                        strict=True, reason=f"{entry.reason} (evidence: {entry.evidence})"))
                yield item


class ConformanceFailure(Exception):
    """A ``fail`` or ``error`` result; reported with its message only (no traceback)."""


class ConformanceItem(pytest.Item):
    """One check of one case in one dtype for one adapter."""

    def __init__(self, *, spec: str, planned: Any, check: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec, self.planned, self.check = spec, planned, check

    def runtest(self) -> None:
        result = self.config.stash[_STATE].result(self.spec, self.planned, self.check)
        self.user_properties.append(("status", result.status))
        if result.headroom is not None:
            self.user_properties.append(("headroom", f"{result.headroom:.4g}"))
        if result.status == "skip":
            pytest.skip(result.message)
        if result.status == "not_applicable":
            # pytest has no such outcome: a skip whose reason says so (status property too).
            pytest.skip(f"not applicable: {result.message}")
        if result.status in ("fail", "error"):
            raise ConformanceFailure(f"{result.status}: {result.message}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        if isinstance(excinfo.value, ConformanceFailure):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo, style=style))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.spec}: {self.name}"


__all__ = ["AdapterCollector", "ConformanceFailure", "ConformanceFile", "ConformanceItem",
           "pytest_addoption", "pytest_collect_file", "pytest_configure"]
