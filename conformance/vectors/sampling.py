"""Input distributions of the case catalogs, drawn in float64 from a case's own generator.

A draw does not depend on the dtype under test, except for ``tiny`` and ``huge``: they draw one
unit-scale array and multiply it by a magnitude chosen per dtype (:data:`TINY`, :data:`HUGE`),
so every dtype gets the same shape of data at the edge of its own range. ``decades`` spans a
range of magnitudes the catalog chooses, so a case restricts its dtypes to those that hold it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

TINY: Mapping[str, float] = {
    "float64": 1e-100, "float32": 1e-15, "bfloat16": 1e-15, "float16": 1e-3,
}
"""Magnitude of ``tiny`` per dtype. Values are normal numbers of the dtype (``|z|`` is kept
>= 1/8, so float16 values stay >= 1.25e-4 > 6.1e-5, its smallest normal). Their squares stay
normal in the accumulation type the spec requires (float32 for float32, float16 and bfloat16;
1e-30 > 1.2e-38), while float16 squares (~1e-6) are subnormal in float16 itself."""

HUGE: Mapping[str, float] = {
    "float64": 1e100, "float32": 1e15, "bfloat16": 1e15, "float16": 300.0,
}
"""Magnitude of ``huge`` per dtype. float16's squares overflow float16 (above |x| = 256) but
not the float32 accumulation the spec requires, which is what the case tests. float32 and
bfloat16 accumulate in float32, so their sums of squares must fit it (n * 1e30 < 3.4e38): a
value whose square overflows the accumulation type is outside the precision contract, because
no framework rescales before squaring. float64 stays at 1e100."""

TINY_FLOOR = 0.125
"""``tiny`` draws ``z`` with ``|z|`` raised to at least this, so no value is subnormal."""

OFFSET_MIN_RATIO = 1e3

DECADES_LIMIT = 300
"""``decades`` exponents stay within +-this: ``10**U`` and its square's reciprocal stay finite
in float64, the type every draw is made in."""

_REQUIRED = object()
PARAMS: Mapping[str, Mapping[str, object]] = {
    "normal": {"loc": 0.0, "scale": 1.0},
    "uniform": {"low": 0.0, "high": 1.0},
    "offset": {"ratio": _REQUIRED},
    "tiny": {},
    "huge": {},
    "decades": {"low": _REQUIRED, "high": _REQUIRED},
    "constant": {"value": None},
    "nan": {"count": 1},
    "inf": {"count": 1, "sign": 1},
    "values": {"values": _REQUIRED},
    "prefix": {"lengths": _REQUIRED},
}
"""Each distribution and its parameters with their defaults (None: drawn, see :func:`draw`)."""

KINDS: tuple[str, ...] = tuple(PARAMS)
NONFINITE_KINDS = frozenset({"nan", "inf"})
LITERAL_KINDS = frozenset({"values", "prefix"})
"""Distributions that draw nothing: their values are written in the catalog. They are the only
ones integer and boolean inputs (masks, lengths, counters) take; float inputs may use
``values`` too."""

Literal = float | int | bool | tuple["Literal", ...]


@dataclass(frozen=True)
class Dist:
    """A distribution and its parameters, as written in a catalog (defaults not filled in)."""

    kind: str
    params: tuple[tuple[str, Literal], ...] = ()

    def get(self, name: str) -> Any:
        given = dict(self.params)
        return given[name] if name in given else PARAMS[self.kind][name]

    def to_json(self) -> dict[str, Any]:
        return {"dist": self.kind, **{k: _as_list(v) for k, v in self.params}}


def _as_list(value: Literal) -> Any:
    return [_as_list(v) for v in value] if isinstance(value, tuple) else value


def _literal(where: str, name: str, value: object) -> Literal:
    """A catalog literal (a number, a boolean or a nested list of them) as nested tuples."""
    if isinstance(value, list):
        return tuple(_literal(where, name, v) for v in value)
    if isinstance(value, int):  # booleans included
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise ValueError(f"{where}: parameter {name!r}: got {value!r}, expected finite numbers or "
                     "booleans, possibly in nested lists")


def _number(where: str, name: str, value: object, *, integer: bool = False) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            integer and not isinstance(value, int)):
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{where}: parameter {name!r}: got {value!r}, expected {kind}")
    if not math.isfinite(value):
        raise ValueError(f"{where}: parameter {name!r}: got {value!r}, expected a finite number")
    return value


def parse_dist(where: str, raw: object) -> Dist:
    """Read ``"kind"`` or ``{dist = "kind", param = value, ...}``; ``where`` prefixes errors."""
    if isinstance(raw, str):
        raw = {"dist": raw}
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: got {raw!r}, expected a distribution name or a table "
                         "with a 'dist' key")
    kind = raw.get("dist")
    if not isinstance(kind, str) or kind not in PARAMS:
        raise ValueError(f"{where}: unknown distribution {kind!r}, expected one of {list(KINDS)}")
    allowed = PARAMS[kind]
    params: dict[str, Literal] = {}
    for name, value in raw.items():
        if name == "dist":
            continue
        if name not in allowed:
            raise ValueError(f"{where}: distribution {kind!r} has no parameter {name!r}, "
                             f"expected some of {sorted(allowed)}")
        if kind in LITERAL_KINDS:
            params[name] = _literal(where, name, value)
        else:
            params[name] = _number(where, name, value, integer=name == "count")
    missing = [n for n, d in allowed.items() if d is _REQUIRED and n not in params]
    if missing:
        raise ValueError(f"{where}: distribution {kind!r} needs parameter(s) {missing}")
    dist = Dist(kind, tuple(sorted(params.items())))
    _check_ranges(where, dist)
    return dist


def _check_ranges(where: str, dist: Dist) -> None:
    problems = {
        "normal": dist.kind == "normal" and not dist.get("scale") > 0,
        "uniform": dist.kind == "uniform" and not dist.get("high") > dist.get("low"),
        "offset": dist.kind == "offset" and not abs(dist.get("ratio")) >= OFFSET_MIN_RATIO,
        "count": dist.kind in NONFINITE_KINDS and not dist.get("count") >= 1,
        "sign": dist.kind == "inf" and dist.get("sign") not in (1, -1),
        "decades": dist.kind == "decades" and not (
            -DECADES_LIMIT <= dist.get("low") < dist.get("high") <= DECADES_LIMIT),
    }
    expected = {
        "normal": "scale > 0", "uniform": "high > low",
        "offset": f"|ratio| >= {OFFSET_MIN_RATIO:g} (|mean|/std of the offset distribution)",
        "count": "count >= 1", "sign": "sign 1 or -1",
        "decades": f"-{DECADES_LIMIT} <= low < high <= {DECADES_LIMIT}",
    }
    for key, bad in problems.items():
        if bad:
            raise ValueError(f"{where}: got {dist.to_json()}, expected {expected[key]}")


@dataclass(frozen=True)
class Sample:
    """One drawn array: ``base`` in float64, times a per-dtype magnitude for tiny and huge.

    Integer and boolean inputs hold their own dtype (int64, bool) in ``base``; they are stored
    as they are, never rounded to the dtype under test.
    """

    base: npt.NDArray[Any]
    scale: float
    """The size of the values' spread; tangents of this input are drawn at this scale."""
    per_dtype: Mapping[str, float] | None = None

    @property
    def is_float(self) -> bool:
        return self.base.dtype == np.float64

    def values(self, dtype: str) -> npt.NDArray[Any]:
        return self.base if self.per_dtype is None else self.base * self.per_dtype[dtype]

    def scale_for(self, dtype: str) -> float:
        return self.scale if self.per_dtype is None else self.scale * self.per_dtype[dtype]


ELEMENT_TYPES: Mapping[str, type] = {"float": np.float64, "int64": np.int64, "bool": np.bool_}
"""The kinds of input a reference takes: floats (rounded to each dtype), integers, booleans."""


def literal_shape(dist: Dist, where: str) -> tuple[int, ...] | None:
    """The shape a ``values`` literal gives its input (None for other distributions)."""
    if dist.kind != "values":
        return None
    try:
        return tuple(np.array(_as_list(dist.get("values")), dtype=object).shape)
    except ValueError:
        raise ValueError(f"{where}: 'values' is a ragged nested list, expected a rectangular "
                         "array") from None


def draw_literal(dist: Dist, element: str, shape: tuple[int, ...], where: str) -> Sample:
    """The array a ``values`` or ``prefix`` distribution writes out (no random draw).

    ``values``: the literal itself, of ``shape``; booleans for a ``bool`` input, integers for an
    ``int64`` one, numbers for a float one. ``prefix`` (bool inputs of shape ``(N, T)``):
    ``mask[n, t] = t < lengths[n]``, so row ``n`` holds ``lengths[n]`` valid positions first.
    """
    if dist.kind == "prefix":
        lengths = dist.get("lengths")
        if element != "bool" or len(shape) != 2:
            raise ValueError(f"{where}: 'prefix' makes a 2-d boolean mask (N, T), but this input "
                             f"is {element} of shape {list(shape)}")
        ok = isinstance(lengths, tuple) and all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= shape[1]
            for v in lengths)
        if not ok or len(lengths) != shape[0]:
            raise ValueError(f"{where}: 'lengths': got {_as_list(lengths)!r}, expected "
                             f"{shape[0]} integers in [0, {shape[1]}] (one per row of the mask)")
        base = np.arange(shape[1])[None, :] < np.array(lengths, dtype=np.int64)[:, None]
        return Sample(base, 1.0)
    raw = np.array(_as_list(dist.get("values")), dtype=object)
    if raw.shape != shape:
        raise ValueError(f"{where}: 'values' has shape {list(raw.shape)}, expected "
                         f"{list(shape)}")
    flat = list(raw.flat)
    checks = {"bool": lambda v: isinstance(v, bool),
              "int64": lambda v: isinstance(v, int) and not isinstance(v, bool)
              and -2**63 <= v < 2**63,
              "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)}
    if element not in checks:
        raise ValueError(f"{where}: unknown element type {element!r}, expected one of "
                         f"{sorted(checks)}")
    bad = [v for v in flat if not checks[element](v)]
    if bad:
        expected = {"bool": "true/false", "int64": "integers", "float": "numbers"}[element]
        raise ValueError(f"{where}: 'values' holds {bad[0]!r}, expected {expected} for this "
                         f"{element} input")
    return Sample(np.array(flat, dtype=ELEMENT_TYPES[element]).reshape(shape), 1.0)


def draw(dist: Dist, rng: np.random.Generator, shape: tuple[int, ...], where: str) -> Sample:
    """Draw ``shape`` values of ``dist`` from ``rng`` (float64, before rounding to a dtype).

    normal ``loc + scale*z``; uniform on ``[low, high)``; offset ``ratio + z`` (std 1);
    tiny/huge ``magnitude(dtype) * z`` with ``|z| >= 1/8`` for tiny; decades ``z * 10**U``
    with ``U`` uniform on ``[low, high)`` and ``|z| >= 1/8``; constant ``value``
    everywhere (one draw ``z`` when no value is given); nan/inf ``z`` with ``count`` entries
    at distinct drawn positions replaced by NaN or ``sign * inf``. ``z`` is standard normal.
    """
    k = dist.kind
    if k in LITERAL_KINDS:
        return draw_literal(dist, "float", shape, where)
    if k == "normal":
        return Sample(dist.get("loc") + dist.get("scale") * rng.standard_normal(shape),
                      float(dist.get("scale")))
    if k == "uniform":
        low, high = dist.get("low"), dist.get("high")
        return Sample(rng.uniform(low, high, shape), float(high - low))
    if k == "offset":
        return Sample(dist.get("ratio") + rng.standard_normal(shape), 1.0)
    if k in ("tiny", "huge"):
        z = rng.standard_normal(shape)
        if k == "tiny":
            z = np.copysign(np.maximum(np.abs(z), TINY_FLOOR), z)
        return Sample(z, 1.0, TINY if k == "tiny" else HUGE)
    if k == "decades":
        # |z| is floored as for tiny so the exponent, not z's tail near 0, sets the smallest
        # magnitude: 10**low / 8 is what a catalog checks against the dtype's smallest normal.
        z = rng.standard_normal(shape)
        z = np.copysign(np.maximum(np.abs(z), TINY_FLOOR), z)
        exponent = rng.uniform(dist.get("low"), dist.get("high"), shape)
        # the tangent is drawn at the largest decade, the one that dominates the statistics
        return Sample(z * 10.0**exponent, float(10.0 ** dist.get("high")))
    if k == "constant":
        value = dist.get("value")
        value = float(rng.standard_normal()) if value is None else float(value)
        return Sample(np.full(shape, value), 1.0)
    z = rng.standard_normal(shape)
    count = int(dist.get("count"))
    if count > z.size:
        raise ValueError(f"{where}: count {count} is larger than the input's {z.size} elements")
    positions = rng.choice(z.size, size=count, replace=False)
    z.flat[positions] = math.nan if k == "nan" else dist.get("sign") * math.inf
    return Sample(z, 1.0)
