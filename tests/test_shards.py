"""Sharded runs and ``normspec report merge``: N shards merged equal the unsharded run."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from fakes.compare import strict_compare
from fakes.vectors import build_vectors
from normspec.conformance.cli import main
from normspec.conformance.merge import MergeError, merge_reports
from normspec.conformance.reports import validate_report, write_json
from normspec.conformance.runner import RunConfig, Runner, plan, shard_of
from normspec.conformance.vectors import load_manifest

DOCS = Path(__file__).resolve().parents[1] / "docs"
ADAPTERS = ("fakes.adapters:REFERENCE", "fakes.adapters:OFF")
# Timing and provenance differ between runs by nature; everything else must be identical.
VOLATILE = {"duration_s", "compile_s", "run_s"}


@pytest.fixture(scope="module")
def vectors(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_vectors(tmp_path_factory.mktemp("vectors"))


def _config(vectors: Path, shard: tuple[int, int] = (1, 1)) -> RunConfig:
    return RunConfig(adapters=ADAPTERS, methods=("layer_norm",), dtypes=("float32", "float64"),
                     vectors=str(vectors), shard=shard)


def _comparable(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in doc["results"]]


def test_shards_are_disjoint_balanced_and_cover_the_plan(vectors: Path) -> None:
    full = plan(load_manifest(str(vectors)), _config(vectors))
    parts = [shard_of(full, k, 3) for k in (1, 2, 3)]
    keys = [[(p.method, p.dtype, p.case) for p in part] for part in parts]
    flat = [k for part in keys for k in part]
    assert sorted(flat) == sorted((p.method, p.dtype, p.case) for p in full)
    assert len(set(flat)) == len(flat)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    # deterministic: the same selection gives the same parts
    assert keys == [[(p.method, p.dtype, p.case) for p in shard_of(full, k, 3)] for k in (1, 2, 3)]


def test_three_shards_merged_equal_the_unsharded_run(vectors: Path, tmp_path: Path) -> None:
    whole = Runner(_config(vectors), compare=strict_compare).run()
    write_json(whole, tmp_path / "whole.json")
    paths = []
    for k in (3, 1, 2):  # any input order
        part = Runner(_config(vectors, (k, 3)), compare=strict_compare).run()
        assert 0 < len(part.results) < len(whole.results)
        paths.append(tmp_path / f"shard{k}.json")
        write_json(part, paths[-1])
    merged = merge_reports(paths)
    write_json(merged, tmp_path / "merged.json")
    a = json.loads((tmp_path / "whole.json").read_text())
    b = json.loads((tmp_path / "merged.json").read_text())
    validate_report(b)
    assert _comparable(b) == _comparable(a)
    assert b["summary"] == a["summary"]
    assert [x["name"] for x in b["adapters"]] == [x["name"] for x in a["adapters"]]
    assert len(b["meta"]["merged_from"]) == 3
    assert b["meta"]["shard"] == {"index": 1, "count": 1}


def _write_part(vectors: Path, tmp_path: Path, k: int, **meta: Any) -> Path:
    part = Runner(_config(vectors, (k, 2)), compare=strict_compare).run()
    part.meta.update(meta)
    path = tmp_path / f"p{k}.json"
    write_json(part, path)
    return path


@pytest.mark.parametrize(("change", "text"), [
    ({"vectors_sha256": "0" * 64}, "vector set"),
    ({"normspec_version": "0.0.1"}, "normspec version"),
], ids=["vectors", "version"])
def test_merge_refuses_reports_of_other_vectors_or_versions(
        vectors: Path, tmp_path: Path, change: dict[str, str], text: str) -> None:
    a = _write_part(vectors, tmp_path, 1)
    b = _write_part(vectors, tmp_path, 2, **change)
    with pytest.raises(MergeError, match=re.escape(str(b)) + f".*{text}"):
        merge_reports([a, b])


def test_merge_validates_each_input_against_the_schema(vectors: Path, tmp_path: Path) -> None:
    a = _write_part(vectors, tmp_path, 1)
    bad = tmp_path / "bad.json"
    doc = json.loads(a.read_text())
    doc["results"][0]["status"] = "maybe"
    bad.write_text(json.dumps(doc))
    with pytest.raises(MergeError, match=f"{re.escape(str(bad))}: does not match the report"):
        merge_reports([a, bad])


def test_merge_of_an_incomplete_shard_set_fails_and_says_so(vectors: Path, tmp_path: Path
                                                             ) -> None:
    merged = merge_reports([_write_part(vectors, tmp_path, 1)])
    assert merged.failed
    assert "shards [2] of 2 are missing" in merged.meta["aborted"]


def test_merge_refuses_a_shard_given_twice(vectors: Path, tmp_path: Path) -> None:
    a = _write_part(vectors, tmp_path, 1)
    with pytest.raises(MergeError, match="given twice"):
        merge_reports([a, a])


def test_ci_matrix_example_runs_locally_and_merges(vectors: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # The documented workflow: its run and merge commands, executed here shard by shard.
    text = (DOCS / "ci-matrix.md").read_text()
    runs = re.findall(r"run: (normspec run .*)", text)
    merges = re.findall(r"run: (normspec report merge .*)", text)
    assert len(runs) == 1
    assert len(merges) == 1
    shards = re.search(r"shard: \[([0-9, ]+)\]", text)
    assert shards is not None
    indices = [int(s) for s in shards.group(1).split(",")]
    count = len(indices)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reports").mkdir()
    for k in indices:
        cmd = (runs[0].replace("${{ matrix.shard }}", str(k)).replace("${{ matrix.device }}",
               "cpu").replace("${{ matrix.shards }}", str(count)))
        argv = shlex.split(cmd)[1:]
        argv = [a for a in argv if a not in ("--adapter", "torch", "jax")]
        rc = main([*argv, "--adapter", "fakes.adapters:REFERENCE", "--vectors", str(vectors),
                   "--method", "layer_norm", "--no-progress"])
        assert rc == 0
    files = sorted(str(p) for p in (tmp_path / "reports").glob("*.json"))
    assert len(files) == count
    merge = shlex.split(merges[0])[1:]
    merge = [files[0] if a.endswith("*.json") else a for a in merge]
    merge[merge.index(files[0]):merge.index(files[0]) + 1] = files
    assert main(merge) == 0
    merged = json.loads((tmp_path / "merged.json").read_text())
    validate_report(merged)
    assert len(merged["meta"]["merged_from"]) == count


def test_durations_print_the_slowest_cases(vectors: Path, capsys: pytest.CaptureFixture[str]
                                           ) -> None:
    rc = main(["run", "--adapter", "fakes.adapters:TIMED", "--vectors", str(vectors),
               "--method", "layer_norm", "--dtype", "float32", "--no-progress",
               "--durations", "2"])
    assert rc == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "fake_timed layer_norm[" in line]
    assert len(lines) == 2
    assert "(compile 1.00s)" in lines[0]  # forward, vjp, jvp, second_order: 0.25 s each


def test_reports_record_the_adapters_compile_and_run_split(vectors: Path, tmp_path: Path
                                                           ) -> None:
    config = RunConfig(adapters=("fakes.adapters:TIMED",), methods=("layer_norm",),
                       dtypes=("float32",), vectors=str(vectors))
    report = Runner(config, compare=strict_compare).run()
    write_json(report, tmp_path / "r.json")
    doc = json.loads((tmp_path / "r.json").read_text())
    validate_report(doc)
    assert {(r["compile_s"], r["run_s"]) for r in doc["results"]} == {(0.25, 0.5)}
    untimed = Runner(RunConfig(adapters=("fakes.adapters:REFERENCE",), methods=("layer_norm",),
                               dtypes=("float32",), vectors=str(vectors)),
                     compare=strict_compare).run()
    assert {(r.compile_s, r.run_s) for r in untimed.results} == {(None, None)}


def test_adapters_run_concurrently_give_the_same_report(vectors: Path) -> None:
    def run(jobs: int) -> list[dict[str, Any]]:
        config = RunConfig(adapters=(*ADAPTERS, "fakes.adapters:NO_HALF"),
                           methods=("layer_norm",), dtypes=("float32", "float16"),
                           vectors=str(vectors), jobs=jobs)
        report = Runner(config, compare=strict_compare).run()
        assert report.meta["jobs"] == jobs
        return [{k: v for k, v in r.to_dict({}).items() if k not in VOLATILE}
                for r in report.results]

    serial, parallel = run(1), run(3)
    assert len(serial) > 0
    assert parallel == serial


@pytest.mark.parametrize("jobs", [1, 2])
def test_workers_share_an_adapters_cases_and_give_the_same_report(
        vectors: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int) -> None:
    def run(workers: int) -> list[dict[str, Any]]:
        pids = tmp_path / f"pids-{workers}"
        pids.mkdir()
        monkeypatch.setenv("NORMSPEC_FAKE_PID_DIR", str(pids))
        config = RunConfig(adapters=("fakes.adapters:PID_STAMPED", "fakes.adapters:OFF"),
                           methods=("layer_norm",), dtypes=("float32", "float16"),
                           vectors=str(vectors), jobs=jobs, workers=workers)
        report = Runner(config, compare=strict_compare).run()
        assert report.meta["workers"] == workers
        assert len(list(pids.iterdir())) == workers  # every worker took cases
        return [{k: v for k, v in r.to_dict({}).items() if k not in VOLATILE}
                for r in report.results]

    serial, shared = run(1), run(3)
    assert len(serial) > 0
    assert shared == serial
