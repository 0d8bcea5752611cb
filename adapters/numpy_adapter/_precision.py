"""The precision model: which dtype stores values, which one computes, and pairwise reductions."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np
import numpy.typing as npt

Num = npt.NDArray[Any]
"""An array in the compute dtype (float32 or float64)."""

_STORAGE: dict[str, np.dtype[Any]] = {
    "float64": np.dtype(np.float64),
    "float32": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
}


@dataclass(frozen=True)
class Precision:
    """``storage`` holds inputs and results; ``compute`` is what the arithmetic runs in.

    They are equal for float64 and float32. For float16 and bfloat16 ``compute`` is float32,
    the accumulation type every framework uses for these (PyTorch's opmath type, Flax's
    ``force_float32_reductions``, Keras' upcast in its normalization layers).
    """

    name: str
    storage: np.dtype[Any]
    compute: np.dtype[Any]

    def scalar(self, value: float) -> Any:
        """A Python hyperparameter as a compute-dtype scalar, as a kernel receives it."""
        return self.compute.type(value)

    def load(self, name: str, value: object) -> Num:
        """Convert a float64 input to the storage dtype (it must be exact), then to compute."""
        arr = np.asarray(value)
        if arr.dtype.kind != "f":
            raise TypeError(
                f"argument {name!r}: got dtype {arr.dtype}, expected a float64 array of "
                f"values representable in {self.name}"
            )
        wide = arr.astype(np.float64)
        with np.errstate(all="ignore"):
            stored = wide.astype(self.storage)
        back = stored.astype(np.float64)
        if not np.array_equal(back, wide, equal_nan=True):
            bad = np.flatnonzero((back != wide) & ~(np.isnan(back) & np.isnan(wide)))
            first = float(wide.reshape(-1)[bad[0]])
            raise ValueError(
                f"argument {name!r}: got {bad.size} value(s) not exactly representable in "
                f"{self.name} (first: {first!r}), expected inputs already rounded to {self.name}"
            )
        return stored.astype(self.compute)

    def load_state(self, name: str, value: object) -> Num:
        """Convert running state to the compute dtype, where this adapter keeps it.

        State it returned from a training step comes back as the next step's input (a
        trajectory), in the compute type (float32 for half inputs): it must be exact there.
        """
        arr = np.asarray(value)
        if arr.dtype.kind != "f":
            raise TypeError(f"argument {name!r}: got dtype {arr.dtype}, expected a float64 array")
        with np.errstate(all="ignore"):
            kept = arr.astype(self.compute)
        if not np.array_equal(kept.astype(np.float64), arr.astype(np.float64), equal_nan=True):
            raise ValueError(f"argument {name!r}: got values not exactly representable in "
                             f"{self.compute}, where this adapter keeps its running state")
        return kept

    def result(self, value: Num) -> npt.NDArray[np.float64]:
        """Round a computed result to the storage dtype and hand it back as float64."""
        with np.errstate(all="ignore"):
            return np.asarray(value).astype(self.storage).astype(np.float64)


def precision(dtype: str) -> Precision:
    """The :class:`Precision` for a dtype name; ValueError for an unknown one."""
    if dtype not in _STORAGE:
        raise ValueError(f"argument 'dtype': got {dtype!r}, expected one of {list(_STORAGE)}")
    storage = _STORAGE[dtype]
    compute = storage if dtype in ("float64", "float32") else np.dtype(np.float32)
    return Precision(name=dtype, storage=storage, compute=compute)


def reduce_sum(a: Num, axes: tuple[int, ...]) -> Num:
    """Sum over ``axes`` keeping dims, in ``a``'s dtype.

    The reduced axes are made the contiguous last axis first: NumPy sums a contiguous axis
    pairwise (error growing like log n), but accumulates across outer axes one by one (error
    growing like n), and a careful kernel does not let the layout pick its error bound.
    """
    if not axes:
        copy: Num = a.copy()
        return copy
    keep = tuple(i for i in range(a.ndim) if i not in axes)
    n = math.prod(a.shape[i] for i in axes)
    moved = np.ascontiguousarray(np.transpose(a, keep + axes))
    flat = moved.reshape(*(a.shape[i] for i in keep), n)
    total = np.sum(flat, axis=-1)
    return np.asarray(total).reshape(tuple(1 if i in axes else a.shape[i] for i in range(a.ndim)))


def reduce_mean(a: Num, axes: tuple[int, ...]) -> Num:
    """Mean over ``axes`` keeping dims: :func:`reduce_sum` divided by the count."""
    n = math.prod(a.shape[i] for i in axes)
    mean: Num = reduce_sum(a, axes) / a.dtype.type(n)
    return mean
