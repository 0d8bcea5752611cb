"""The ``normspec`` command line: ``run``, ``list`` and ``vectors build|check``.

Each subcommand lives in its own module and registers itself here; heavy imports (frameworks,
the runner) happen only when a subcommand runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


class UsageError(Exception):
    """A bad name or file given on the command line; reported as one line, exit status 2."""


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

    from . import cli_run, cli_vectors

    cli_run.register(sub)
    cli_vectors.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``normspec`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
    except UsageError as exc:
        print(f"normspec: error: {exc}", file=sys.stderr)
        return 2
    return status


__all__ = ["UsageError", "build_parser", "main"]

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
