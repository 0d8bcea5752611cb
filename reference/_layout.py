"""How a method's reduction sets and parameters map onto the input's axes.

A method reduces over a set of axes and keeps the rest. ``Layout`` permutes the input so that
each reduction set is one row of a ``(rows, n)`` matrix, and puts rows back afterwards.
Sums are correctly rounded (``math.fsum``), so the reference does not depend on the summation
order of the platform's NumPy build and its statistics are as accurate as float64 allows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ._checks import FloatArray


def _row_total(row: FloatArray, divisor: int) -> float:
    """``sum(row) / divisor``, the sum correctly rounded, with no spurious overflow.

    A row of finite values whose sum overflows an intermediate is summed scaled by a power of
    two (exact) and scaled back after the division, so a mean that fits is returned even when
    the sum does not. NaN and +-inf propagate as IEEE summation says (inf + -inf is NaN).
    """
    if not np.isfinite(row).all():
        with np.errstate(invalid="ignore"):
            return float(np.sum(row)) / divisor
    try:
        return math.fsum(row.tolist()) / divisor
    except OverflowError:
        _, exponent = math.frexp(float(np.max(np.abs(row))))
        scaled = math.fsum((row * math.ldexp(1.0, -exponent)).tolist()) / divisor
        with np.errstate(over="ignore"):
            return float(np.ldexp(scaled, exponent))


def row_sum(a: FloatArray) -> FloatArray:
    """Correctly rounded sum of each row of a 2-d array (see :func:`_row_total`)."""
    out: FloatArray = np.array([_row_total(row, 1) for row in a], dtype=np.float64)
    return out


def row_mean(a: FloatArray) -> FloatArray:
    """Mean of each row: the correctly rounded sum divided by the row length."""
    n = a.shape[1]
    out: FloatArray = np.array([_row_total(row, n) for row in a], dtype=np.float64)
    return out


def sum_over(a: FloatArray, axes: tuple[int, ...]) -> FloatArray:
    """Correctly rounded sum of ``a`` over ``axes``; the remaining axes keep their order."""
    keep = tuple(i for i in range(a.ndim) if i not in axes)
    moved = np.transpose(a, keep + tuple(axes))
    rows = math.prod(a.shape[i] for i in keep)
    n = math.prod(a.shape[i] for i in axes)
    return row_sum(moved.reshape(rows, n)).reshape(tuple(a.shape[i] for i in keep))


@dataclass(frozen=True)
class Layout:
    """Map an input of ``shape`` to ``(rows, n)`` and back.

    ``perm`` orders the axes so that a C-order reshape to ``(rows, n)`` puts one reduction set
    per row; ``stat_shape`` is the shape the per-row statistics are reported in.
    ``n`` is the size of each reduction set; ``param_axes`` are the input axes a weight or bias
    spans (in order).
    """

    shape: tuple[int, ...]
    perm: tuple[int, ...]
    stat_shape: tuple[int, ...]
    n: int
    param_axes: tuple[int, ...]

    @property
    def rows(self) -> int:
        return math.prod(self.stat_shape)

    @property
    def param_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[i] for i in self.param_axes)

    def to_rows(self, a: FloatArray) -> FloatArray:
        return np.transpose(a, self.perm).reshape(self.rows, self.n)

    def from_rows(self, a: FloatArray) -> FloatArray:
        permuted = tuple(self.shape[i] for i in self.perm)
        return np.transpose(a.reshape(permuted), np.argsort(self.perm))

    def stats_from_rows(self, a: FloatArray) -> FloatArray:
        return a.reshape(self.stat_shape)

    def param_view(self, p: FloatArray) -> FloatArray:
        """Reshape a parameter so that it broadcasts against the input."""
        view = [self.shape[i] if i in self.param_axes else 1 for i in range(len(self.shape))]
        return p.reshape(view)

    def param_sum(self, a: FloatArray) -> FloatArray:
        """Sum an input-shaped array down to the parameter shape."""
        others = tuple(i for i in range(len(self.shape)) if i not in self.param_axes)
        return sum_over(a, others)


def reduction_sets(layout: Layout) -> npt.NDArray[np.intp]:
    """Label every element of an input of ``layout.shape`` with its reduction set.

    Elements with the same label share one set of statistics (one row of
    :meth:`Layout.to_rows`); the label is that row's index. It is read back through
    :meth:`Layout.from_rows`, the very mapping the methods use, so a picture drawn from it shows
    what the reference reduces. Nothing numerical depends on it.

    >>> lay = Layout(shape=(2, 3), perm=(1, 0), stat_shape=(3,), n=2, param_axes=(1,))
    >>> reduction_sets(lay).tolist()          # one set per column: both rows of a column
    [[0, 1, 2], [0, 1, 2]]
    """
    labels = np.repeat(np.arange(layout.rows, dtype=np.float64)[:, None], layout.n, axis=1)
    out: npt.NDArray[np.intp] = layout.from_rows(labels).astype(np.intp)
    return out
