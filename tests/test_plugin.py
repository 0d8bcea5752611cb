"""The pytest plugin: inert by default; with --normspec-adapter, one item per stable test id,
ledger entries as strict xfails."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest
from fakes.vectors import build_vectors, case_names

pytest_plugins = ["pytester"]

CHECKS = ("forward", "vjp", "jvp", "second_order")


def _plugin_args() -> list[str]:
    # Installed, the entry point loads the plugin; loading it twice would be an error.
    registered = any(ep.value == "normspec.conformance.plugin"
                     for ep in entry_points(group="pytest11"))
    return [] if registered else ["-p", "normspec.conformance.plugin"]


@pytest.fixture(scope="module")
def vectors(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_vectors(tmp_path_factory.mktemp("vectors"))


def _args(vectors: Path, adapter: str, case: str, *extra: str) -> list[str]:
    return [*_plugin_args(), "--pyargs", "normspec.conformance", "--normspec-adapter", adapter,
            "--normspec-method", "layer_norm", "--normspec-dtype", "float32",
            "--normspec-case", case, "--normspec-vectors", str(vectors), "-p", "no:cacheprovider",
            *extra]


def test_inert_without_an_adapter(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_one="def test_one():\n    assert True\n")
    result = pytester.runpytest(*_plugin_args(), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["collected 1 item"])


def test_options_are_documented(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(*_plugin_args(), "--help")
    result.stdout.fnmatch_lines(["*normspec conformance checks*", "*--normspec-adapter=NAME*"])


def test_items_carry_the_stable_test_ids(pytester: pytest.Pytester, vectors: Path) -> None:
    first = case_names(vectors, "layer_norm", "float32")[0]
    result = pytester.runpytest(*_args(vectors, "fakes.adapters:REFERENCE", first),
                                "--collect-only", "-q")
    ids = [line.rsplit("::", 1)[-1] for line in result.outlines if "::" in line]
    assert ids == [f"layer_norm[{first}]-float32-{check}" for check in CHECKS]
    assert all("::fakes.adapters:REFERENCE::" in line for line in result.outlines if "::" in line)


def test_checks_run_as_items_and_report_failures(pytester: pytest.Pytester,
                                                 vectors: Path) -> None:
    first = case_names(vectors, "layer_norm", "float32")[0]
    result = pytester.runpytest(*_args(vectors, "fakes.adapters:OFF", first))
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines([f"*layer_norm[[]{first}]-float32-jvp*",
                                 "fail: jvp [[]jvp] is not within its budget:",
                                 "Mismatched elements:*",
                                 "Reproduce: normspec run --adapter fakes.adapters:OFF*"])


def test_isolation_errors_fail_only_their_item(pytester: pytest.Pytester,
                                               vectors: Path) -> None:
    first = case_names(vectors, "layer_norm", "float32")[0]
    result = pytester.runpytest(*_args(vectors, "fakes.adapters:SEGFAULTING", first))
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["error: crashed: the worker process was killed by signal "
                                 "SIGSEGV during jvp*"])


def test_ledger_entries_are_strict_xfails(pytester: pytest.Pytester, vectors: Path) -> None:
    first = case_names(vectors, "layer_norm", "float32")[0]
    ledgers = pytester.mkdir("ledgers")
    (ledgers / "fake_off.toml").write_text(
        f'[[xfail]]\nid = "layer_norm[{first}]-float32-jvp"\nreason = "off by 1%"\n'
        'evidence = "tests/fakes/adapters.py"\n'
        f'[[xfail]]\nid = "layer_norm[{first}]-float32-vjp"\nreason = "stale"\n'
        'evidence = "https://example.invalid/1"\n')
    result = pytester.runpytest(*_args(vectors, "fakes.adapters:OFF", first,
                                       "--normspec-ledger-dir", str(ledgers), "-rxX"))
    # jvp fails as recorded (xfail); vjp passes although recorded: strict XPASS fails.
    result.assert_outcomes(passed=2, xfailed=1, failed=1)
    result.stdout.fnmatch_lines(["*[[]XPASS(strict)[]] stale*"])


def test_unknown_adapter_is_a_usage_error(pytester: pytest.Pytester, vectors: Path) -> None:
    result = pytester.runpytest(*_args(vectors, "no_such_adapter", "*"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*normspec: unknown adapter 'no_such_adapter'*"])


@pytest.mark.parametrize("option", ["--normspec-timeout", "--normspec-startup-timeout"])
@pytest.mark.parametrize("value", ["inf", "nan", "0", "-1"])
def test_bad_timeout_is_a_usage_error(pytester: pytest.Pytester, option: str, value: str
                                      ) -> None:
    result = pytester.runpytest_subprocess(option, value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{option}*got '{value}'*"])


def _outcomes(result: pytest.RunResult) -> dict[str, str]:
    """Test id -> outcome, from the verbose report lines of a run (xdist or not)."""
    out = {}
    for line in result.outlines:
        for word in ("PASSED", "FAILED", "XFAIL", "SKIPPED", "ERROR"):
            if f" {word}" in line and "::" in line:
                node = next(t for t in line.split() if "::" in t).rsplit("::", 1)[-1]
                # xdist's progress lines close the id with one more bracket than it has
                if node.count("]") > node.count("["):
                    node = node[:-1]
                out[node] = word
    return out


def test_works_under_xdist_with_the_same_ids_and_results(
        pytester: pytest.Pytester, vectors: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("xdist")
    # the subprocesses (and xdist's workers) import the fake adapters from tests/
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent))
    args = _args(vectors, "fakes.adapters:OFF", "normal-*", "-v")
    serial = pytester.runpytest_subprocess(*args, "-p", "no:xdist")
    parallel = pytester.runpytest_subprocess(*args, "-n", "2")
    assert serial.ret == parallel.ret == pytest.ExitCode.TESTS_FAILED
    a, b = _outcomes(serial), _outcomes(parallel)
    assert len(a) >= 8
    assert a == b
    assert "FAILED" in a.values()
    assert "PASSED" in a.values()
