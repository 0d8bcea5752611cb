"""``normspec vectors build [--out DIR] [--method M]...`` and ``normspec vectors check``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

MAX_LISTED_PROBLEMS = 50


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``vectors`` command and its ``build`` and ``check`` actions."""
    parser = subparsers.add_parser(
        "vectors", help="build or check the golden vectors",
        description="Build the golden vectors from the case catalogs, or rebuild them and "
                    "compare with the committed ones. The format is in spec/FORMAT.md.")
    actions = parser.add_subparsers(dest="vectors_action", required=True, metavar="ACTION")
    build = actions.add_parser(
        "build", help="generate spec/vectors from spec/cases",
        description="Generate the vectors of every catalog (or of --method) and write them, "
                    "replacing the files of the methods built. A file is removed only when "
                    "the manifest already in the directory lists it under a method being "
                    "rebuilt and the build no longer produces it; nothing else there is "
                    "touched.")
    build.add_argument("--out", type=Path, default=None,
                       help="output directory (default: the installed normspec spec/vectors)")
    build.add_argument("--method", action="append", default=None, metavar="METHOD",
                       help="build only this method (repeatable); the other methods of a "
                            "valid manifest already in the output directory stay listed, with "
                            "their files")
    build.set_defaults(func=_build)
    check = actions.add_parser(
        "check", help="rebuild in a temporary directory and compare with the committed vectors",
        description="Rebuild and compare: inputs, directions and metadata bitwise; expected "
                    "values within 1 ulp (NaN/Inf at the same places). Exit status 1 on any "
                    "difference.")
    check.add_argument("--vectors", type=Path, default=None,
                       help="the vectors to check (default: the installed spec/vectors)")
    check.add_argument("--method", action="append", default=None, metavar="METHOD",
                       help="check only this method (repeatable)")
    check.set_defaults(func=_check)


def _methods(given: Sequence[str] | None) -> tuple[str, ...] | None:
    from .errors import UsageError
    from .vectors.storage import reference_module

    methods = reference_module().METHODS
    if given is None:
        return None
    unknown = [m for m in given if m not in methods]
    if unknown:
        raise UsageError(f"--method: unknown method(s) {unknown}, expected names from "
                         f"{list(methods)}")
    return tuple(dict.fromkeys(given))


def _build(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from .errors import UsageError
    from .vectors.generate import SIZE_BUDGET, build, keep_other_methods, sizes, write
    from .vectors.manifest import dumps
    from .vectors.storage import as_path, default_vectors_root

    console = Console()
    methods = _methods(args.method)
    out = args.out if args.out is not None else as_path(default_vectors_root(), "--out")
    start = time.perf_counter()
    try:
        manifest, files = build(methods)
    except (ValueError, TypeError) as exc:
        print(f"normspec vectors build: error: {exc}", file=sys.stderr)
        return 1
    try:
        note = None
        if methods is not None:
            manifest, note = keep_other_methods(out, manifest)
        removed = write(out, manifest, files)
    except OSError as exc:
        # a read-only or missing location is a bad --out, not a bug: one line, exit status 2
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(out) else ""
        raise UsageError(f"--out {out}: cannot write the vectors there: "
                         f"{exc.strerror or exc}{where}") from None
    if note:
        console.print(f"note: {note}", markup=False, highlight=False)
    for rel in removed:
        console.print(f"removed {out / rel} (listed by the previous manifest, no longer built)",
                      markup=False, highlight=False)
    per_method = sizes(manifest)
    table = Table(title=f"golden vectors in {out}")
    for column in ("method", "cases", "skipped (case x dtype)", "bytes"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for method, entry in manifest["methods"].items():
        skipped = sum(len(d["skipped"]) for d in entry["dtypes"].values())
        table.add_row(method, str(len(entry["cases"])), str(skipped), f"{per_method[method]:,}")
    manifest_bytes = len(dumps(manifest).encode())
    total = sum(per_method.values()) + manifest_bytes
    table.add_row("manifest.json", "", "", f"{manifest_bytes:,}")
    table.add_row("total", "", "", f"{total:,}")
    console.print(table)
    console.print(f"built in {time.perf_counter() - start:.1f} s; size budget "
                  f"{SIZE_BUDGET:,} bytes ({100 * total / SIZE_BUDGET:.1f}% used)")
    if total > SIZE_BUDGET:
        print(f"normspec vectors build: error: the vectors take {total:,} bytes, over the "
              f"budget of {SIZE_BUDGET:,}; shrink the catalogs", file=sys.stderr)
        return 1
    return 0


def _check(args: argparse.Namespace) -> int:
    from .vectors.check import MAX_ULP, check

    start = time.perf_counter()
    result = check(args.vectors, _methods(args.method))
    for note in result.notes:
        print(f"note: {note}")
    for problem in result.problems[:MAX_LISTED_PROBLEMS]:
        print(f"mismatch: {problem}", file=sys.stderr)
    if len(result.problems) > MAX_LISTED_PROBLEMS:
        print(f"... and {len(result.problems) - MAX_LISTED_PROBLEMS} more", file=sys.stderr)
    ulp = ("bitwise identical" if result.max_ulp == 0
           else f"max {result.max_ulp} ulp (allowed {MAX_ULP})")
    elapsed = time.perf_counter() - start
    if result.ok:
        print(f"vectors check: OK, {result.tensors} tensors compared; expected values: {ulp} "
              f"({elapsed:.1f} s)")
        return 0
    print(f"vectors check: FAILED, {len(result.problems)} mismatch(es); expected values: {ulp}",
          file=sys.stderr)
    return 1
