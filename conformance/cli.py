"""The ``normspec`` command line: ``run``, ``list`` and ``vectors build|check``.

Each subcommand lives in its own module and registers itself here; heavy imports (frameworks,
the runner) happen only when a subcommand runs.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from typing import Any

from .errors import UsageError


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("normspec")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="normspec",
        description="Reference specification and conformance suite for normalization layers.",
    )
    parser.add_argument("--version", action="version", version=f"normspec {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from . import cli_bench, cli_coverage, cli_report, cli_run, cli_vectors

    cli_run.register(sub)
    cli_vectors.register(sub)
    cli_coverage.register(sub)
    cli_report.register(sub)
    cli_bench.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``normspec`` console script; returns the exit status."""
    # SIGTERM (a CI job's timeout) is handled like Ctrl-C from the first instant, so that no
    # signal ends a command in a traceback or without its reports. Both are held back while
    # the command's modules import: a KeyboardInterrupt inside an import leaves a half-imported
    # module (NumPy's cannot be imported again), and then not even a report could be written.
    previous = _sigterm_as_interrupt()
    held = _hold_signals()
    args: argparse.Namespace | None = None
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        prepare = getattr(args, "prepare", None)
        if prepare is not None:
            prepare()
        _release_signals(held)  # a signal that arrived meanwhile is raised here
        held = None
        status: int = args.func(args)
    except UsageError as exc:
        print(f"normspec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        on_interrupt = getattr(args, "on_interrupt", None)
        if on_interrupt is not None:
            code: int = on_interrupt(args)
            return code
        print("normspec: interrupted", file=sys.stderr)
        return 130
    finally:
        _release_signals(held)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return status


_HELD = {signal.SIGINT, signal.SIGTERM}


def _hold_signals() -> Any:
    if not hasattr(signal, "pthread_sigmask"):  # not on Windows: signals are not held there
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)


def _release_signals(held: Any) -> None:
    if held is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _sigterm_as_interrupt() -> Any:
    try:
        return signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread (an embedding application): leave signals alone
        return None


__all__ = ["UsageError", "build_parser", "main"]

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
