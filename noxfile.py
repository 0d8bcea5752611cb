"""nox sessions: tests, conformance, conformance-<adapter>, vectors, docs, bench, lint, typecheck.

torch is always installed as ``torch==2.13.0`` *before* the project: that release is a CPU build
available locally, and letting pip resolve the bare ``torch`` extra could pull a multi-GB CUDA
build. Set NORMSPEC_TORCH to pin another release deliberately (for example on a GPU machine).
"""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_venv = "yes"

TORCH = os.environ.get("NORMSPEC_TORCH", "torch==2.13.0")
REPORTS = "reports"


def _install(session: nox.Session, *extras: str) -> None:
    if "torch" in extras:
        session.install(TORCH)
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("-e", spec)


@nox.session
def tests(session: nox.Session) -> None:
    """normspec's own tests: reference proofs, vectors, adapters, runner, mutants."""
    _install(session, "test", "torch", "jax", "onnx")
    # one pytest-xdist worker per core unless the caller passes its own arguments
    session.run("python", "-m", "pytest", *(session.posargs or ("-n", "auto")))


@nox.session
def conformance(session: nox.Session) -> None:
    """The main job: run the golden vectors against numpy, torch, JAX and ONNX on the CPU."""
    _install(session, "torch", "jax", "onnx")
    session.run(
        "normspec", "run",
        "--adapter", "numpy", "--adapter", "torch", "--adapter", "jax",
        "--adapter", "onnxruntime", "--adapter", "onnx-reference",
        "--device", "cpu",
        # two workers per adapter: once the fast adapters finish, JAX's compiling uses every core
        "--workers", "2",
        "--json", f"{REPORTS}/conformance.json",
        "--junit", f"{REPORTS}/conformance.xml",
        "--markdown", f"{REPORTS}/conformance.md",
        *session.posargs,
    )


@nox.session(name="conformance-ci")
def conformance_ci(session: nox.Session) -> None:
    """CI's conformance leg, sized to its time budget: numpy, torch and both ONNX adapters over
    every vector in every dtype, and JAX's forward checks in float32.

    JAX compiles one XLA program per case, dtype and check (about 0.6 s of CPU each), so its
    whole matrix takes over an hour cold on two cores; that is the main job's (`conformance`).
    """
    _install(session, "torch", "jax", "onnx")
    common = ("--device", "cpu", "--workers", "2", *session.posargs)
    session.run("normspec", "run", "--adapter", "numpy", "--adapter", "torch",
                "--adapter", "onnxruntime", "--adapter", "onnx-reference", *common,
                "--json", f"{REPORTS}/ci-frameworks.json",
                "--junit", f"{REPORTS}/ci-frameworks.xml")
    session.run("normspec", "run", "--adapter", "jax", "--dtype", "float32",
                "--check", "forward", *common,
                "--json", f"{REPORTS}/ci-jax.json", "--junit", f"{REPORTS}/ci-jax.xml")


@nox.session(name="conformance-torch")
def conformance_torch(session: nox.Session) -> None:
    """Conformance of the torch adapter alone (pass --device cuda on a GPU machine)."""
    _install(session, "torch")
    session.run("normspec", "run", "--adapter", "torch",
                "--json", f"{REPORTS}/torch.json", *session.posargs)


@nox.session(name="conformance-jax")
def conformance_jax(session: nox.Session) -> None:
    """Conformance of the JAX adapter alone."""
    _install(session, "jax")
    session.run("normspec", "run", "--adapter", "jax",
                "--json", f"{REPORTS}/jax.json", *session.posargs)


@nox.session(name="conformance-onnx")
def conformance_onnx(session: nox.Session) -> None:
    """Conformance of the ONNX adapters (onnxruntime and onnx's reference evaluator).

    Both are forward-only: their derivative checks are reported as skipped. With
    onnxruntime-gpu installed, pass ``-- --device cuda`` for the CUDA execution provider.
    """
    _install(session, "onnx")
    session.run("normspec", "run", "--adapter", "onnxruntime", "--adapter", "onnx-reference",
                "--json", f"{REPORTS}/onnx.json", *session.posargs)


@nox.session
def vectors(session: nox.Session) -> None:
    """Check the committed golden vectors; ``nox -s vectors -- build`` regenerates them first."""
    _install(session)
    if "build" in session.posargs:
        session.run("normspec", "vectors", "build")
    session.run("normspec", "vectors", "check")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the site into docs/_build/html, then check it in headless Chromium.

    The build treats warnings as errors (``-W --keep-going``), resolves every internal reference
    (``-n``) and runs the doctests of the documented modules; the browser test
    (tests/test_docs_site.py) then checks math, figures, search and every local link, with
    screenshots in reports/screenshots/. It needs Debian's chromium and chromium-driver and is
    never skipped here (NORMSPEC_REQUIRE_BROWSER=1).
    """
    _install(session, "docs")
    html = "docs/_build/html"
    session.run("python", "-m", "sphinx", "-W", "--keep-going", "-n", "-E", "-b", "html",
                "-d", "docs/_build/doctrees", "-c", "docs", ".", html)
    session.run("python", "-m", "pytest", "tests/test_docs_site.py", *session.posargs,
                env={"NORMSPEC_REQUIRE_BROWSER": "1", "NORMSPEC_DOCS_HTML": html})


@nox.session
def bench(session: nox.Session) -> None:
    """The pytest-benchmark suite (benchmarks/, outside the test session's testpaths), JSON in
    reports/. ``NORMSPEC_BENCH_DEVICE=cuda nox -s bench`` on a GPU machine; ``normspec bench``
    is the user-facing command (see docs/benchmarks.md)."""
    _install(session, "bench", "torch", "jax", "onnx")
    session.run("python", "-m", "pytest", "benchmarks", "--benchmark-only",
                f"--benchmark-json={REPORTS}/bench-pytest.json", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the whole tree."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the installed package (a regular, non-editable install: mypy follows
    setuptools' package-dir mapping only there), so imports across normspec.* stay typed."""
    session.install("--force-reinstall", "--no-deps", ".")
    session.install(".[lint,test]")
    session.run("mypy")
