"""Reports of a run: JSON (``spec/report.schema.json``), JUnit XML, Markdown and a rich table.

Every writer takes a :class:`~.results.Report` and never raises on odd content (NaN errors,
long messages, non-ASCII), so reports can always be written, even after an interrupted run.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import math
import os
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .results import Report, Result, counts, worst_headroom

SCHEMA_NAME = "report.schema.json"
_SUMMARY_STATUSES = ("pass", "fail", "xfail", "xpass", "error", "skip", "not_applicable")
_HEADINGS = {"not_applicable": "n/a"}
"""Column headings where the status name is too long for a table."""


# JSON -----------------------------------------------------------------------------------------


def report_schema() -> dict[str, Any]:
    """The JSON Schema of the JSON report (``spec/report.schema.json``)."""
    text = resources.files("normspec.spec").joinpath(SCHEMA_NAME).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def validate_report(document: Any) -> None:
    """Raise ``jsonschema.ValidationError`` when ``document`` is not a valid JSON report."""
    # jsonschema ships no type information; imported here so writing reports never needs it.
    jsonschema: Any = importlib.import_module("jsonschema")
    schema = report_schema()
    jsonschema.validators.validator_for(schema)(schema).validate(document)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename,
    so a concurrent reader (or a second run writing the same path) never sees a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        # mkstemp creates the file private (0600); a report gets the mode a plain open() would
        # give it (0666 less the umask), or keeps the mode of the file it replaces.
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; set it straight back
    os.umask(mask)
    return mask


def write_json(report: Report, path: Path) -> None:
    """Write the JSON report (UTF-8, strict JSON: no NaN or Infinity)."""
    text = json.dumps(report.to_dict(), indent=1, allow_nan=False, ensure_ascii=False)
    write_atomic(path, (text + "\n").encode("utf-8"))


# Grouping -------------------------------------------------------------------------------------


def groups(results: Iterable[Result]) -> Iterator[tuple[tuple[str, str, str, str], list[Result]]]:
    """Results grouped by (adapter, device, method, dtype), in first-seen order."""
    table: dict[tuple[str, str, str, str], list[Result]] = {}
    for r in results:
        table.setdefault((r.adapter, r.device, r.method, r.dtype), []).append(r)
    yield from table.items()


def _headroom_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def headroom_cell(results: list[Result]) -> tuple[str, str]:
    """The worst-headroom cell of a summary row and its style: red when the row fails, yellow
    with "(xfail)" when only the ledger's expected failures go past the budget, so an
    expected deviation does not read as a new one."""
    worst = worst_headroom(results)
    text = _headroom_text(worst)
    if worst is None or not (math.isnan(worst) or worst > 1):
        return text, ""
    if any(r.status in ("fail", "error", "xpass") for r in results):
        return text, "red"
    return f"{text} (xfail)", "yellow"


# JUnit XML ------------------------------------------------------------------------------------

# XML 1.0 forbids most control characters; adapter tracebacks can contain them.
_XML_BAD = {i: None for i in range(32) if chr(i) not in "\t\n\r"}


def _xml_text(text: str) -> str:
    return text.translate(_XML_BAD)


def junit_tree(report: Report) -> ET.ElementTree[ET.Element[str]]:
    """The JUnit XML tree: one ``testsuite`` per adapter and device, one ``testcase`` per id.

    Mapping of statuses (as pytest's junitxml does it): fail and xpass -> ``failure``,
    error -> ``error``, skip and xfail -> ``skipped``; JUnit has no "not applicable", so a
    check the method declares not applicable is ``skipped`` of type
    ``normspec.not_applicable`` with its reason, and the ``testcase`` carries a
    ``status`` property with the status itself.
    """
    root = ET.Element("testsuites", name="normspec")
    suites: dict[tuple[str, str], list[Result]] = {}
    for r in report.results:
        suites.setdefault((r.adapter, r.device), []).append(r)
    total = counts(report.results)
    root.set("tests", str(len(report.results)))
    root.set("failures", str(total["fail"] + total["xpass"]))
    root.set("errors", str(total["error"]))
    root.set("skipped", str(total["skip"] + total["xfail"] + total["not_applicable"]))
    root.set("time", f"{float(report.meta.get('wall_time_s', 0.0)):.3f}")
    for (adapter, device), results in suites.items():
        c = counts(results)
        suite = ET.SubElement(root, "testsuite", {
            "name": f"normspec.{adapter}.{device}", "tests": str(len(results)),
            "failures": str(c["fail"] + c["xpass"]), "errors": str(c["error"]),
            "skipped": str(c["skip"] + c["xfail"] + c["not_applicable"]),
            "time": f"{sum(r.duration_s for r in results):.3f}",
            "timestamp": str(report.meta.get("started", "")),
            "hostname": str(report.meta.get("hostname", "")),
        })
        props = ET.SubElement(suite, "properties")
        for key, value in report.versions_of(adapter).items():
            ET.SubElement(props, "property", name=key, value=_xml_text(value))
        for r in results:
            case = ET.SubElement(suite, "testcase", {
                "classname": f"normspec.{adapter}.{device}.{r.method}", "name": r.id,
                "time": f"{r.duration_s:.6f}"})
            text = _xml_text(r.message)
            first = text.split("\n", 1)[0]
            if r.status in ("fail", "xpass"):
                ET.SubElement(case, "failure", message=first, type=r.status).text = text
            elif r.status == "error":
                ET.SubElement(case, "error", message=first, type="error").text = text
            elif r.status in ("skip", "xfail"):
                ET.SubElement(case, "skipped", message=first,
                              type="normspec.xfail" if r.status == "xfail" else "normspec.skip")
            elif r.status == "not_applicable":
                ET.SubElement(case, "skipped", message=first,
                              type="normspec.not_applicable").text = text
                ET.SubElement(ET.SubElement(case, "properties"), "property", name="status",
                              value=r.status)
    return ET.ElementTree(root)


def write_junit(report: Report, path: Path) -> None:
    """Write the JUnit XML report."""
    tree = junit_tree(report)
    ET.indent(tree)
    buffer = io.BytesIO()
    tree.write(buffer, encoding="utf-8", xml_declaration=True)
    write_atomic(path, buffer.getvalue())


# Markdown -------------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(report: Report, max_details: int = 50) -> str:
    """The Markdown report: a summary table per adapter, then every failing result in detail
    (the first ``max_details`` open, the rest collapsed), every skip grouped by its reason, and
    the expected failures with their ledger reasons."""
    meta = report.meta
    lines = ["# normspec conformance report", ""]
    lines.append(f"normspec {meta.get('normspec_version', '?')}, {meta.get('platform', '?')}, "
                 f"Python {meta.get('python', '?')}; started {meta.get('started', '?')}, "
                 f"wall time {float(meta.get('wall_time_s', 0.0)):.1f} s.")
    if meta.get("interrupted"):
        lines.append("")
        lines.append("**The run was interrupted; the results below are incomplete.**")
    for a in report.adapters:
        versions = ", ".join(f"{k} {v}" for k, v in a.versions.items()) or "no versions"
        lines += ["", f"## {a.name} ({versions})", ""]
        if a.load_error:
            lines += ["The adapter failed to load:", "", "```", a.load_error, "```"]
            continue
        lines.append("| method | dtype | device | "
                     + " | ".join(_HEADINGS.get(s, s) for s in _SUMMARY_STATUSES)
                     + " | worst headroom |")
        lines.append("|---|---|---|" + "---:|" * (len(_SUMMARY_STATUSES) + 1))
        for (adapter, device, method, dtype), results in groups(report.results):
            if adapter != a.name:
                continue
            c = counts(results)
            cells = " | ".join(str(c[s]) for s in _SUMMARY_STATUSES)
            lines.append(f"| {method} | {dtype} | {device} | {cells} | "
                         f"{headroom_cell(results)[0]} |")
    bad = [r for r in report.results if r.status in ("fail", "error", "xpass")]
    if bad:
        # Every failing result is listed: the first ones open, the rest collapsed (a report
        # that stops at some count hides exactly the results someone is looking for).
        lines += ["", f"## Failures ({len(bad)})", ""]
        for i, r in enumerate(bad):
            head = f"{r.adapter}: <code>{_html(r.id)}</code> ({r.status})"
            lines += [f"<details{' open' if i < max_details else ''}><summary>{head}</summary>",
                      "", "```", r.message.strip(), "```", "", "</details>", ""]
    skipped: dict[tuple[str, str], list[Result]] = {}
    for r in report.results:
        if r.status == "skip":
            skipped.setdefault((r.adapter, r.message.strip() or "(no reason given)"),
                               []).append(r)
    if skipped:
        lines += ["", f"## Skipped ({sum(len(v) for v in skipped.values())})", "",
                  "| adapter | skipped | reason |", "|---|---:|---|"]
        lines += [f"| {name} | {len(rs)} | {_md_cell(reason)} |"
                  for (name, reason), rs in skipped.items()]
        for (name, reason), rs in skipped.items():
            ids = "\n".join(r.id for r in rs)
            lines += ["", f"<details><summary>{name}: {len(rs)} skipped: "
                          f"{_html(reason[:120])}</summary>", "", "```", ids, "```", "",
                      "</details>"]
    lines += _not_applicable_markdown(report.results)
    xfails = [r for r in report.results if r.status == "xfail"]
    if xfails:
        lines += ["", f"## Expected failures (ledger, {len(xfails)})", "",
                  "| adapter | test id | reason |", "|---|---|---|"]
        lines += [f"| {r.adapter} | `{r.id}` | {_md_cell(r.ledger)} |" for r in xfails]
    return "\n".join(lines).rstrip() + "\n"


def not_applicable_groups(results: Iterable[Result]) -> dict[tuple[str, str, str], int]:
    """(adapter, method, reason message) -> how many checks were not applicable, in
    first-seen order."""
    out: dict[tuple[str, str, str], int] = {}
    for r in results:
        if r.status == "not_applicable":
            key = (r.adapter, r.method, r.message.strip() or "(no reason given)")
            out[key] = out.get(key, 0) + 1
    return out


def _not_applicable_markdown(results: Iterable[Result]) -> list[str]:
    found = not_applicable_groups(results)
    if not found:
        return []
    lines = ["", f"## Not applicable ({sum(found.values())})", "",
             "Checks that the method's definition has no quantity for; neither passed nor "
             "skipped.", "", "| adapter | method | checks | reason |", "|---|---|---:|---|"]
    lines += [f"| {adapter} | {method} | {n} | {_md_cell(reason)} |"
              for (adapter, method, reason), n in found.items()]
    return lines


def _html(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("\n", " "))


def write_markdown(report: Report, path: Path) -> None:
    """Write the Markdown report."""
    write_atomic(path, markdown(report).encode("utf-8"))


# Terminal -------------------------------------------------------------------------------------


def summary_table(report: Report) -> Table:
    """The closing summary: method x dtype per adapter, status counts and the worst headroom."""
    table = Table(title="normspec conformance summary", show_lines=False)
    for col in ("adapter", "device", "method", "dtype"):
        table.add_column(col)
    styles = {"pass": "green", "fail": "red", "xfail": "yellow", "xpass": "red",
              "error": "red", "skip": "dim", "not_applicable": "blue"}
    for s in _SUMMARY_STATUSES:
        table.add_column(_HEADINGS.get(s, s), justify="right", style=styles[s])
    table.add_column("worst headroom", justify="right")
    for (adapter, device, method, dtype), results in groups(report.results):
        c = counts(results)
        text, style = headroom_cell(results)
        table.add_row(escape(adapter), escape(device), method, dtype,
                      *(str(c[s]) for s in _SUMMARY_STATUSES),
                      f"[{style}]{escape(text)}[/]" if style else text)
    return table


def slowest_cases(report: Report, count: int) -> list[tuple[float, str, str, float | None]]:
    """The ``count`` cases with the longest adapter time: (seconds, adapter, case id, compile
    seconds or None). A case's time is the sum of its checks' calls (forward serves state)."""
    totals: dict[tuple[str, str], list[float | None]] = {}
    counted: set[tuple[str, str, str]] = set()
    for r in report.results:
        key = (r.adapter, f"{r.method}[{r.case}]-{r.dtype}")
        op = "forward" if r.check == "state" else r.check
        if (key[0], key[1], op) in counted:
            continue  # the state check reuses the forward call's time
        counted.add((key[0], key[1], op))
        entry = totals.setdefault(key, [0.0, None])
        entry[0] = (entry[0] or 0.0) + r.duration_s
        if r.compile_s is not None:
            entry[1] = (entry[1] or 0.0) + r.compile_s
    rows = [(float(t or 0.0), a, case, c) for (a, case), (t, c) in totals.items()]
    return sorted(rows, key=lambda row: -row[0])[:count]


def print_durations(report: Report, console: Console, count: int) -> None:
    """Print the ``count`` slowest cases, as pytest's ``--durations`` does."""
    rows = slowest_cases(report, count)
    console.print(f"slowest {len(rows)} cases (adapter call time):", highlight=False)
    for seconds, adapter, case, compile_s in rows:
        split = f" (compile {compile_s:.2f}s)" if compile_s is not None else ""
        console.print(f"{seconds:8.2f}s {adapter} {case}{split}", markup=False,
                      highlight=False)


def print_summary(report: Report, console: Console, max_failures: int = 20) -> None:
    """Print the failing results (first lines and repro commands) and the summary table."""
    bad = [r for r in report.results if r.status in ("fail", "error", "xpass")]
    for r in bad[:max_failures]:
        # Test ids contain brackets, which rich would read as markup.
        console.print(f"[bold red]{r.status.upper()}[/] {escape(r.adapter)} {escape(r.id)}",
                      highlight=False)
        lines = r.message.strip().splitlines()
        # The head explains, the last line (the repro command) is what to do next.
        shown = lines if len(lines) <= 12 else [*lines[:10], "...", lines[-1]]
        console.print("\n".join("  " + line for line in shown), markup=False, highlight=False)
    if len(bad) > max_failures:
        console.print(f"... and {len(bad) - max_failures} more failing results (see the reports)")
    for a in report.adapters:
        if a.load_error:
            console.print(f"[bold red]adapter {escape(repr(a.spec))} failed to load:[/]")
            console.print(a.load_error, markup=False, highlight=False)
    if report.results:
        console.print(summary_table(report))
    for (adapter, method, reason), n in not_applicable_groups(report.results).items():
        console.print(f"[blue]NOT APPLICABLE[/] {escape(adapter)} {escape(method)}: {n} "
                      f"checks: {escape(reason)}", highlight=False)
    c = counts(report.results)
    verdict = "[bold red]FAILED[/]" if report.failed else "[bold green]PASSED[/]"
    console.print(f"{verdict} " + ", ".join(f"{c[s]} {s}" for s in _SUMMARY_STATUSES)
                  + f" in {float(report.meta.get('wall_time_s', 0.0)):.1f} s")


__all__ = ["SCHEMA_NAME", "groups", "headroom_cell", "junit_tree", "markdown",
           "not_applicable_groups", "print_durations", "print_summary", "report_schema",
           "slowest_cases", "summary_table", "validate_report", "write_atomic", "write_json",
           "write_junit", "write_markdown"]
