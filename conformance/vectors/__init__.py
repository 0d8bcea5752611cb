"""Golden vectors: case catalogs, generation, storage, the manifest and the loader.

The runner reads vectors through :func:`load_manifest` / :func:`iter_cases`, which return
:class:`VectorCase` records (float64 arrays, expected values, tolerance classes). Vectors are
written only by ``normspec vectors build`` (:func:`~.generate.build`), never at import time.
The format is documented in spec/FORMAT.md.
"""

from __future__ import annotations

from .manifest import Manifest, VectorCase, VectorStep, iter_cases, load_manifest
from .storage import DTYPES, VectorFormatError

__all__ = ["DTYPES", "Manifest", "VectorCase", "VectorFormatError", "VectorStep", "iter_cases",
           "load_manifest"]
