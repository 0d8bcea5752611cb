"""The benchmark parts of the site, generated at build time (registered in normspec_docs):

* ``{normspec} bytes-model``: the bytes model of every registered method (spec/bytes-model.md),
  from :func:`normspec.conformance.bench.bytes_model.table`, so a new method appears with no
  edit, and the per-method overrides with their reasons;
* ``{normspec} bench FILE``: a committed ``normspec bench --json`` result: when, where, with
  what, the summary table, and the plots in the folder next to it (``FILE`` without ``.json``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def gen_bytes_model(app: Any, arg: str) -> str:
    from normspec.conformance.bench import bytes_model

    rows = []
    for r in bytes_model.table("float32"):
        f, b = r["forward"], r["forward+backward"]
        rows.append([f"`{r['method']}`", "x".join(map(str, r["shape"])),
                     f"{f['io_over_x']:g}", f"{f['extra_over_x']:.3g}",
                     f"{b['io_over_x']:g}", f"{b['extra_over_x']:.3g}"])
    out = [_table(["method", "example shape (first catalog case)", "forward io / x",
                   "forward extra / x", "fwd+bwd io / x", "fwd+bwd extra / x"], rows)]
    out.append("Overrides of the generic rule:\n")
    for method, fix in bytes_model.OVERRIDES.items():
        base = bytes_model.Arrays(1, 1, 0, 0, 0, 1)
        why = "; ".join(fix(base).notes) or method
        out.append(f"- `{method}`: {why.split(': ', 1)[-1]}")
    return "\n".join(out) + "\n"


def gen_bench(app: Any, arg: str) -> str:
    from normspec.conformance.bench import output

    rel = arg.strip()
    path = ROOT / rel
    if not path.is_file():
        return (f"No result committed yet (`{rel}`): the run is pending. The prepared script "
                f"is `benchmarks/gpu_run.sh`.\n")
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    m = doc["machine"]
    versions = "; ".join(
        f"{name}: " + ", ".join(f"{k} {v}" for k, v in a["versions"].items())
        for name, a in doc["adapters"].items())
    env = ", ".join(f"{k}={v}" for k, v in m["env"].items() if v) or "none set"
    llc = f"{m['llc_bytes'] / 2**20:g} MiB" if m.get("llc_bytes") else "unknown"
    gpu = doc.get("gpu")
    lines = [
        f"- **date**: {doc['date']} (normspec {doc['normspec']})",
        f"- **command**: `{' '.join(doc['command'])}`",
        f"- **device**: {doc['device']}" + (f", {gpu['name']}" if gpu else ""),
        f"- **CPU**: {m['cpu']}, {m['cpu_count']} cores; last-level cache {llc} "
        f"({m['llc_source']})",
        f"- **peak**: {doc['peak']['gbs'] or 'unknown'} ({doc['peak']['source']})",
        f"- **versions**: {versions}",
        f"- **environment**: {env}",
    ]
    if m.get("note"):
        lines.append(f"- **note**: {m['note']}")
    skipped = sorted({f"{r.get('label') or r.get('adapter', '')}: {r.get('reason', '')}"
                      for r in doc["results"] if r["status"] != "ok" and r.get("reason")})
    out = ["\n".join(lines) + "\n", output.markdown_table(doc)]
    if skipped:
        out.append("Not timed:\n\n" + "\n".join(f"- {s}" for s in skipped) + "\n")
    folder = path.with_suffix("")
    for png in sorted(folder.glob("*.png")) if folder.is_dir() else []:
        out.append(f"![{png.stem}](/{png.relative_to(ROOT).as_posix()})\n")
    out.append(f"The full result (with quartiles, extremes, bytes and copy timings per row): "
               f"`{rel}`, format [`spec/bench.schema.json`](schemas.md).\n")
    return "\n".join(out)
