"""The bytes model: how many bytes one call of a method must move (spec/bytes-model.md).

The model counts compulsory traffic: every array a call has to read at least once and every
array it has to write, each once, in the dtype it is stored in. Two columns:

* ``io``: the input and the output, the arrays whose size is the problem size: forward reads
  ``x`` and writes ``y`` (``2 |x|``); forward+backward adds a backward that reads ``x`` and
  ``dy`` and writes ``dx`` (``5 |x|`` in all, Triton's tutorial counts the same). A method
  whose ``y`` has another shape says so with ``output_shape(shape, hyper)``, and ``|y|`` is
  counted for ``y`` and ``dy``.
  Effective bandwidth (GB/s) and the percentages of the copy roofline use this column.
* ``extra``: everything else, stated apart so that the figures stay comparable: the other
  inputs (``weight``, ``bias``, conditioning, masks), running state read and written, the
  statistics a forward saves for its backward (written once, read once), and the parameter
  gradients. For the shapes benchmarked it is a small fraction of ``io``.

The model is derived from the reference module's metadata, so a newly registered method is
covered with no edit: ``PRIMALS`` (differentiable inputs), ``STATE`` and the step counter,
``CONSTANTS``, ``input_shapes`` (or the core methods' parameter shape), ``output_shape``
where ``y`` is not shaped like ``x``, and ``layout()`` (the number of reduction sets). A
method saves two statistics per reduction set (mean and rstd) when it subtracts a mean (the
tolerance model's ``CENTERED``), one otherwise (rrms, the norm).
:data:`OVERRIDES` corrects the few methods where that generic rule is wrong, each with the
reason.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from normspec import reference

ITEMSIZE: Mapping[str, int] = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2}
MODES: tuple[str, ...] = ("forward", "forward+backward")


@dataclass(frozen=True)
class Traffic:
    """Bytes read and written by one call, split into the two columns of the model."""

    io_read: int
    io_write: int
    extra_read: int
    extra_write: int

    @property
    def io(self) -> int:
        return self.io_read + self.io_write

    @property
    def extra(self) -> int:
        return self.extra_read + self.extra_write

    @property
    def total(self) -> int:
        return self.io + self.extra

    def as_dict(self) -> dict[str, int]:
        return {"io_read": self.io_read, "io_write": self.io_write,
                "extra_read": self.extra_read, "extra_write": self.extra_write,
                "io": self.io, "extra": self.extra, "total": self.total}


@dataclass(frozen=True)
class Arrays:
    """What one call of a method touches, in bytes, before it is turned into traffic."""

    x: int
    """Bytes of ``x`` (and of ``dx``)."""
    y: int
    """Bytes of ``y`` (and of ``dy``): ``x``'s, unless the module defines ``output_shape``."""
    other_primals: int
    """Bytes of the differentiable inputs other than ``x`` (read; their gradients written)."""
    state: int
    """Bytes of running state (read, and written updated)."""
    constants: int
    """Bytes of integer and boolean inputs (read)."""
    saved: int
    """Bytes of the statistics a forward saves for its backward."""
    notes: tuple[str, ...] = field(default_factory=tuple)


def stat_itemsize(dtype: str) -> int:
    """Statistics and state are kept in at least float32 (PyTorch's opmath, Flax's float32
    reductions)."""
    return max(ITEMSIZE[dtype], 4)


def _layout_rows(module: Any, shape: tuple[int, ...], hyper: Mapping[str, Any]) -> int | None:
    lay = getattr(module, "layout", None)
    if lay is None:
        return None
    params = inspect.signature(lay).parameters
    kwargs = {k: v for k, v in hyper.items() if k in params and k != "shape"}
    try:
        rows: int = lay(tuple(shape), **kwargs).rows
    except (TypeError, ValueError):
        return None
    return rows


def input_shapes(method: str, shape: tuple[int, ...], hyper: Mapping[str, Any],
                 names: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """Shapes of the inputs ``names`` (not ``x``) for an ``x`` of ``shape``, as the catalog
    derives them (the module's ``input_shapes``, or the core methods' parameter shape)."""
    from ..vectors import catalog

    return catalog._input_shapes(reference.get(method), method, tuple(shape), dict(hyper),
                                 list(names), f"bytes model of {method}")


def arrays(method: str, shape: tuple[int, ...], hyper: Mapping[str, Any], *, dtype: str,
           present: tuple[str, ...] | None = None) -> Arrays:
    """What a call of ``method`` on an ``x`` of ``shape`` touches (the generic rule).

    ``present`` names the differentiable inputs given (default: every one in ``PRIMALS``).
    """
    from ..tolerance import CENTERED
    from ..vectors import catalog

    module = reference.get(method)
    primals = tuple(getattr(module, "PRIMALS", ("x",)))
    given = tuple(p for p in (present if present is not None else primals) if p != "x")
    state = catalog.state_inputs(module)
    consts = dict(catalog.constant_inputs(module))
    names = (*given, *state, *consts)
    shapes = input_shapes(method, shape, hyper, names) if names else {}
    size = ITEMSIZE[dtype]
    notes: list[str] = []

    def count(name: str) -> int:
        if name not in shapes:
            notes.append(f"{name}: shape not derivable from x's shape, not counted")
            return 0
        return math.prod(shapes[name])

    x = math.prod(shape) * size
    out_shape = getattr(module, "output_shape", None)
    y = x if out_shape is None else math.prod(out_shape(tuple(shape), hyper)) * size
    other = sum(count(n) for n in given) * size
    st = sum(count(n) for n in state) * stat_itemsize(dtype)
    if catalog.takes_counter(module):
        st += 8  # the int64 step counter
    cbytes = sum(count(n) * (1 if kind == "bool" else 8) for n, kind in consts.items())
    rows = _layout_rows(module, shape, hyper)
    if rows is None:
        notes.append("no layout(): saved statistics not counted")
        saved = 0
    else:
        saved = rows * (2 if method in CENTERED else 1) * stat_itemsize(dtype)
    return Arrays(x, y, other, st, cbytes, saved, tuple(notes))


def _no_saved(reason: str) -> Callable[[Arrays], Arrays]:
    def fix(a: Arrays) -> Arrays:
        return replace(a, saved=0, notes=(*a.notes, reason))
    return fix


def _saved_twice(reason: str) -> Callable[[Arrays], Arrays]:
    def fix(a: Arrays) -> Arrays:
        return replace(a, saved=2 * a.saved, notes=(*a.notes, reason))
    return fix


OVERRIDES: Mapping[str, Callable[[Arrays], Arrays]] = {
    "local_response_norm": _no_saved(
        "local_response_norm: its statistic is per element (the window sum), which a backward "
        "recomputes from x rather than reading it; no saved statistics"),
    "min_max_scale": _saved_twice(
        "min_max_scale: a backward needs both extremes per reduction set (data_min and "
        "data_max), not one"),
}
"""Methods where the generic rule is wrong, each with the reason (shown in the spec page)."""


def model(method: str, shape: tuple[int, ...], hyper: Mapping[str, Any], *, dtype: str,
          mode: str, present: tuple[str, ...] | None = None) -> Traffic:
    """Bytes one call of ``method`` moves, ``mode`` being ``"forward"`` or
    ``"forward+backward"`` (see the module docstring for the convention)."""
    if mode not in MODES:
        raise ValueError(f"argument 'mode': got {mode!r}, expected one of {list(MODES)}")
    if dtype not in ITEMSIZE:
        raise ValueError(f"argument 'dtype': got {dtype!r}, expected one of {list(ITEMSIZE)}")
    a = arrays(method, shape, hyper, dtype=dtype, present=present)
    fix = OVERRIDES.get(method)
    if fix is not None:
        a = fix(a)
    if mode == "forward":
        return Traffic(io_read=a.x, io_write=a.y,
                       extra_read=a.other_primals + a.state + a.constants,
                       extra_write=a.state)
    # the backward reads x and dy and writes dx
    return Traffic(io_read=2 * a.x + a.y, io_write=a.y + a.x,
                   extra_read=2 * a.other_primals + a.state + 2 * a.constants + a.saved,
                   extra_write=a.state + a.saved + a.other_primals)


def notes(method: str, shape: tuple[int, ...], hyper: Mapping[str, Any], *, dtype: str
          ) -> tuple[str, ...]:
    """What the model leaves out or corrects for this call (empty for the common case)."""
    a = arrays(method, shape, hyper, dtype=dtype)
    fix = OVERRIDES.get(method)
    return (fix(a) if fix is not None else a).notes


def table(dtype: str = "float32") -> list[dict[str, Any]]:
    """One row per registered method at its first catalog case's shape: the generic rule's
    inputs and the multiples of ``|x|`` each column comes to (for the spec page and tests)."""
    from ..vectors import catalog

    rows = []
    for method in reference.METHODS:
        case = catalog.load_catalog(method).cases[0]
        shape = tuple(case.steps[0].shape if case.steps else case.shape)
        hyper = dict(case.steps[0].hyper if case.steps else case.hyper)
        row: dict[str, Any] = {"method": method, "shape": list(shape)}
        for mode in MODES:
            t = model(method, shape, hyper, dtype=dtype, mode=mode)
            x = float(np.prod(shape)) * ITEMSIZE[dtype]
            row[mode] = {"io_over_x": t.io / x, "extra_over_x": t.extra / x}
        rows.append(row)
    return rows


__all__ = ["ITEMSIZE", "MODES", "OVERRIDES", "Arrays", "Traffic", "arrays", "input_shapes",
           "model", "notes", "stat_itemsize", "table"]
