"""Build-time generators of the normspec site: nothing here is written by hand twice.

A page asks for generated content with a marker block, which the ``source-read`` hook replaces
with Markdown before MyST parses the page::

    ```{normspec} NAME [ARGUMENT]
    ```

Every NAME is a function of :data:`GENERATORS`; an unknown NAME stops the build. On top of the
markers, two hooks apply to whole families of pages, so that a new file needs no other edit:

* ``spec/methods/<method>.md`` gets the figure of its reduced set, drawn by matplotlib from the
  reference's own layout code (``normspec.reference.<method>.layout`` and ``NCHW_EXAMPLE``);
* ``docs/errata/<framework>.md`` gets a label per erratum heading (``## T1. ...`` becomes the
  target ``erratum-T1``) so that the generated errata index can link to it.

The doctests of every module the API page documents run in the build (``builder-inited``);
a failing example is a warning, hence an error under ``-W``.
"""

from __future__ import annotations

import argparse
import doctest
import gzip
import importlib
import inspect
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any

import tomllib
from sphinx.application import Sphinx
from sphinx.util import logging

LOG = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
METHOD_PAGES = ROOT / "spec" / "methods"
REPORTS = DOCS / "data" / "runs"
GENERATED = DOCS / "_build" / "generated"  # written at build time, never committed
FIGURES = GENERATED / "figures"
AXES = ("N", "C", "H", "W")
NCHW = (4, 6, 3, 3)
ADAPTER_ORDER = ("numpy", "torch", "jax", "onnxruntime", "onnx-reference")
FRAMEWORKS = {"torch": ("torch",), "JAX": ("jax",), "ONNX": ("onnxruntime", "onnx-reference")}

MARKER = re.compile(r"^```\{normspec\}[ \t]*(?P<name>[\w-]+)[ \t]*(?P<arg>[^\n]*)\n```[ \t]*$",
                    re.M)


# --------------------------------------------------------------------------------------------
# shared readers


def _md_cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> str:
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def method_pages() -> list[str]:
    """Methods that have a spec page, in the reference's order, then any others by name."""
    from normspec.reference import METHODS

    found = sorted(p.stem for p in METHOD_PAGES.glob("*.md"))
    return [m for m in METHODS if m in found] + [m for m in found if m not in METHODS]


def page_title(method: str) -> str:
    for line in (METHOD_PAGES / f"{method}.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].split(":")[0].strip()
    return method


def reference_module(method: str) -> Any | None:
    from normspec.reference import METHODS, get

    return get(method) if method in METHODS else None


@cache
def load_reports() -> dict[str, dict[str, Any]]:
    """The committed run reports, by adapter name (``docs/data/runs/<adapter>.json[.gz]``)."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(REPORTS.glob("*.json*")):
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        report = json.loads(raw)
        for adapter in report["adapters"]:
            out[adapter["name"]] = report
    order = {name: i for i, name in enumerate(ADAPTER_ORDER)}
    return dict(sorted(out.items(), key=lambda kv: (order.get(kv[0], 99), kv[0])))


def _results(adapter: str) -> list[dict[str, Any]]:
    return [r for r in load_reports()[adapter]["results"] if r["adapter"] == adapter]


def _worst(values: Iterable[float | None]) -> str:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if any(v is not None and not math.isfinite(v) for v in values):
        return "inf"
    return f"{max(finite):.2f}" if finite else "–"


# --------------------------------------------------------------------------------------------
# the figure of the reduced set, from the reference's layout code


def _figure_data(method: str) -> tuple[Any, Any, str] | str:
    """``(highlight, context, caption)`` arrays over NCHW, or the reason there is no figure."""
    import numpy as np

    mod = reference_module(method)
    if mod is None:
        return (f"`{method}` has no module in `normspec.reference` yet, so there is no layout "
                "to draw.")
    if hasattr(mod, "NO_NCHW_EXAMPLE"):
        return f"No figure of an (N, C, H, W) activation: {mod.NO_NCHW_EXAMPLE}"
    if not hasattr(mod, "layout") or not hasattr(mod, "NCHW_EXAMPLE"):
        return (f"`normspec.reference.{method}` defines no `layout()` and `NCHW_EXAMPLE`: the "
                "method has no reduction over the axes of an (N, C, H, W) activation to draw.")
    from normspec.reference._layout import reduction_sets

    hyper = dict(mod.NCHW_EXAMPLE)
    layout = mod.layout(NCHW, **hyper)
    labels = reduction_sets(layout)
    chosen = labels[0, 0, 0, 0]
    members = labels == chosen
    args = ", ".join(f"{k}={v}" for k, v in hyper.items())
    shape = "×".join(str(s) for s in NCHW)
    if hasattr(mod, "window"):
        c = min(2, NCHW[1] - 1)
        chans = mod.window(c, channels=NCHW[1], size=hyper["size"])
        window = np.zeros(NCHW, dtype=bool)
        window[0, list(chans), 0, 0] = True
        caption = (
            f"`{method}` on an (N, C, H, W) = {shape} input ({args}). There is no reduced set "
            f"of statistics: each output is divided by a power of the energy of a **window of "
            f"channels** around its own. Dark: the window of output (0, {c}, 0, 0), channels "
            f"{chans[0]} to {chans[-1]}, read from `window()`; light: the channel fiber "
            f"`layout()` gives that window room to move in ({layout.n} channels).")
        return window, members & ~window, caption
    varying = [AXES[i] for i in range(4) if len(set(np.nonzero(members)[i])) > 1]
    partial = [f"{AXES[i]} {min(ix)}–{max(ix)} of {NCHW[i]}"
               for i in range(4)
               for ix in [sorted(set(np.nonzero(members)[i].tolist()))]
               if 1 < len(ix) < NCHW[i]]
    sets = len(np.unique(labels))
    kind = ("one vector along the reduced axis" if len(varying) == 1
            else "one reduction set")
    caption = (
        f"`{method}` on an (N, C, H, W) = {shape} input ({args}). Shaded: {kind}, the "
        f"{layout.n} values over {', '.join(varying)}"
        + (f" ({'; '.join(partial)})" if partial else "")
        + f" that share one set of statistics; the input holds {sets} such sets "
          f"(statistics shape {tuple(layout.stat_shape)}). Drawn from `layout()` in "
          f"`normspec.reference.{method}`.")
    return members, np.zeros(NCHW, dtype=bool), caption


def draw_figure(method: str, out: Path) -> str | None:
    """Draw ``out`` (PNG) and return the caption; None with no figure (see the reason)."""
    data = _figure_data(method)
    if isinstance(data, str):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    highlight, context, _ = data
    n, c, h, w = NCHW
    hw = h * w

    def cube(a: Any) -> Any:
        # voxel grid indexed (C, N, HW): C to the right, N into the depth, H·W upwards with
        # the first spatial position on top (the classic drawing of the activation cube)
        v = a.reshape(n, c, hw).transpose(1, 0, 2)
        return v[:, :, ::-1]

    filled = np.ones((c, n, hw), dtype=bool)
    colors = np.empty(filled.shape, dtype=object)
    colors[...] = "#f4f6fa"
    colors[cube(context)] = "#b9d4f0"
    colors[cube(highlight)] = "#1f6fc5"
    fig = plt.figure(figsize=(4.6, 4.0), dpi=110)
    ax = fig.add_subplot(projection="3d")
    ax.voxels(filled, facecolors=colors, edgecolor="#7a8696", linewidth=0.4)
    ax.set_box_aspect((c, n * 0.9, hw * 0.75))
    ax.view_init(elev=18, azim=-58)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_zticks([])
    ax.set_xlabel("C", labelpad=-12, fontsize=12)
    ax.set_ylabel("N", labelpad=-12, fontsize=12)
    ax.set_zlabel("H, W", labelpad=-12, fontsize=12)
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        axis.pane.set_visible(False)
        axis.line.set_color("#444444")
    ax.set_title(method, fontsize=12, family="monospace")
    fig.subplots_adjust(left=0, right=1, bottom=0.02, top=0.93)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, transparent=False, facecolor="white")
    plt.close(fig)
    return data[2]


MATHJAX_PARTS = ("tex-chtml.js", "output/chtml/fonts/woff-v2", "input/tex/extensions", "ui",
                 "a11y")
STATIC = GENERATED / "static"


def local_mathjax() -> Path | None:
    """The es5 folder of the installed MathJax 3 (package ``django-static-mathjax``), if any."""
    import importlib.util

    spec = importlib.util.find_spec("mathjax")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        es5 = Path(folder) / "static" / "mathjax" / "es5"
        if (es5 / "tex-chtml.js").is_file():
            return es5
    return None


def copy_mathjax(app: Sphinx, config: Any) -> None:
    """Copy the parts of MathJax the site uses (about 3 MB) into its static files."""
    import shutil

    STATIC.mkdir(parents=True, exist_ok=True)
    es5 = local_mathjax()
    if es5 is None:
        LOG.info("normspec: MathJax 3 is not installed locally; the site uses the CDN")
        return
    target = STATIC / "mathjax"
    for part in MATHJAX_PARTS:
        src, dst = es5 / part, target / part
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def make_figures(app: Sphinx) -> None:
    for method in method_pages():
        draw_figure(method, FIGURES / f"{method}.png")


def _figure_block(method: str) -> str:
    data = _figure_data(method)
    if isinstance(data, str):
        return f"\n:::{{note}}\nNo figure of the reduced set: {data}\n:::\n\n"
    caption = data[2]
    label = f"fig-{method.replace('_', '-')}-reduced"
    return (f"\n:::{{figure}} /docs/_build/generated/figures/{method}.png\n:name: {label}\n"
            f":alt: the (N, C, H, W) activation cube of {method} with its reduced set shaded\n"
            f":width: 380px\n\n{caption}\n:::\n\n")


def inject_figure(method: str, text: str) -> str:
    """Put the figure at the end of the definition: before ``## Parameters`` (or the second
    level-2 section, or at the end)."""
    block = _figure_block(method)
    heads = [m.start() for m in re.finditer(r"^## ", text, re.M)]
    params = re.search(r"^## Parameters", text, re.M)
    at = params.start() if params else (heads[1] if len(heads) > 1 else len(text))
    return text[:at] + block + text[at:]


# --------------------------------------------------------------------------------------------
# overview: the method table


def _family(mod: Any) -> str:
    import numpy as np
    from normspec.reference._layout import reduction_sets

    # a method whose inputs are not an (N, C, H, W) activation (qk_norm's queries and keys)
    if not hasattr(mod, "layout") or not hasattr(mod, "NCHW_EXAMPLE"):
        return "–"
    if hasattr(mod, "window"):
        return "local (channel window)"
    labels = reduction_sets(mod.layout(NCHW, **mod.NCHW_EXAMPLE))
    members = np.nonzero(labels == labels[0, 0, 0, 0])
    varying = [i for i in range(4) if len(set(members[i].tolist())) > 1]
    if 0 in varying:
        return "batch statistics"
    if len(varying) == 1:
        return "vector (one axis)"
    return "per sample"


def _state(mod: Any) -> list[str]:
    """Statistics that ``forward`` also takes as inputs: the running state it updates."""
    params = inspect.signature(mod.forward).parameters
    return [s for s in mod.STATS if s in params]


def _kind(adapters: Iterable[str], method: str) -> str:
    reports = load_reports()
    kinds: dict[str, set[str]] = {}
    for adapter in adapters:
        if adapter not in reports:
            continue
        ran = {r["kind"] for r in _results(adapter)
               if r["method"] == method and r["check"] == "forward" and r["status"] != "skip"}
        kinds[adapter] = ran
    if not kinds:
        return "no report"
    ran_any = set().union(*kinds.values())
    if not ran_any:
        return "—"
    label = "/".join(sorted(ran_any))
    if len(kinds) > 1 and not all(kinds.values()):
        label += " (" + ", ".join(a for a, k in kinds.items() if k) + ")"
    return label


def gen_methods_table(app: Sphinx, arg: str) -> str:
    rows = []
    for method in method_pages():
        mod = reference_module(method)
        link = f"[`{method}`](/spec/methods/{method}.md)"
        if mod is None:
            rows.append(["–", link, page_title(method), "–", "–", "–", "–", "–"])
            continue
        state = _state(mod)
        stats = [s for s in mod.STATS if s not in state]
        rows.append([_family(mod), link, page_title(method),
                     ", ".join(f"`{s}`" for s in stats),
                     ", ".join(f"`{s}`" for s in state) or "none",
                     *(_kind(a, method) for a in FRAMEWORKS.values())])
    note = ("Generated from `normspec.reference` (the family from each method's `layout()` on "
            "an (N, C, H, W) example, the statistics from `STATS`, the state from the statistics "
            "`forward` also takes as inputs) and from the committed run reports (`native` or "
            "`composed`: the `kind` the adapter's `support()` declared; — : not supported).\n\n")
    return note + _table(["family", "method", "name", "statistics", "state",
                          "torch", "JAX", "ONNX"], rows)


def gen_methods_toctree(app: Sphinx, arg: str) -> str:
    entries = "\n".join(f"/spec/methods/{m}" for m in method_pages())
    return f"```{{toctree}}\n:maxdepth: 1\n\n{entries}\n```\n"


# --------------------------------------------------------------------------------------------
# conformance matrix, runs, errata index


def gen_runs(app: Sphinx, arg: str) -> str:
    rows = []
    for name, report in load_reports().items():
        meta = report["meta"]
        adapter = next(a for a in report["adapters"] if a["name"] == name)
        versions = ", ".join(f"{k} {v}" for k, v in adapter["versions"].items())
        s = report["summary"]
        rows.append([f"`{name}`", versions, meta["started"].replace("+00:00", " UTC"),
                     f"{meta['wall_time_s']:.0f} s",
                     f"{meta.get('device', '')}, Python {meta['python']}, "
                     f"{meta.get('machine', '')}; normspec {meta['normspec_version']}, vectors "
                     f"`{meta.get('vectors_sha256', '')[:12]}`",
                     "yes" if s["ok"] else "**no**"])
    return _table(["adapter", "versions", "started", "wall time", "where", "ok"], rows)


def _counts(results: list[dict[str, Any]]) -> Counter[str]:
    return Counter(r["status"] for r in results)


def _cell(results: list[dict[str, Any]], *, short: bool = False) -> str:
    if not results:
        return "–"
    c = _counts(results)
    ran = [r for r in results if r["status"] != "skip"]
    if not ran:
        return "skip" if short else f"skip {c['skip']}"
    bad = c["fail"] + c["error"] + c["xpass"]
    mark = "✅" if not bad else "❌"
    parts = [f"{c['pass']} pass"]
    for status in ("xfail", "fail", "error", "xpass"):
        if c[status]:
            parts.append(f"{c[status]} {status}")
    if c["skip"] and not short:
        parts.append(f"{c['skip']} skip")
    worst = _worst([r["headroom"] for r in results if r["status"] == "pass"])
    return f"{mark} " + ", ".join(parts) + ("" if short else f"; worst {worst}")


def gen_matrix(app: Sphinx, arg: str) -> str:
    reports = load_reports()
    if not reports:
        return "No run report is committed under `docs/data/runs/`.\n"
    rows = []
    for method in method_pages():
        rows.append([f"[`{method}`](/spec/methods/{method}.md)"]
                    + [_cell([r for r in _results(a) if r["method"] == method], short=True)
                       for a in reports])
    return _table(["method", *(f"`{a}`" for a in reports)], rows)


def gen_matrix_detail(app: Sphinx, arg: str) -> str:
    from normspec.conformance.vectors.storage import DTYPES

    out = []
    for adapter in load_reports():
        results = _results(adapter)
        out.append(f"### `{adapter}`\n")
        rows = []
        for method in method_pages():
            mine = [r for r in results if r["method"] == method]
            rows.append([f"`{method}`"] + [_cell([r for r in mine if r["dtype"] == d])
                                           for d in DTYPES])
        out.append(_table(["method", *DTYPES], rows))
        kinds = Counter(r["kind"] for r in results if r["status"] != "skip")
        out.append("Checks run: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
                   + ". Worst headroom: the largest error/budget among the passing checks.\n")
    return "\n".join(out)


ERRATUM = re.compile(r"docs/errata/(?P<page>[\w-]+)\.md \((?P<code>[A-Z]\d+)\)")


def gen_errata_index(app: Sphinx, arg: str) -> str:
    out = []
    for adapter in load_reports():
        xfails = [r for r in _results(adapter) if r["status"] in ("xfail", "xpass")]
        if not xfails:
            continue
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in xfails:
            m = ERRATUM.search(r["ledger"])
            groups[m.group("code") if m else r["ledger"].split(";")[0][:160]].append(r)
        out.append(f"### `{adapter}`: {len(xfails)} expected failures\n")
        rows = []
        dtype_order = ("float64", "float32", "float16", "bfloat16")
        for key, rs in sorted(groups.items(), key=lambda kv: _erratum_sort(kv[0])):
            m = ERRATUM.search(rs[0]["ledger"])
            name = f"{{ref}}`{key} <erratum-{key}>`" if m else "–"
            reason = rs[0]["ledger"].split(" (evidence:")[0] if m else key
            dtypes = [d for d in dtype_order if any(r["dtype"] == d for r in rs)]
            scope = (", ".join(sorted({f"`{r['method']}`" for r in rs})) + " · "
                     + ", ".join(dtypes) + " · "
                     + ", ".join(sorted({r["check"] for r in rs})))
            measured = (f"{_worst([r['headroom'] for r in rs])} / "
                        f"{_worst([r['error'] for r in rs])}")
            rows.append([name, len(rs), scope, measured, reason[:300]])
        out.append(_table(["erratum", "checks", "method · dtypes · checks",
                           "worst headroom / error", "ledger reason"], rows))
    return "\n".join(out) or "No committed report has an expected failure.\n"


def _erratum_sort(key: str) -> tuple[str, int, str]:
    m = re.fullmatch(r"([A-Z])(\d+)", key)
    return (m.group(1), int(m.group(2)), "") if m else ("~", 0, key)


def label_errata(text: str) -> str:
    return re.sub(r"^## (?P<code>[A-Z]\d+)\. ", lambda m: f"(erratum-{m.group('code')})=\n"
                  + m.group(0), text, flags=re.M)


# --------------------------------------------------------------------------------------------
# framework mapping, side by side


def _section(text: str, title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}[ \t]*\n(?P<body>.*?)(?=^## |\Z)", text, re.S | re.M)
    return m.group("body").strip() if m else ""


def _split_row(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
    return [c.strip() for c in cells]


def _first_table(body: str) -> tuple[list[str], list[list[str]]]:
    lines = [ln for ln in body.splitlines()]
    start = next((i for i, ln in enumerate(lines) if ln.startswith("|")), None)
    if start is None:
        return [], []
    block = []
    for ln in lines[start:]:
        if not ln.startswith("|"):
            break
        block.append(ln)
    return _split_row(block[0]), [_split_row(ln) for ln in block[2:]]


def _framework_key(header: str) -> str:
    h = header.lower()
    for key, name in (("pytorch", "PyTorch"), ("flax", "JAX / Flax"), ("jax", "JAX / Flax"),
                      ("keras", "Keras"), ("tensorflow", "TensorFlow"), ("onnx", "ONNX")):
        if key in h:
            return name
    return header


def gen_framework_mapping(app: Sphinx, arg: str) -> str:
    per_framework: dict[str, list[list[str]]] = defaultdict(list)
    sections = []
    for method in method_pages():
        text = (METHOD_PAGES / f"{method}.md").read_text(encoding="utf-8")
        body = _section(text, "Framework mapping")
        if not body:
            sections.append(f"## `{method}`\n\nThe spec page has no framework-mapping section.\n")
            continue
        header, rows = _first_table(body)
        for col, name in enumerate(header[1:], start=1):
            key = _framework_key(name)
            for row in rows:
                if col < len(row) and row[col] not in ("", "—", "-"):
                    per_framework[key].append([f"[`{method}`](/spec/methods/{method}.md)",
                                               row[0], row[col]])
        body = re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", body, flags=re.M)
        sections.append(f"## {page_title(method)}: `{method}`\n\nFrom "
                        f"[the `{method}` page](/spec/methods/{method}.md#framework-mapping).\n\n"
                        f"{body}\n")
    order = ["PyTorch", "JAX / Flax", "Keras", "TensorFlow", "ONNX"]
    tabs = ["::::{tab-set}\n"]
    for key in sorted(per_framework, key=lambda k: (order.index(k) if k in order else 99, k)):
        tabs.append(f":::{{tab-item}} {key}\n:sync: {key.lower().replace(' ', '')}\n\n"
                    + _table(["method", "aspect", key], per_framework[key]) + "\n:::\n")
    tabs.append("::::\n")
    return ("## Every method, one framework at a time\n\n"
            "Each tab lists one framework's column of every method's mapping table.\n\n"
            + "\n".join(tabs) + "\n" + "\n".join(sections))


# --------------------------------------------------------------------------------------------
# schemas, tolerances, CLI, pytest plugin, API


def _type_of(node: dict[str, Any], prefix: str) -> str:
    if "$ref" in node:
        ref = node["$ref"].split("/")[-1]
        return f"{{ref}}`{ref} <{prefix}-{ref.replace('_', '-')}>`"
    if "enum" in node:
        return "one of " + ", ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    t = node.get("type", "any")
    t = " or ".join(t) if isinstance(t, list) else t
    if t == "array" and isinstance(node.get("items"), dict):
        return f"array of {_type_of(node['items'], prefix)}"
    if "pattern" in node:
        t += f" matching `{node['pattern']}`"
    return t


def _schema_rows(node: dict[str, Any], path: str, rows: list[list[str]], prefix: str) -> None:
    required = set(node.get("required", []))
    for name, child in node.get("properties", {}).items():
        full = f"{path}.{name}" if path else name
        rows.append([f"`{full}`", _type_of(child, prefix), "yes" if name in required else "",
                     child.get("description", "")])
        if child.get("type") == "object" and "properties" in child:
            _schema_rows(child, full, rows, prefix)
        items = child.get("items")
        if isinstance(items, dict) and "properties" in items:
            _schema_rows(items, full + "[]", rows, prefix)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        rows.append([f"`{path}.*`" if path else "`*`", _type_of(extra, prefix), "",
                     "any other key"])


def gen_schema(app: Sphinx, arg: str) -> str:
    path = ROOT / arg.strip()
    schema = json.loads(path.read_text(encoding="utf-8"))
    out = [f"**{schema.get('title', path.name)}** (`{arg.strip()}`, "
           f"`{schema.get('$schema', '')}`)\n", schema.get("description", "") + "\n"]
    prefix = _slug(path.name.removesuffix(".json"))
    rows: list[list[str]] = []
    _schema_rows(schema, "", rows, prefix)
    out.append(_table(["field", "type", "required", "description"], rows))
    for name, node in schema.get("$defs", {}).items():
        out.append(f"({prefix}-{name.replace('_', '-')})=\n#### `$defs/{name}`\n")
        if node.get("description"):
            out.append(node["description"] + "\n")
        if "properties" in node:
            sub: list[list[str]] = []
            _schema_rows(node, "", sub, prefix)
            out.append(_table(["field", "type", "required", "description"], sub))
        else:
            out.append(f"Type: {_type_of(node, prefix)}.\n")
    out.append(f":::{{dropdown}} The schema file, verbatim\n```{{literalinclude}} "
               f"/{arg.strip()}\n:language: json\n```\n:::\n")
    return "\n".join(out)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def gen_tolerance_table(app: Sphinx, arg: str) -> str:
    path = ROOT / "conformance" / "tolerances.toml"
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    rows = [[", ".join(f"`{m}`" for m in b["methods"]), ", ".join(b["dtypes"]),
             f"`{b['class']}`", b["c_out"], b["c_acc"], b["reason"]]
            for b in data["budget"]]
    out = [_table(["methods", "dtypes", "class", "c_out", "c_acc", "reason"], rows)]
    manifest = json.loads((ROOT / "spec" / "vectors" / "manifest.json").read_text())
    classes = manifest.get("tolerance_classes")
    if isinstance(classes, dict):
        out.append("\nThe tolerance class of each quantity, from the vectors' manifest "
                   "(`tolerance_classes`):\n")
        out.append(_table(["quantity", "class"],
                          [[f"`{k}`", f"`{v}`"] for k, v in classes.items()]))
    return "\n".join(out)


def _action_rows(parser: argparse.ArgumentParser) -> list[list[str]]:
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        names = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{action.dest}`"
        value = ""
        if action.choices and not isinstance(action.choices, dict):
            value = " \\| ".join(f"`{c}`" for c in action.choices)
        elif action.nargs != 0:
            value = f"`{action.metavar or action.dest.upper()}`"
            if action.nargs in ("+", "*"):
                value += " ..."
        default = action.default
        shown = "" if default in (None, [], argparse.SUPPRESS, False) else f"`{default}`"
        text = (action.help or "").replace("%(prog)s", parser.prog)
        if isinstance(action, argparse._AppendAction) and "repeatable" not in text:
            text += " (repeatable)"
        rows.append([names, value, shown, text])
    return rows


def _walk_parser(parser: argparse.ArgumentParser, depth: int, out: list[str]) -> None:
    out.append(f"{'#' * depth} `{parser.prog}`\n")
    if parser.description:
        out.append(parser.description + "\n")
    out.append("```text\n" + parser.format_usage().strip() + "\n```\n")
    rows = _action_rows(parser)
    if rows:
        out.append(_table(["option", "value", "default", "meaning"], rows))
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _walk_parser(sub, depth + 1, out)


def gen_cli(app: Sphinx, arg: str) -> str:
    from normspec.conformance.cli import build_parser

    out: list[str] = []
    _walk_parser(build_parser(), 2, out)
    return "\n".join(out)


def gen_pytest_options(app: Sphinx, arg: str) -> str:
    from _pytest.config.argparsing import Parser
    from normspec.conformance import plugin

    parser = Parser()
    plugin.pytest_addoption(parser)
    group = parser.getgroup("normspec")
    rows = []
    for option in group.options:
        attrs = option.attrs()
        names = ", ".join(f"`{n}`" for n in option.names())
        choices = attrs.get("choices")
        value = (" \\| ".join(f"`{c}`" for c in choices) if choices
                 else f"`{attrs.get('metavar') or option.dest.upper()}`")
        default = attrs.get("default")
        shown = "" if default in (None, [], False) else f"`{default}`"
        text = attrs.get("help") or ""
        if attrs.get("action") == "append" and "repeatable" not in text:
            text += " (repeatable)"
        rows.append([names, value, shown, text])
    ini = [[f"`{name}`", help_] for name, (help_, *_rest) in parser._inidict.items()]
    title = getattr(group, "description", "") or getattr(group._arggroup, "title", "")
    out = [f"Option group `{group.name}`: *{title}*.\n",
           _table(["option", "value", "default", "meaning"], rows)]
    if ini:
        out.append(_table(["ini option", "meaning"], ini))
    return "\n".join(out)


def api_modules() -> list[str]:
    from normspec.reference import METHODS

    return ["normspec.reference", *(f"normspec.reference.{m}" for m in METHODS),
            "normspec.reference._layout", "normspec.adapters.protocol"]


def gen_api(app: Sphinx, arg: str) -> str:
    out = []
    for name in api_modules():
        mod = importlib.import_module(name)
        members = ""
        if name == "normspec.reference._layout":
            members = "Layout, reduction_sets"
        elif name == "normspec.adapters.protocol":
            members = "Adapter, Support"
        out.append(f"## `{name}`\n\n```{{automodule}} {name}\n:members: {members}\n```\n")
        del mod
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# hooks


from normspec_bench_docs import gen_bench, gen_bytes_model  # noqa: E402  (docs/_ext)

GENERATORS: dict[str, Callable[[Sphinx, str], str]] = {
    "bytes-model": gen_bytes_model,
    "bench": gen_bench,
    "methods-table": gen_methods_table,
    "methods-toctree": gen_methods_toctree,
    "conformance-matrix": gen_matrix,
    "conformance-detail": gen_matrix_detail,
    "conformance-runs": gen_runs,
    "errata-index": gen_errata_index,
    "framework-mapping": gen_framework_mapping,
    "schema": gen_schema,
    "tolerance-table": gen_tolerance_table,
    "cli": gen_cli,
    "pytest-options": gen_pytest_options,
    "api": gen_api,
}


def on_source_read(app: Sphinx, docname: str, source: list[str]) -> None:
    text = source[0]
    if docname.startswith("spec/methods/"):
        text = inject_figure(docname.rsplit("/", 1)[1], text)
    if docname.startswith("docs/errata/"):
        text = label_errata(text)

    def replace(m: re.Match[str]) -> str:
        name = m.group("name")
        if name not in GENERATORS:
            raise ValueError(f"{docname}: unknown normspec generator {name!r}, expected one of "
                             f"{sorted(GENERATORS)}")
        return GENERATORS[name](app, m.group("arg")).rstrip() + "\n"

    source[0] = MARKER.sub(replace, text)


def run_doctests(app: Sphinx) -> None:
    """Run the doctests of every module the API page documents; failures are warnings."""
    # the same flags and output checker as the project's pytest configuration (NUMBER included)
    from _pytest.doctest import _get_checker, _get_number_flag

    _get_number_flag()  # registers NUMBER with doctest
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    names = config["tool"]["pytest"]["ini_options"].get("doctest_optionflags", [])
    flags = 0
    for flag in names:
        flags |= doctest.OPTIONFLAGS_BY_NAME[flag]
    finder = doctest.DocTestFinder()
    examples = failed = 0
    for name in api_modules():
        mod = importlib.import_module(name)
        runner = doctest.DocTestRunner(checker=_get_checker(), optionflags=flags, verbose=False)
        for test in finder.find(mod, name):
            def report(text: str, where: str = test.name) -> None:
                LOG.warning("doctest failure in %s:\n%s", where, text, type="normspec",
                            subtype="doctest")

            result = runner.run(test, out=report)
            examples += result.attempted
            failed += result.failed
    LOG.info("normspec: ran %d doctest examples from %d modules, %d failed", examples,
             len(api_modules()), failed)
    app.env.normspec_doctests = (examples, failed)  # type: ignore[attr-defined]


def setup(app: Sphinx) -> dict[str, Any]:
    from docutils.parsers.rst import Directive

    class NormspecDirective(Directive):
        has_content = True
        optional_arguments = 2

        def run(self) -> list[Any]:
            raise self.error("a normspec marker was not replaced by the source-read hook")

    app.add_directive("normspec", NormspecDirective)
    app.connect("config-inited", copy_mathjax)
    app.connect("builder-inited", make_figures)
    app.connect("builder-inited", run_doctests)
    app.connect("source-read", on_source_read)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
