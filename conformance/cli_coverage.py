"""``normspec coverage [--method M]... [--markdown FILE] [--mutants DIR]``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .coverage import MethodCoverage, MutantKills


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``coverage`` command."""
    parser = subparsers.add_parser(
        "coverage", help="which cases exercise each branch of each method's definition",
        description="Count, per method and dtype, the golden-vector cases that exercise each "
                    "branch and convention of the definition (the rows of "
                    "normspec.conformance.coverage.COVERAGE). Exit status 1 when a row has "
                    "fewer cases than its minimum in some dtype.")
    parser.add_argument("--method", action="append", default=None, metavar="METHOD",
                        help="only this method (repeatable)")
    parser.add_argument("--markdown", type=Path, default=None, metavar="FILE",
                        help="write the coverage page (docs/coverage.md) to FILE")
    parser.add_argument("--mutants", type=Path, default=None, metavar="DIR",
                        help="run the mutation self-test found in DIR (the folder holding the "
                             "'mutants' package, tests/ in a checkout) and add the mutation "
                             "score per method; takes minutes")
    parser.set_defaults(func=_coverage)


def _methods(given: Sequence[str] | None) -> tuple[str, ...]:
    from .coverage import COVERAGE
    from .errors import UsageError

    if given is None:
        return tuple(COVERAGE)
    unknown = [m for m in given if m not in COVERAGE]
    if unknown:
        raise UsageError(f"--method: unknown method(s) {unknown}, expected names from "
                         f"{list(COVERAGE)}")
    return tuple(dict.fromkeys(given))


def run_mutants(folder: Path, methods: Sequence[str]) -> list[MutantKills]:
    """Kill every mutant of ``folder/mutants`` that targets one of ``methods``.

    The package must define ``SPECS`` (name -> ``module:attribute``), ``TARGETS`` (name ->
    methods) and ``bug_class(name)``.
    """
    from .coverage import baseline, kill
    from .errors import UsageError

    if not (folder / "mutants" / "__init__.py").is_file():
        raise UsageError(f"--mutants: got {str(folder)!r}, expected a folder holding the "
                         "'mutants' package (tests/ in a checkout)")
    # the runner's spawned workers inherit sys.path, so they import the mutants the same way
    sys.path.insert(0, str(folder.resolve()))
    package = importlib.import_module("mutants")
    reference = baseline(methods)
    kills = []
    for name, spec in package.SPECS.items():
        targets = tuple(m for m in package.TARGETS[name] if m in methods)
        if targets:
            kills.append(kill(name, spec, targets, package.bug_class(name), reference))
    return kills


def _print(coverages: Sequence[MethodCoverage], kills: Sequence[MutantKills] | None) -> None:
    from rich.console import Console
    from rich.table import Table

    from .coverage import mutation_score
    from .vectors import DTYPES

    console = Console()
    for mc in coverages:
        table = Table(title=f"{mc.method}: cases per row and dtype")
        table.add_column("row")
        table.add_column("min", justify="right")
        for dtype in DTYPES:
            table.add_column(dtype, justify="right")
        for cov in mc.rows:
            cells = ["-" if d not in cov.cases else str(len(cov.cases[d])) for d in DTYPES]
            style = "red" if cov.short else ("yellow" if cov.row.pending else "")
            minimum = f"{cov.row.minimum}{' (pending)' if cov.row.pending else ''}"
            table.add_row(cov.row.name, minimum, *cells, style=style)
        console.print(table)
    if kills is not None:
        table = Table(title="mutation score")
        for column in ("method", "killed / total", "fewest killing cases"):
            table.add_column(column, justify="left" if column == "method" else "right")
        for method, (killed, total, fewest) in mutation_score(kills).items():
            table.add_row(method, f"{killed} / {total}", str(fewest),
                          style="" if killed == total else "red")
        console.print(table)


def _coverage(args: argparse.Namespace) -> int:
    from .coverage import method_coverage, page

    methods = _methods(args.method)
    coverages = [method_coverage(m) for m in methods]
    kills = None if args.mutants is None else run_mutants(args.mutants, methods)
    _print(coverages, kills)
    if args.markdown is not None:
        args.markdown.write_text(page(coverages, kills), encoding="utf-8")
        print(f"wrote {args.markdown}")
    short = [f"{mc.method}: {cov.row.name}" for mc in coverages for cov in mc.rows if cov.short]
    survivors = [f"{k.mutant} in {m}" for k in kills or () for m in k.targets
                 if not k.killing_cases.get(m)]
    for line in short:
        print(f"normspec coverage: below its minimum: {line}", file=sys.stderr)
    for line in survivors:
        print(f"normspec coverage: mutant survived: {line}", file=sys.stderr)
    return 1 if short or survivors else 0
