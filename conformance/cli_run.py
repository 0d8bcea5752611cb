"""``normspec run`` (conformance run, reports, exit status) and ``normspec list``.

Exit status of ``run``: 0 when nothing failed, errored or passed unexpectedly; 1 otherwise;
2 for a usage error (an unknown name, a broken ledger, corrupted vectors), reported as one line;
130 when interrupted (the reports are written in every case).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from normspec import reference

from .options import seconds
from .results import CHECK_ORDER

DTYPES = ("float64", "float32", "float16", "bfloat16")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``run`` and ``list`` commands."""
    run = subparsers.add_parser(
        "run", help="run the golden vectors and gradient checks against adapters",
        description="Run every selected check (forward, state, vjp, jvp, second_order) of the "
                    "golden vectors against each adapter, each in its own worker process. "
                    "Exit status 0 only when nothing failed, errored or passed unexpectedly.")
    run.add_argument("--adapter", action="append", metavar="NAME|module:attr",
                     help="a registered adapter (see `normspec list`) or module:attribute or "
                          "file.py:attribute (repeatable; default: numpy)")
    run.add_argument("--device", default="cpu", type=_device,
                     help="device to run on: cpu, cuda, gpu, ... (default: cpu); adapters "
                          "without it report skips, and a run in which no check ran fails")
    run.add_argument("--dtype", action="append", choices=DTYPES, metavar="DTYPE",
                     help=f"dtype under test, one of {', '.join(DTYPES)} (repeatable; "
                          "default: all)")
    run.add_argument("--method", action="append", metavar="METHOD",
                     help="method to run (repeatable; default: every method with vectors)")
    run.add_argument("--case", action="append", metavar="GLOB",
                     help="only cases whose name matches this glob (repeatable: a case runs "
                          "when it matches any of them)")
    run.add_argument("--exclude-case", action="append", metavar="GLOB",
                     help="leave out cases whose name matches this glob (repeatable)")
    run.add_argument("--check", action="append", choices=CHECK_ORDER, metavar="CHECK",
                     help=f"check to run, one of {', '.join(CHECK_ORDER)} (repeatable; "
                          "default: all)")
    run.add_argument("--timeout", type=_positive, default=60.0, metavar="S",
                     help="seconds one adapter call may take before it is an error and the "
                          "worker is restarted (default: 60)")
    run.add_argument("--startup-timeout", type=_positive, default=300.0, metavar="S",
                     help="seconds an adapter may take to load in its worker, importing its "
                          "framework included (default: 300)")
    run.add_argument("--json", type=Path, metavar="FILE", help="write the JSON report here")
    run.add_argument("--junit", type=Path, metavar="FILE", help="write a JUnit XML report here")
    run.add_argument("--markdown", type=Path, metavar="FILE",
                     help="write a Markdown report here")
    run.add_argument("--vectors", metavar="DIR",
                     help="directory with manifest.json (default: the installed spec/vectors)")
    run.add_argument("--ledger-dir", type=Path, metavar="DIR",
                     help="directory with <adapter>.toml xfail ledgers (default: the built-in "
                          "ledgers)")
    run.add_argument("--jobs", type=_count, default=0, metavar="N",
                     help="run up to N adapters at the same time, each in its own worker "
                          "process (default: one per CPU core, at most one per adapter; 1 runs "
                          "them one after the other); the report is the same either way")
    run.add_argument("--workers", type=_count, default=1, metavar="N",
                     help="worker processes per adapter, taking its cases from one queue "
                          "(default 1); more spreads a slow adapter, such as JAX compiling, "
                          "over the cores; the report is the same either way")
    run.add_argument("--shard", type=_shard, default=(1, 1), metavar="K/N",
                     help="run only the K-th of N deterministic, balanced parts of the "
                          "selection (e.g. 2/3); join the parts' JSON reports with "
                          "`normspec report merge`")
    run.add_argument("--durations", type=_count, default=0, metavar="N",
                     help="print the N slowest cases (adapter call time), as pytest does")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(func=_run, prepare=_prepare, on_interrupt=_interrupted_early)

    lst = subparsers.add_parser(
        "list", help="list the methods, the adapters found and what each supports",
        description="Show the methods, the registered adapters (plus any given with "
                    "--adapter), their versions and devices, and a support matrix per adapter.")
    lst.add_argument("--adapter", action="append", metavar="NAME|module:attr",
                     help="show only these adapters (repeatable; default: every registered one)")
    lst.add_argument("--device", default="cpu", help="device of the support matrix "
                     "(default: cpu)")
    lst.set_defaults(func=_list)


def _positive(text: str) -> float:
    try:
        return seconds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _shard(text: str) -> tuple[int, int]:
    k, sep, n = text.partition("/")
    if sep and k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n):
        return int(k), int(n)
    raise argparse.ArgumentTypeError(f"got {text!r}, expected K/N with 1 <= K <= N, e.g. 2/3")


def _count(text: str) -> int:
    if text.isdigit():
        return int(text)
    raise argparse.ArgumentTypeError(f"got {text!r}, expected a count (0 or more)")


def _device(text: str) -> str:
    if not text or not text.replace("_", "").replace(":", "").isalnum() or text != text.strip():
        raise argparse.ArgumentTypeError(f"got {text!r}, expected a device name such as cpu or "
                                         f"cuda")
    return text


def _usage(exc: BaseException) -> Exception:
    from .errors import UsageError

    # One line: the first line names the file or the name; the rest is detail.
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return UsageError("; ".join(lines[:3]) if lines else type(exc).__name__)


def _usage_errors() -> tuple[type[BaseException], ...]:
    from normspec.adapters.registry import AdapterLoadError

    from .ledger import LedgerError
    from .runner import SelectionError
    from .vectors import VectorFormatError

    return (AdapterLoadError, LedgerError, SelectionError, VectorFormatError)


# run ------------------------------------------------------------------------------------------


def _prepare() -> None:
    """Import what a run needs while the command line holds signals back (see cli.main), so
    that an interrupt never lands inside an import and a report can always be written."""
    import rich.console
    import rich.progress  # noqa: F401

    from . import reports, runner  # noqa: F401


def _run(args: argparse.Namespace) -> int:
    # A SIGTERM (a CI job's timeout) or Ctrl-C in the first second must still end in a report
    # and exit 130, never in a traceback.
    previous = _on_sigterm_interrupt()
    try:
        return _run_guarded(args)
    except KeyboardInterrupt:
        # Interrupted before the run began: an empty, interrupted report is still written.
        return _interrupted_early(args)
    finally:
        _restore_sigterm(previous)


def _run_guarded(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .ledger import check_ledger_dir
    from .runner import RunConfig, Runner

    usage = _usage_errors()
    from normspec.adapters import registry
    try:
        _check_report_paths(args)
        if args.ledger_dir is not None:
            check_ledger_dir(args.ledger_dir)
        specs = tuple(registry.check_spec(s) for s in dict.fromkeys(args.adapter or ["numpy"]))
        config = RunConfig(
            adapters=specs, device=args.device,
            dtypes=tuple(dict.fromkeys(args.dtype or DTYPES)),
            methods=tuple(dict.fromkeys(args.method or ())),
            cases=tuple(dict.fromkeys(args.case or ())),
            exclude_cases=tuple(dict.fromkeys(args.exclude_case or ())),
            checks=tuple(c for c in CHECK_ORDER if c in (args.check or CHECK_ORDER)),
            timeout=args.timeout, startup_timeout=args.startup_timeout, vectors=args.vectors,
            ledger_dir=args.ledger_dir, shard=args.shard, workers=args.workers,
            jobs=args.jobs or min(len(specs), os.cpu_count() or 1))
        runner = Runner(config, argv=_command(config, args))
    except usage as exc:
        raise _usage(exc) from None
    except ValueError as exc:  # the vectors loader's argument errors
        raise _usage(exc) from None

    out = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 160)
    err = Console(stderr=True)
    status, summary = EXIT_FAILED, True
    try:
        with _Progress(err, runner.total, enabled=not args.no_progress) as advance:
            runner.run(on_result=advance)
        status = EXIT_FAILED if runner.report.failed else EXIT_OK
    except KeyboardInterrupt:
        err.print("[bold red]interrupted[/]: writing the reports of the results so far")
        status = EXIT_INTERRUPTED
    except usage as exc:
        summary = False
        raise _usage(exc) from None
    finally:
        written = _write_reports(runner.report, args, err)
        if summary:
            from .reports import print_durations, print_summary

            print_summary(runner.report, out)
            if args.durations:
                print_durations(runner.report, out, args.durations)
            aborted = runner.report.meta.get("aborted")
            if aborted and status != EXIT_INTERRUPTED:
                err.print(f"normspec: {aborted}", markup=False, highlight=False)
    return status if written or status != EXIT_OK else EXIT_USAGE


def _interrupted_early(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .results import Report
    from .runner import RunConfig, run_metadata

    err = Console(stderr=True)
    err.print("[bold red]interrupted[/] before the run began: writing empty reports")
    meta = run_metadata(RunConfig(adapters=tuple(args.adapter or ["numpy"]),
                                  device=args.device), ["normspec", "run"], args.vectors or "")
    meta["interrupted"] = True
    with contextlib.suppress(KeyboardInterrupt):  # a second signal while writing: give up
        _write_reports(Report(meta=meta), args, err)
    return EXIT_INTERRUPTED


def _check_report_paths(args: argparse.Namespace) -> None:
    """Refuse report paths that could not be written, before anything runs.

    One path for two formats would leave only the last one written; a parent that is a file,
    or a directory that cannot be written, would only show after the whole run.
    """
    from .errors import UsageError

    given = [(flag, path) for flag, path in (("--json", args.json), ("--junit", args.junit),
                                               ("--markdown", args.markdown)) if path is not None]
    seen: dict[Path, str] = {}
    for flag, path in given:
        key = path.resolve()
        if key in seen:
            raise UsageError(f"{seen[key]} and {flag} both write {path}; give each report its "
                             f"own file")
        seen[key] = flag
        if path.is_dir():
            raise UsageError(f"cannot write the {flag} report to {path}: it is a directory, "
                             f"expected a file path")
        parent = _existing_parent(path)
        if not parent.is_dir():
            raise UsageError(f"cannot write the {flag} report to {path}: {parent} is not a "
                             f"directory")
        if not os.access(parent, os.W_OK | os.X_OK) or not _can_create_in(parent):
            raise UsageError(f"cannot write the {flag} report to {path}: {parent} is not "
                             f"writable")


def _can_create_in(folder: Path) -> bool:
    # os.access says yes to root everywhere; creating (and removing) a file is the real test
    # (a read-only file system, /proc).
    import tempfile

    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".normspec-probe-")
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


def _existing_parent(path: Path) -> Path:
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _on_sigterm_interrupt() -> Any:
    """Treat SIGTERM (a CI job's timeout) like Ctrl-C, so the reports are still written."""
    import signal

    try:
        return signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread: leave signals alone
        return None


def _restore_sigterm(previous: Any) -> None:
    import signal

    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _command(config: Any, args: argparse.Namespace) -> list[str]:
    """The run's command line, normalized (recorded in the reports)."""
    cmd = ["normspec", "run"]
    for spec in config.adapters:
        cmd += ["--adapter", spec]
    cmd += ["--device", config.device]
    for d in config.dtypes:
        cmd += ["--dtype", d]
    for m in config.methods:
        cmd += ["--method", m]
    for g in config.cases:
        cmd += ["--case", g]
    for g in config.exclude_cases:
        cmd += ["--exclude-case", g]
    for c in config.checks:
        cmd += ["--check", c]
    cmd += ["--timeout", f"{config.timeout:g}"]
    if config.shard != (1, 1):
        cmd += ["--shard", f"{config.shard[0]}/{config.shard[1]}"]
    if config.startup_timeout != 300.0:
        cmd += ["--startup-timeout", f"{config.startup_timeout:g}"]
    for flag, value in (("--vectors", args.vectors), ("--ledger-dir", args.ledger_dir),
                        ("--json", args.json), ("--junit", args.junit),
                        ("--markdown", args.markdown)):
        if value is not None:
            cmd += [flag, str(value)]
    return cmd


def _write_reports(report: Any, args: argparse.Namespace, err: Any) -> bool:
    from .reports import write_json, write_junit, write_markdown

    ok = True
    writers: list[tuple[Path | None, Callable[[Any, Path], None]]] = [
        (args.json, write_json), (args.junit, write_junit), (args.markdown, write_markdown)]
    for path, write in writers:
        if path is None:
            continue
        try:
            write(report, path)
        except OSError as exc:
            err.print(f"normspec: error: cannot write {path}: {exc.strerror or exc}",
                      markup=False, highlight=False)
            ok = False
    return ok


class _Progress:
    """A rich progress bar advanced once per result (nothing when disabled or not a terminal)."""

    def __init__(self, console: Any, total: int, *, enabled: bool) -> None:
        self.console, self.total = console, total
        self.enabled = enabled and console.is_terminal
        self.bar: Any = None
        self.task: Any = None
        self.bad = 0

    def __enter__(self) -> Callable[[Any], None]:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                MofNCompleteColumn(), TextColumn("{task.fields[bad]}"),
                                TimeElapsedColumn(), console=self.console, transient=True)
            self.bar.start()
            self.task = self.bar.add_task("starting", total=self.total, bad="")
        return self.advance

    def advance(self, result: Any) -> None:
        if self.bar is None:
            return
        from rich.markup import escape

        if result.status in ("fail", "error", "xpass"):
            self.bad += 1
        self.bar.update(self.task, advance=1,
                        description=escape(f"{result.adapter} {result.method} {result.dtype}"),
                        bad=f"[red]{self.bad} failing[/]" if self.bad else "")

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


# list -----------------------------------------------------------------------------------------


def _method_line(method: str) -> str:
    try:
        module = reference.get(method)
    except (ImportError, ValueError) as exc:
        return f"(not available: {exc})"
    doc = (module.__doc__ or "").strip().splitlines()
    return doc[0] if doc else ""


def _list(args: argparse.Namespace) -> int:
    from normspec.adapters import registry
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    methods: tuple[str, ...] = reference.METHODS
    out = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 160)

    table = Table(title="methods", title_justify="left")
    table.add_column("method")
    table.add_column("description")
    for m in methods:
        table.add_row(m, escape(_method_line(m)))
    for m, why in reference.NOT_YET_SPECIFIED.items():
        table.add_row(f"[dim]{m}[/]", f"[yellow]not yet specified:[/] {escape(why)}")
    out.print(table)

    specs = list(dict.fromkeys(args.adapter or registry.available()))
    if not specs:
        out.print("no adapters registered (entry-point group normspec.adapters)")
        return EXIT_OK
    adapters = Table(title="adapters", title_justify="left")
    for col in ("adapter", "target", "versions", "devices"):
        adapters.add_column(col)
    loaded = []
    for spec in specs:
        target = registry.available().get(spec, spec)
        try:
            adapter = registry.load(spec)
            versions = escape(", ".join(f"{k} {v}" for k, v in adapter.versions().items()))
            devices = ", ".join(adapter.devices())
        except registry.AdapterLoadError as exc:
            raise _usage(exc) from None
        except Exception as exc:  # a broken or uninstalled framework: shown, not fatal
            adapters.add_row(spec, target, f"[red]unavailable: {type(exc).__name__}: {exc}[/]",
                             "")
            continue
        adapters.add_row(adapter.name, target, versions, devices)
        loaded.append(adapter)
    out.print(adapters)

    marks = {"native": "[green]native[/]", "composed": "[cyan]composed[/]"}
    for adapter in loaded:
        matrix = Table(title=f"{adapter.name} on {args.device}", title_justify="left")
        matrix.add_column("method")
        for d in DTYPES:
            matrix.add_column(d)
        notes: dict[str, str] = {}
        reasons: dict[str, str] = {}
        for m in methods:
            cells = []
            for d in DTYPES:
                try:
                    s = adapter.support(m, d, args.device)
                except Exception as exc:
                    cells.append(f"[red]error: {escape(type(exc).__name__)}: {escape(str(exc))}[/]")
                    continue
                if s.supported:
                    missing = [c for c in CHECK_ORDER if c in (s.not_implemented or {})]
                    cell = marks.get(s.kind, s.kind)
                    if missing:
                        cell += " (forward only)" if set(missing) == {
                            "vjp", "jvp", "second_order"} else f" (no {', '.join(missing)})"
                        notes.setdefault(
                            f"not implemented ({', '.join(missing)}): "
                            f"{next(iter(s.not_implemented.values()))}", f"{m} {d}")
                    cells.append(cell)
                    if s.reason:
                        reasons.setdefault(s.reason, f"{m} {d}")
                else:
                    cells.append("[dim]unsupported[/]")
                    notes.setdefault(s.reason, f"{m} {d}")
            matrix.add_row(m, *cells)
        out.print(matrix)
        for reason, first in notes.items():
            label = "" if reason.startswith("not implemented") else "unsupported: "
            out.print(f"  {label}{reason} ({first}, ...)", markup=False, highlight=False)
        for reason, first in reasons.items():
            out.print(f"  how: {reason} ({first}, ...)", markup=False, highlight=False)
    return EXIT_OK


__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "register"]
