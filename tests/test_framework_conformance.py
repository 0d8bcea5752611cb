"""Real frameworks against the golden vectors: pass, or fail only as their ledgers record.

The full torch run takes seconds and runs in every dtype. A full JAX run compiles four
functions per case (several minutes on two cores), so the test suite runs it in float32, which
exercises every method and Flax's default fast variance; ``nox -s conformance`` runs it all.
"""

from __future__ import annotations

from collections import Counter

import pytest
from normspec.conformance.runner import RunConfig, Runner


def _assert_conforms(adapter: str, **selection: object) -> None:
    report = Runner(RunConfig(adapters=(adapter,), **selection)).run()  # type: ignore[arg-type]
    counts = Counter(r.status for r in report.results)
    bad = [f"{r.id}: {r.status}: {(r.message or '').splitlines()[:1]}" for r in report.results
           if r.status in ("fail", "error", "xpass")]
    assert counts["pass"] > 0, "nothing ran"
    assert not bad, f"{len(bad)} unexpected results, first: {bad[:5]}"


def test_torch_conforms_on_cpu_in_every_dtype() -> None:
    pytest.importorskip("torch")
    _assert_conforms("torch")


def test_jax_conforms_on_cpu_in_float32() -> None:
    pytest.importorskip("jax")
    pytest.importorskip("flax")
    _assert_conforms("jax", dtypes=("float32",))
