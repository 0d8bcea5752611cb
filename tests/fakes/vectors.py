"""Small golden-vector sets for the runner's tests, built from the catalogs into a temporary
directory (so the tests do not depend on the committed vectors and may tamper with theirs)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from normspec.conformance.vectors.generate import build, write


def build_vectors(out: Path, methods: Sequence[str] = ("layer_norm",)) -> Path:
    """Build the vectors of ``methods`` under ``out``; return ``out``."""
    manifest, files = build(methods)
    write(out, manifest, files)
    return out


def case_names(vectors: Path, method: str, dtype: str) -> list[str]:
    """The cases of ``method`` with vectors in ``dtype``, read from the manifest."""
    manifest = json.loads((vectors / "manifest.json").read_text())
    return [c["name"] for c in manifest["methods"][method]["dtypes"][dtype]["cases"]]
