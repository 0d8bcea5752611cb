"""Benchmark output: the JSON document (validated against spec/bench.schema.json), the summary
table, and the plots (GB/s against input size per adapter, with the copy roofline drawn).

The plots need matplotlib (``pip install 'normspec[bench]'``); it is imported only when a plot
is written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

SCHEMA_FILE = "bench.schema.json"


def schema() -> dict[str, Any]:
    """The JSON Schema of a benchmark document (shipped in normspec.spec)."""
    text = resources.files("normspec.spec").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def validate(document: Mapping[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` when ``document`` does not follow the schema."""
    import jsonschema

    jsonschema.validate(document, schema())


def write_json(document: Mapping[str, Any], path: Path) -> None:
    """Validate, then write ``document`` (indented, keys in insertion order)."""
    validate(document)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, allow_nan=False) + "\n", encoding="utf-8")


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def summary_rows(document: Mapping[str, Any], *, sweep: bool = False) -> list[dict[str, str]]:
    """One row per timed result (sweep points left out unless ``sweep``), as strings."""
    rows = []
    for r in document["results"]:
        if r.get("status") != "ok" or (r.get("kind") == "sweep" and not sweep):
            continue
        copy = r.get("copy") or {}
        rows.append({
            "method": r["method"], "shape": "x".join(map(str, r["shape"])),
            "dtype": r["dtype"], "mode": "fwd" if r["mode"] == "forward" else "fwd+bwd",
            "impl": r["label"],
            "ms": _fmt(1e3 * r["time_s"]["median"], ".3f"),
            "iqr": _fmt(1e3 * (r["time_s"]["q3"] - r["time_s"]["q1"]), ".3f"),
            "gbs": _fmt(r["gbs"]), "copy_gbs": _fmt(copy.get("gbs")),
            "pct_copy": _fmt(r.get("pct_copy"), ".0f"), "pct_peak": _fmt(r.get("pct_peak"), ".0f"),
            "compile_s": _fmt(r.get("compile_s"), ".2f"),
            "llc": "" if r.get("dram") is None else (">LLC" if r["dram"] else "in LLC"),
        })
    return rows


COLUMNS: Sequence[tuple[str, str]] = (
    ("method", "method"), ("shape", "shape"), ("dtype", "dtype"), ("mode", "mode"),
    ("impl", "adapter/variant"), ("ms", "median ms"), ("iqr", "IQR ms"), ("gbs", "GB/s"),
    ("copy_gbs", "copy GB/s"), ("pct_copy", "% copy"), ("pct_peak", "% peak"),
    ("compile_s", "compile s"), ("llc", "size"))


def print_summary(document: Mapping[str, Any], console: Any) -> None:
    """The summary table, then the skipped and failed combinations with their reasons."""
    from rich.markup import escape
    from rich.table import Table

    machine = document["machine"]
    peak = document["peak"]
    title = (f"normspec bench on {document['device']} ({machine['cpu']}, "
             f"{machine['cpu_count']} cores; peak {_fmt(peak['gbs'], '.0f')} GB/s: "
             f"{peak['source']})")
    table = Table(title=escape(title), title_justify="left")
    for _, head in COLUMNS:
        table.add_column(head, justify="right" if head[0].isdigit() or "GB" in head or
                         head.startswith(("%", "median", "IQR", "compile")) else "left")
    for row in summary_rows(document):
        table.add_row(*(escape(row[k]) for k, _ in COLUMNS))
    console.print(table)
    seen: set[str] = set()
    for r in document["results"]:
        if r.get("status") in ("skip", "error"):
            what = " ".join(str(r[k]) for k in ("label", "adapter", "variant", "method", "dtype",
                                                 "mode") if r.get(k) is not None and
                            not (k in ("adapter", "variant") and r.get("label")))
            line = f"  {r['status']}: {what}: {r.get('reason', '')}"
            if line not in seen:
                seen.add(line)
                console.print(line, markup=False, highlight=False)


def markdown_table(document: Mapping[str, Any], *, kinds: Sequence[str] = ("rows", "maps")
                   ) -> str:
    """The summary as a Markdown table (the docs page includes it)."""
    heads = [h for _, h in COLUMNS]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for row in summary_rows(document):
        lines.append("| " + " | ".join(row[k] for k, _ in COLUMNS) + " |")
    del kinds
    return "\n".join(lines) + "\n"


def plot(document: Mapping[str, Any], folder: Path) -> list[Path]:
    """One figure per (method, dtype, mode) with a sweep: GB/s against input size, one line
    per adapter/variant, and each framework's copy roofline dashed. Returns the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple[str, str, str, str], list[Mapping[str, Any]]] = {}
    for r in document["results"]:
        if r.get("status") == "ok" and r.get("kind") in ("sweep", "rows", "maps"):
            groups.setdefault((r["method"], r["family"], r["dtype"], r["mode"]), []).append(r)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for (method, family, dtype, mode), rows in sorted(groups.items()):
        if len({tuple(r["shape"]) for r in rows}) < 3:
            continue  # no sweep here: nothing to draw against size
        fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
        labels = sorted({r["label"] for r in rows})
        copies: dict[str, list[tuple[int, float]]] = {}
        colors: dict[str, str] = {}
        for label in labels:
            mine = sorted((r for r in rows if r["label"] == label), key=lambda r: r["x_bytes"])
            fw = label.split("/")[0]
            # variants of one framework share its colour and differ by marker
            marker = "osd^v"[sum(1 for other in labels[:labels.index(label)]
                                 if other.split("/")[0] == fw) % 5]
            (line,) = ax.plot([r["x_bytes"] / 2**20 for r in mine], [r["gbs"] for r in mine],
                              marker=marker, label=label, color=colors.get(fw))
            colors.setdefault(fw, line.get_color())
            for r in mine:
                if (r.get("copy") or {}).get("gbs"):
                    copies.setdefault(fw, []).append((r["x_bytes"], r["copy"]["gbs"]))
        for fw, pts in sorted(copies.items()):
            pts = sorted(set(pts))
            # the roofline in its framework's colour: a kernel is read against its own copy
            ax.plot([p[0] / 2**20 for p in pts], [p[1] for p in pts], linestyle="--",
                    color=colors.get(fw), alpha=0.6, label=f"{fw} copy (roofline)")
        llc = document["machine"].get("llc_bytes") if document["device"] == "cpu" else (
            (document.get("gpu") or {}).get("l2_cache_bytes"))
        if llc:
            ax.axvline(llc / 2**20, color="black", linewidth=0.8, linestyle=":",
                       label="last-level cache")
        ax.set_xscale("log")
        ax.set_xlabel(f"input size (MiB of x, {dtype})")
        ax.set_ylabel("effective GB/s (bytes model: io)")
        ax.set_title(f"{method} {mode}, {family}, {document['device']}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        path = folder / f"{method}-{dtype}-{mode.replace('+', '_')}-{document['device']}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


__all__ = ["COLUMNS", "markdown_table", "plot", "print_summary", "schema", "summary_rows",
           "validate", "write_json"]
