"""``normspec vectors check``: rebuild the vectors and compare them with the committed ones.

Inputs, cotangents, tangents and the manifest's metadata must be bitwise identical: they come
from NumPy's seeded generator and from rounding, which are exact. Expected values may differ by
at most 1 ulp per element (NaN and Inf at the same places, with the same signs): the reference's
sums are correctly rounded, but ``exp``, ``pow`` and ``sqrt``-adjacent libm calls and NumPy's
SIMD loops can differ in the last bit between platforms. The largest difference seen is
reported, so a bitwise-identical rebuild says so.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .generate import build, write
from .manifest import Manifest, load_manifest
from .storage import MANIFEST_NAME, VectorFormatError, describe, header

VOLATILE = ("generator",)
"""Top-level manifest fields that describe the build environment, reported but not compared."""
MAX_ULP = 1


@dataclass
class CheckResult:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    max_ulp: int = 0
    tensors: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def ulp_distance(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.uint64]:
    """Units in the last place between finite float64 values (+0 and -0 are 0 apart)."""
    ia = a.view(np.int64)
    ib = b.view(np.int64)
    mag_a = (ia & np.int64(0x7FFFFFFFFFFFFFFF)).astype(np.uint64)
    mag_b = (ib & np.int64(0x7FFFFFFFFFFFFFFF)).astype(np.uint64)
    same_sign = (ia < 0) == (ib < 0)
    with np.errstate(over="ignore"):
        apart = np.where(mag_a > mag_b, mag_a - mag_b, mag_b - mag_a)
        out: npt.NDArray[np.uint64] = np.where(same_sign, apart, mag_a + mag_b)
    return out


def _diff_json(a: Any, b: Any, path: str) -> Iterator[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            sub = f"{path}/{key}" if path else str(key)
            if key not in a:
                yield f"{sub}: only in the rebuild"
            elif key not in b:
                yield f"{sub}: only in the committed manifest"
            else:
                yield from _diff_json(a[key], b[key], sub)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from _diff_json(x, y, f"{path}[{i}]")
    elif type(a) is not type(b) or a != b:
        yield f"{path}: committed {a!r}, rebuilt {b!r}"


def _without_volatile(manifest: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in manifest.items() if k not in VOLATILE}
    methods = {}
    for m, entry in manifest.get("methods", {}).items():
        dtypes = {d: {k: v for k, v in e.items() if k != "sha256"}
                  for d, e in entry.get("dtypes", {}).items()}
        methods[m] = {**entry, "dtypes": dtypes}
    out["methods"] = methods
    return out


def _first_index(mask: npt.NDArray[np.bool_]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _compare_tensor(name: str, old: npt.NDArray[Any], new: npt.NDArray[Any], source: str,
                    result: CheckResult) -> None:
    case = name.split("/", 1)[0]
    where = f"{source}: case {case!r}, tensor {name!r}"
    if old.dtype != new.dtype or old.shape != new.shape:
        result.problems.append(f"{where}: committed {old.dtype} {list(old.shape)}, rebuilt "
                               f"{new.dtype} {list(new.shape)}")
        return
    quantity = name.split("/", 1)[1]
    exact = quantity == "cotangent" or quantity.startswith(("inputs/", "tangent/"))
    if exact:
        o, n = np.atleast_1d(old), np.atleast_1d(new)
        width = o.dtype.itemsize
        mask = (np.ascontiguousarray(o).view(np.uint8).reshape((*o.shape, width))
                != np.ascontiguousarray(n).view(np.uint8).reshape((*n.shape, width))).any(-1)
        if mask.any():
            idx = _first_index(mask)
            result.problems.append(
                f"{where}: {int(mask.sum())} of {o.size} elements differ bitwise (first at "
                f"index {idx}: committed {o[idx].item()!r}, rebuilt {n[idx].item()!r})")
        return
    a, b = np.atleast_1d(old.astype(np.float64)), np.atleast_1d(new.astype(np.float64))
    finite_a, finite_b = np.isfinite(a), np.isfinite(b)
    special = ~(finite_a & finite_b)
    mismatch = special & ~((np.isnan(a) & np.isnan(b)) | (a == b))
    if mismatch.any():
        idx = _first_index(mismatch)
        result.problems.append(f"{where}: NaN/Inf differ at {int(mismatch.sum())} element(s) "
                               f"(first at index {idx}: committed {a[idx]!r}, rebuilt {b[idx]!r})")
        return
    both = finite_a & finite_b
    if not both.any():
        return
    ulps = ulp_distance(a[both], b[both])
    worst = int(ulps.max())
    result.max_ulp = max(result.max_ulp, worst)
    if worst > MAX_ULP:
        full = np.zeros(a.shape, dtype=np.uint64)
        full[both] = ulps
        idx = _first_index(full > MAX_ULP)
        result.problems.append(
            f"{where}: {int((ulps > MAX_ULP).sum())} of {a.size} elements differ by more than "
            f"{MAX_ULP} ulp (max {worst} ulp; first at index {idx}: committed {a[idx]!r}, "
            f"rebuilt {b[idx]!r})")


def compare(committed: Manifest, rebuilt: Manifest, *, partial: bool = False) -> CheckResult:
    """Compare two loaded vector sets: manifest fields, file contents, tensor by tensor.

    ``partial``: ``rebuilt`` holds only some methods; the others of ``committed`` are not
    compared. Files on disk that the committed manifest does not list are problems.
    """
    result = CheckResult()
    for key in VOLATILE:
        if committed.data.get(key) != rebuilt.data.get(key):
            result.notes.append(f"{key} differs: committed {committed.data.get(key)}, "
                                f"rebuilt {rebuilt.data.get(key)}")
    mine = committed.data
    if partial:
        mine = {**mine, "methods": {
            m: e for m, e in mine["methods"].items() if m in rebuilt.methods}}
    for line in _diff_json(_without_volatile(mine), _without_volatile(rebuilt.data), ""):
        result.problems.append(f"{committed.source}: {line}")
    for method in rebuilt.methods:
        if method not in committed.methods:
            continue
        for dtype in rebuilt.dtypes(method):
            if dtype in committed.dtypes(method):
                _compare_file(committed, rebuilt, method, dtype, result)
    _stray_files(committed, result)
    return result


def _compare_file(committed: Manifest, rebuilt: Manifest, method: str, dtype: str,
                  result: CheckResult) -> None:
    source = committed.file_source(method, dtype)
    try:
        old = committed.tensors(method, dtype)
    except VectorFormatError as exc:
        result.problems.append(str(exc))
        return
    new = rebuilt.tensors(method, dtype)
    _compare_headers(committed, rebuilt, method, dtype, source, result)
    for name in sorted(set(old) ^ set(new)):
        side = "the rebuild" if name in new else "the committed file"
        result.problems.append(f"{source}: tensor {name!r} is only in {side}")
    for name in sorted(set(old) & set(new)):
        result.tensors += 1
        _compare_tensor(name, old[name], new[name], source, result)


def _compare_headers(committed: Manifest, rebuilt: Manifest, method: str, dtype: str,
                     source: str, result: CheckResult) -> None:
    rel = f"{method}/{dtype}.safetensors".split("/")
    meta_old = header(committed.root.joinpath(*rel).read_bytes(), source).get("__metadata__")
    meta_new = header(rebuilt.root.joinpath(*rel).read_bytes(), source).get("__metadata__")
    if meta_old != meta_new:
        result.problems.append(f"{source}: metadata: committed {meta_old}, rebuilt {meta_new}")


def _stray_files(committed: Manifest, result: CheckResult) -> None:
    listed = {e["file"] for m in committed.data["methods"].values() for e in m["dtypes"].values()}
    for folder in committed.root.iterdir():
        if not folder.is_dir():
            continue
        for item in folder.iterdir():
            rel = f"{folder.name}/{item.name}"
            if item.name.endswith(".safetensors") and rel not in listed:
                result.problems.append(f"{describe(committed.root, folder.name, item.name)}: "
                                       f"not listed in {MANIFEST_NAME}")


def check(vectors: Path | None = None, methods: Sequence[str] | None = None) -> CheckResult:
    """Rebuild into a temporary directory and :func:`compare` with ``vectors``.

    ``methods`` limits the rebuild and the comparison; by default every catalog is rebuilt,
    so a method added to or removed from spec/cases shows up as a difference.
    """
    try:
        committed = load_manifest(vectors)
    except VectorFormatError as exc:
        return CheckResult(problems=[str(exc)])
    with tempfile.TemporaryDirectory(prefix="normspec-vectors-") as tmp:
        try:
            manifest, files = build(methods)
        except (ValueError, TypeError) as exc:
            return CheckResult(problems=[f"the rebuild failed: {exc}"])
        write(Path(tmp), manifest, files)
        return compare(committed, load_manifest(Path(tmp)), partial=methods is not None)
