"""``normspec report merge``: the reports of shards (and of several devices) as one report.

Shards of one run (``normspec run --shard K/N`` with the same selection otherwise) are joined
into exactly the report one unsharded run would have written: the same results in the same
order, with the timing and metadata of the parts recorded under ``meta.merged_from``. Reports
that are not shards of one run (a CI matrix over devices) are concatenated in the order given.
Every input is validated against the report schema, and reports from different vector sets or
normspec versions are refused: their results are not comparable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .results import Report, Result, adapter_from_dict, result_from_dict

# The selection fields a shard shares with its siblings (everything but the shard itself).
_SAME_RUN = ("device", "selection", "timeout_s", "vectors_sha256", "normspec_version")


class MergeError(ValueError):
    """A report that cannot be merged; the message names the file."""


def load_report(path: Path) -> dict[str, Any]:
    """Read and validate one JSON report; :class:`MergeError` naming ``path`` otherwise."""
    from .reports import validate_report

    try:
        document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MergeError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MergeError(f"{path}: not a JSON report ({exc})") from None
    try:
        validate_report(document)
    except Exception as exc:  # jsonschema.ValidationError, untyped
        message = getattr(exc, "message", str(exc))
        where = "/".join(str(p) for p in getattr(exc, "absolute_path", ()))
        raise MergeError(f"{path}: does not match the report schema at /{where}: "
                         f"{message}") from None
    return document


def _identity(path: Path, meta: Mapping[str, Any], first: tuple[Path, Mapping[str, Any]]
              ) -> None:
    base_path, base = first
    for key, what in (("normspec_version", "normspec version"),
                      ("vectors_sha256", "vector set (manifest sha256)")):
        if meta.get(key) != base.get(key):
            raise MergeError(f"{path}: {what} {meta.get(key)!r} differs from "
                             f"{base.get(key)!r} in {base_path}; reports of different "
                             f"{what.split(' (')[0]}s cannot be merged")


def _shard(meta: Mapping[str, Any]) -> tuple[int, int]:
    shard = meta.get("shard") or {}
    return int(shard.get("index", 1)), int(shard.get("count", 1))


def _run_key(meta: Mapping[str, Any]) -> str:
    return json.dumps({k: meta.get(k) for k in _SAME_RUN}, sort_keys=True)


def _case_groups(results: Sequence[Mapping[str, Any]]
                 ) -> dict[str, list[list[Mapping[str, Any]]]]:
    """Per adapter, the results in runs of one case (all checks of a case are adjacent)."""
    groups: dict[str, list[list[Mapping[str, Any]]]] = {}
    for r in results:
        cases = groups.setdefault(r["adapter"], [])
        key = (r["method"], r["dtype"], r["case"])
        if cases and (cases[-1][0]["method"], cases[-1][0]["dtype"], cases[-1][0]["case"]) == key:
            cases[-1].append(r)
        else:
            cases.append([r])
    return groups


def _interleave(shards: Sequence[Mapping[str, Any]], order: Sequence[str]
                ) -> list[Mapping[str, Any]]:
    """Undo :func:`~.runner.shard_of`: case ``j`` of shard ``k`` was case ``j * N + k``."""
    per_shard = [_case_groups(d["results"]) for d in shards]
    out: list[Mapping[str, Any]] = []
    for adapter in order:
        lists = [groups.get(adapter, []) for groups in per_shard]
        for j in range(max((len(x) for x in lists), default=0)):
            for cases in lists:
                if j < len(cases):
                    out.extend(cases[j])
    return out


def _merge_run(paths: Sequence[Path], documents: Sequence[dict[str, Any]]
               ) -> tuple[list[Mapping[str, Any]], list[dict[str, Any]], str]:
    """Results and adapter records of the reports of one run (all shards, or one report),
    and what is missing when the shards are incomplete."""
    by_index: dict[int, tuple[Path, dict[str, Any]]] = {}
    count = _shard(documents[0]["meta"])[1]
    for path, doc in zip(paths, documents, strict=True):
        index, n = _shard(doc["meta"])
        if n != count:
            raise MergeError(f"{path}: shard {index}/{n} does not belong with shards of "
                             f"{count} ({paths[0]})")
        if index in by_index:
            raise MergeError(f"{path}: shard {index}/{n} given twice (also {by_index[index][0]})")
        by_index[index] = (path, doc)
    missing = sorted(set(range(1, count + 1)) - set(by_index))
    ordered = [by_index[i][1] for i in sorted(by_index)]
    adapters: list[dict[str, Any]] = []
    names: dict[str, dict[str, Any]] = {}
    for path, doc in (by_index[i] for i in sorted(by_index)):
        for a in doc["adapters"]:
            known = names.get(a["name"])
            if known is None:
                names[a["name"]] = a
                adapters.append(a)
            elif known["versions"] != a["versions"]:
                raise MergeError(f"{path}: adapter {a['name']!r} has versions {a['versions']} "
                                 f"here and {known['versions']} in another shard")
    order = [a["name"] for a in adapters]
    if missing:
        # An incomplete set still merges, in shard order; the report says what is missing
        # and counts as failed.
        results = [r for doc in ordered for r in doc["results"]]
        return results, adapters, f"shards {missing} of {count} are missing"
    return _interleave(ordered, order), adapters, ""


def merge_reports(paths: Sequence[Path]) -> Report:
    """One report from the JSON reports at ``paths`` (see the module docstring)."""
    if not paths:
        raise MergeError("no reports given, expected one or more JSON reports")
    documents = [load_report(p) for p in paths]
    first = (paths[0], documents[0]["meta"])
    for path, doc in zip(paths, documents, strict=True):
        _identity(path, doc["meta"], first)
    runs: dict[str, list[int]] = {}
    for i, doc in enumerate(documents):
        runs.setdefault(_run_key(doc["meta"]), []).append(i)
    results: list[Result] = []
    report = Report(meta={})
    incomplete: list[str] = []
    seen_adapters: dict[tuple[str, str], dict[str, Any]] = {}
    for indices in runs.values():
        part_paths = [paths[i] for i in indices]
        part_docs = [documents[i] for i in indices]
        part_results, adapters, missing = _merge_run(part_paths, part_docs)
        if missing:
            incomplete.append(f"{part_paths[0]}: {missing}")
        for a in adapters:
            key = (a["name"], json.dumps(a["versions"], sort_keys=True))
            if key not in seen_adapters:
                seen_adapters[key] = a
        results += [result_from_dict(r) for r in part_results]
    ids = [(r.adapter, r.device, r.id) for r in results]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise MergeError(f"result {dup[2]} of adapter {dup[0]!r} on {dup[1]!r} appears in more "
                         f"than one report; merge shards of one run, or runs on different "
                         f"devices")
    report.meta = _merged_meta(paths, documents, incomplete)
    report.adapters = [adapter_from_dict(a) for a in seen_adapters.values()]
    report.results = results
    return report


def _merged_meta(paths: Sequence[Path], documents: Sequence[Mapping[str, Any]],
                 incomplete: Sequence[str]) -> dict[str, Any]:
    metas = [d["meta"] for d in documents]
    meta = dict(metas[0])
    meta["started"] = min(str(m.get("started", "")) for m in metas)
    meta["finished"] = max(str(m.get("finished", "")) for m in metas)
    # Machine time, not elapsed time: what one unsharded run would roughly have taken.
    meta["wall_time_s"] = round(sum(float(m.get("wall_time_s", 0.0)) for m in metas), 3)
    meta["interrupted"] = any(bool(m.get("interrupted")) for m in metas)
    aborted = [f"{p}: {m['aborted']}" for p, m in zip(paths, metas, strict=True)
               if m.get("aborted")]
    aborted += [f"incomplete: {text}" for text in incomplete]
    meta.pop("aborted", None)
    if aborted:
        meta["aborted"] = "; ".join(aborted)
    meta["shard"] = {"index": 1, "count": 1}
    devices = list(dict.fromkeys(str(m.get("device", "")) for m in metas))
    meta["device"] = devices[0] if len(devices) == 1 else ",".join(devices)
    meta["merged_from"] = [
        {"file": str(p), "shard": m.get("shard"), "device": m.get("device"),
         "hostname": m.get("hostname", ""), "started": m.get("started", ""),
         "wall_time_s": m.get("wall_time_s", 0.0), "argv": m.get("argv", [])}
        for p, m in zip(paths, metas, strict=True)]
    return meta


__all__ = ["MergeError", "load_report", "merge_reports"]
