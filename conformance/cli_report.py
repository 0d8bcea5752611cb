"""``normspec report merge``: join the JSON reports of shards or devices into one report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``report`` command and its ``merge`` action."""
    parser = subparsers.add_parser(
        "report", help="work with JSON run reports (merge shards)",
        description="Work with the JSON reports that `normspec run --json` writes.")
    actions = parser.add_subparsers(dest="report_action", required=True, metavar="ACTION")
    merge = actions.add_parser(
        "merge", help="merge the reports of shards (and devices) into one report",
        description="Merge JSON reports into one. The shards of one run (`normspec run "
                    "--shard K/N`, same selection) give exactly the report of the unsharded "
                    "run: the same results in the same order, timing and metadata merged. "
                    "Reports of other runs (other devices) are concatenated. Every input is "
                    "validated against the report schema; reports of different vector sets or "
                    "normspec versions are refused. Exit status 0 when the merged run "
                    "passed, 1 when it failed, 2 for a report that cannot be merged.")
    merge.add_argument("reports", nargs="+", type=Path, metavar="REPORT.json",
                       help="JSON reports to merge")
    merge.add_argument("--json", type=Path, metavar="FILE", help="write the merged JSON report")
    merge.add_argument("--junit", type=Path, metavar="FILE",
                       help="write the merged JUnit XML report")
    merge.add_argument("--markdown", type=Path, metavar="FILE",
                       help="write the merged Markdown report")
    merge.set_defaults(func=_merge)


def _merge(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .errors import UsageError
    from .merge import MergeError, merge_reports
    from .reports import print_summary, write_json, write_junit, write_markdown

    outputs = [(p, w) for p, w in ((args.json, write_json), (args.junit, write_junit),
                                   (args.markdown, write_markdown)) if p is not None]
    targets = [p.resolve() for p, _ in outputs]
    if len(set(targets)) != len(targets):
        raise UsageError("one path given for two reports; give each report its own file")
    inputs = {p.resolve() for p in args.reports}
    clash = [str(p) for p, _ in outputs if p.resolve() in inputs]
    if clash:
        raise UsageError(f"{clash[0]} is both an input and an output of the merge")
    try:
        report = merge_reports(args.reports)
    except MergeError as exc:
        raise UsageError(str(exc)) from None
    for path, write in outputs:
        try:
            write(report, path)
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    print_summary(report, Console(soft_wrap=False, width=None if sys.stdout.isatty() else 160))
    return 1 if report.failed else 0


__all__ = ["register"]
