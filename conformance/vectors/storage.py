"""Bytes on disk: dtypes, safetensors encoding and decoding, hashes, resource locations.

Files are plain safetensors (an 8-byte little-endian header length, a JSON header, then the
raw little-endian tensor data), so any safetensors reader in any language can open them.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from types import ModuleType
from typing import Any

import ml_dtypes
import numpy as np
import numpy.typing as npt
from normspec import reference

if sys.version_info >= (3, 11):
    from importlib.resources.abc import Traversable
else:  # pragma: no cover - Python 3.10
    from importlib.abc import Traversable

DTYPES: tuple[str, ...] = ("float64", "float32", "float16", "bfloat16")
"""The dtypes under test, each with its own inputs and its own file per method."""

STORAGE_CODE: Mapping[str, str] = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16",
}
"""The safetensors dtype code that stores inputs and directions of each dtype under test."""

_NUMPY_DTYPE: Mapping[str, np.dtype[Any]] = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype(np.int64),
    "BOOL": np.dtype(np.bool_),
}

INTEGER_CODES: Mapping[str, str] = {"int64": "I64", "bool": "BOOL"}
"""Storage of integer and boolean inputs (masks, lengths, indices, counters): their own
safetensors code in every file, whatever the dtype under test."""

__all__ = ["DTYPES", "FORMAT_VERSION", "INTEGER_CODES", "MANIFEST_NAME", "SCHEMA_NAME",
           "STORAGE_CODE", "Traversable",
           "VectorFormatError", "as_path", "decode", "default_cases_root", "default_vectors_root",
           "describe", "encode", "header", "numpy_dtype", "reference_module", "round_to", "sha256",
           "spec_root", "storage_code"]

FORMAT_VERSION = 2
"""The vector format (spec/FORMAT.md); bumped on any incompatible change."""

MANIFEST_NAME = "manifest.json"
SCHEMA_NAME = "vector-manifest.schema.json"
METADATA_KEY = "normspec"
"""The one ``__metadata__`` key of every file. Its value is a JSON string: safetensors writes
a metadata mapping in hash order, so several keys would make the bytes (and sha256) vary."""


class VectorFormatError(ValueError):
    """A vector file or manifest that is missing, corrupted, tampered with or malformed.

    The message always starts with the file it is about.
    """


def numpy_dtype(dtype: str) -> np.dtype[Any]:
    """The NumPy dtype of a dtype under test (``"bfloat16"`` comes from ml_dtypes)."""
    if dtype not in STORAGE_CODE:
        raise ValueError(f"argument 'dtype': got {dtype!r}, expected one of {list(DTYPES)}")
    return _NUMPY_DTYPE[STORAGE_CODE[dtype]]


def round_to(dtype: str, values: npt.NDArray[np.float64]) -> npt.NDArray[Any]:
    """Round float64 ``values`` to ``dtype`` (nearest even); overflow gives +-inf, silently."""
    with np.errstate(over="ignore"):
        return np.array(values.astype(numpy_dtype(dtype)), order="C")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode(tensors: Mapping[str, npt.NDArray[Any]], metadata: Mapping[str, Any]) -> bytes:
    """Serialize ``tensors`` as safetensors bytes with ``metadata`` under :data:`METADATA_KEY`."""
    from safetensors.numpy import save

    # np.ascontiguousarray would turn 0-d arrays (a scalar statistic) into shape (1,).
    arrays = {name: np.array(a, order="C") for name, a in tensors.items()}
    header = {METADATA_KEY: json.dumps(dict(metadata), sort_keys=True, separators=(",", ":"))}
    data: bytes = save(arrays, metadata=header)
    return data


def decode(data: bytes, source: str) -> dict[str, npt.NDArray[Any]]:
    """Parse safetensors bytes into read-only arrays of their stored dtype.

    safetensors' ``deserialize`` does the parsing; the dtype map adds BF16, which
    ``safetensors.numpy.load`` does not know.
    """
    from safetensors import SafetensorError, deserialize

    try:
        entries = deserialize(data)  # type: ignore[no-untyped-call, unused-ignore]
    except SafetensorError as exc:
        raise VectorFormatError(f"{source}: not a valid safetensors file ({exc})") from None
    out: dict[str, npt.NDArray[Any]] = {}
    for name, info in entries:
        code = info["dtype"]
        if code not in _NUMPY_DTYPE:
            raise VectorFormatError(
                f"{source}: tensor {name!r} has dtype {code!r}, expected one of "
                f"{sorted(_NUMPY_DTYPE)}")
        out[name] = np.frombuffer(info["data"], dtype=_NUMPY_DTYPE[code]).reshape(info["shape"])
    return out


def header(data: bytes, source: str) -> dict[str, Any]:
    """The JSON header of safetensors bytes (tensor dtypes, shapes, offsets and metadata)."""
    if len(data) < 8:
        raise VectorFormatError(f"{source}: {len(data)} bytes, too short for a safetensors file")
    (length,) = struct.unpack("<Q", data[:8])
    try:
        parsed = json.loads(data[8:8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VectorFormatError(f"{source}: unreadable safetensors header ({exc})") from None
    if not isinstance(parsed, dict):
        raise VectorFormatError(f"{source}: safetensors header is not a JSON object")
    return parsed


def storage_code(array: npt.NDArray[Any]) -> str:
    """The safetensors code of an array's dtype (for messages and checks)."""
    for code, dt in _NUMPY_DTYPE.items():
        if array.dtype == dt:
            return code
    raise ValueError(f"argument 'array': got dtype {array.dtype}, expected one of "
                     f"{[str(d) for d in _NUMPY_DTYPE.values()]}")


def reference_module(method: str | None = None) -> ModuleType:
    """``normspec.reference``, or the module of one method."""
    if method is None:
        return reference
    return reference.get(method)


def spec_root() -> Traversable:
    """The installed ``normspec.spec`` package data (the repo's spec/ in an editable install)."""
    return files("normspec.spec")


def default_vectors_root() -> Traversable:
    return spec_root().joinpath("vectors")


def default_cases_root() -> Traversable:
    return spec_root().joinpath("cases")


def as_path(root: Traversable, argument: str) -> Path:
    """A real directory for ``root``, or a ValueError saying that one is needed (e.g. a zip)."""
    if isinstance(root, Path):
        return root
    raise ValueError(f"argument {argument!r}: got {root!r}, expected a directory on disk")


def describe(root: Traversable, *parts: str) -> str:
    """A path for messages: relative to the working directory when that is shorter."""
    text = str(root.joinpath(*parts)) if parts else str(root)
    try:
        rel = Path(text).resolve().relative_to(Path.cwd().resolve())
    except (ValueError, OSError):
        return text
    return str(rel)
