"""Case catalogs: spec/cases/<method>.toml, one named, seeded case per ``[[case]]`` table.

A catalog is data; this module reads and validates it against the reference module of its
method (primal names, hyperparameter names) and fills in the defaults. See spec/FORMAT.md.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from .sampling import Dist, parse_dist
from .storage import DTYPES, Traversable, default_cases_root, describe, reference_module

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

HyperValue = bool | int | float | str

STATE_INPUTS: Mapping[str, tuple[str, ...]] = {"batch_norm": ("running_mean", "running_var")}
"""Array inputs that are not differentiated (running statistics), passed by keyword."""

DEFAULT_DISTS: Mapping[str, Dist] = {
    "x": Dist("normal"),
    "weight": Dist("normal", (("loc", 1.0), ("scale", 0.25))),
    "bias": Dist("normal", (("scale", 0.5),)),
    "running_mean": Dist("normal"),
    "running_var": Dist("uniform", (("high", 2.0), ("low", 0.5))),
}
"""The distribution of each input when a case does not name one."""

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")
MAX_ELEMENTS = 1 << 16
"""Largest input a case may have; the vectors have a size budget (spec/FORMAT.md)."""

_CASE_KEYS = frozenset({"name", "seed", "shape", "hyper", "primals", "state", "inputs", "dtypes",
                        "expect_nonfinite", "description"})
_CATALOG_KEYS = frozenset({"method", "description", "case"})


@dataclass(frozen=True)
class CaseSpec:
    """One validated catalog case, with every default filled in."""

    method: str
    name: str
    seed: int
    shape: tuple[int, ...]
    """Shape of ``x``."""
    hyper: Mapping[str, HyperValue]
    primals: tuple[str, ...]
    """The method's differentiable inputs in call order (its ``PRIMALS``)."""
    present: tuple[str, ...]
    """The primals this case passes (``x`` always); the others are None."""
    state: tuple[str, ...]
    """Non-differentiated array inputs passed by keyword (running statistics)."""
    shapes: Mapping[str, tuple[int, ...]]
    """Shape of every input (present primals and state)."""
    dists: Mapping[str, Dist]
    """Distribution of every input."""
    dtypes: tuple[str, ...]
    expect_nonfinite: bool
    """Whether the case may expect NaN/Inf although every input is finite."""
    description: str
    source: str
    """The catalog file, for messages."""

    @property
    def inputs(self) -> tuple[str, ...]:
        """Input names in drawing order: present primals, then state."""
        return self.present + self.state


@dataclass(frozen=True)
class Catalog:
    method: str
    source: str
    description: str
    cases: tuple[CaseSpec, ...]


def _load_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{source}: invalid TOML ({exc})") from None


def hyper_names(module: ModuleType, method: str) -> tuple[frozenset[str], frozenset[str]]:
    """(all, required) keyword-only hyperparameters of ``module.forward``, state excluded."""
    return _hyper_names(module, method)


@functools.cache
def _hyper_names(module: ModuleType, method: str) -> tuple[frozenset[str], frozenset[str]]:
    # cached: inspect.signature costs more than the rest of validating a case
    params = inspect.signature(module.forward).parameters.values()
    kw = [p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    state = set(STATE_INPUTS.get(method, ()))
    names = frozenset(p.name for p in kw) - state
    required = frozenset(p.name for p in kw if p.default is inspect.Parameter.empty) - state
    return names, required


def _param_shape(method: str, shape: tuple[int, ...], hyper: Mapping[str, HyperValue],
                 where: str) -> tuple[int, ...]:
    """Shape of ``weight``/``bias`` (and running statistics) for ``x`` of ``shape``."""
    name = "axis" if method in ("layer_norm", "rms_norm") else "channel_axis"
    axis = hyper.get(name, 1)
    if isinstance(axis, bool) or not isinstance(axis, int) or not -len(shape) <= axis < len(shape):
        raise ValueError(f"{where}: hyperparameter {name!r}: got {axis!r}, expected an axis of "
                         f"a {len(shape)}-d input")
    a = axis % len(shape)
    return shape[a:] if name == "axis" else (shape[a],)


def _string_list(where: str, key: str, raw: object, allowed: Sequence[str]) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise ValueError(f"{where}: {key!r}: got {raw!r}, expected a list of names from "
                         f"{list(allowed)}")
    unknown = [v for v in raw if v not in allowed]
    if unknown or len(set(raw)) != len(raw):
        raise ValueError(f"{where}: {key!r}: got {raw!r}, expected distinct names from "
                         f"{list(allowed)}")
    return tuple(v for v in allowed if v in raw)


def _hyper(where: str, raw: object, module: ModuleType, method: str) -> dict[str, HyperValue]:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: 'hyper': got {raw!r}, expected a table")
    names, required = hyper_names(module, method)
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ValueError(f"{where}: unknown hyperparameter(s) {unknown} for {method}, expected "
                         f"names from {sorted(names)}")
    missing = sorted(required - set(raw))
    if missing:
        raise ValueError(f"{where}: missing required hyperparameter(s) {missing} for {method}")
    for key, value in raw.items():
        ok = isinstance(value, (bool, int, str)) or (
            isinstance(value, float) and math.isfinite(value))
        if not ok:
            raise ValueError(f"{where}: hyperparameter {key!r}: got {value!r}, expected a "
                             "boolean, an integer, a finite number or a string")
    return dict(raw)


def _case(raw: object, index: int, method: str, module: ModuleType, source: str) -> CaseSpec:
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: case #{index}: expected a [[case]] table")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(f"{source}: case #{index}: 'name': got {name!r}, expected a string "
                         f"matching {NAME_PATTERN.pattern}")
    where = f"{source}: case {name!r}"
    unknown = sorted(set(raw) - _CASE_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}, expected keys from "
                         f"{sorted(_CASE_KEYS)}")
    seed = raw.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"{where}: 'seed': got {seed!r}, expected an integer in [0, 2**63)")
    raw_shape = raw.get("shape")
    if not isinstance(raw_shape, list) or not raw_shape or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in raw_shape):
        raise ValueError(f"{where}: 'shape': got {raw_shape!r}, expected a non-empty list of "
                         "positive integers")
    shape = tuple(raw_shape)
    if math.prod(shape) > MAX_ELEMENTS:
        raise ValueError(f"{where}: 'shape': got {list(shape)} ({math.prod(shape)} elements), "
                         f"expected at most {MAX_ELEMENTS} elements")
    hyper = _hyper(where, raw.get("hyper", {}), module, method)
    primals: tuple[str, ...] = tuple(module.PRIMALS)
    present = _string_list(where, "primals", raw.get("primals", list(primals)), primals)
    if "x" not in present:
        raise ValueError(f"{where}: 'primals': got {list(present)}, expected a list with 'x'")
    state = _string_list(where, "state", raw.get("state", []), STATE_INPUTS.get(method, ()))
    shapes = {"x": shape}
    for extra in (*present[1:], *state):
        shapes[extra] = _param_shape(method, shape, hyper, where)
    raw_inputs = raw.get("inputs", {})
    if not isinstance(raw_inputs, dict):
        raise ValueError(f"{where}: 'inputs': got {raw_inputs!r}, expected a table")
    stray = sorted(set(raw_inputs) - set(shapes))
    if stray:
        raise ValueError(f"{where}: 'inputs' names {stray}, which the case does not pass; "
                         f"expected names from {sorted(shapes)}")
    dists = {n: parse_dist(f"{where}: inputs.{n}", raw_inputs[n]) if n in raw_inputs
             else DEFAULT_DISTS[n] for n in shapes}
    dtypes = _string_list(where, "dtypes", raw.get("dtypes", list(DTYPES)), DTYPES)
    if not dtypes:
        raise ValueError(f"{where}: 'dtypes': got [], expected at least one of {list(DTYPES)}")
    nonfinite = raw.get("expect_nonfinite", False)
    description = raw.get("description", "")
    if not isinstance(nonfinite, bool) or not isinstance(description, str):
        raise ValueError(f"{where}: 'expect_nonfinite' must be a boolean and 'description' "
                         f"a string, got {nonfinite!r} and {description!r}")
    return CaseSpec(method=method, name=name, seed=seed, shape=shape, hyper=hyper,
                    primals=primals, present=present, state=state, shapes=shapes, dists=dists,
                    dtypes=dtypes, expect_nonfinite=nonfinite, description=description,
                    source=source)


def parse_catalog(text: str, source: str, method: str | None = None) -> Catalog:
    """Parse catalog TOML ``text``; ``source`` names it in errors; ``method`` must match."""
    data = _load_toml(text, source)
    unknown = sorted(set(data) - _CATALOG_KEYS)
    if unknown:
        raise ValueError(f"{source}: unknown top-level key(s) {unknown}, expected keys from "
                         f"{sorted(_CATALOG_KEYS)}")
    declared = data.get("method")
    methods = reference_module().METHODS
    if not isinstance(declared, str) or declared not in methods:
        raise ValueError(f"{source}: 'method': got {declared!r}, expected one of "
                         f"{list(methods)}")
    if method is not None and declared != method:
        raise ValueError(f"{source}: 'method': got {declared!r}, expected {method!r} "
                         "(the file's name)")
    module = reference_module(declared)
    raw_cases = data.get("case", [])
    if not isinstance(raw_cases, list) or not raw_cases:
        raise ValueError(f"{source}: expected at least one [[case]] table")
    cases = tuple(_case(raw, i, declared, module, source) for i, raw in enumerate(raw_cases))
    seen: set[str] = set()
    for case in cases:
        if case.name in seen:
            raise ValueError(f"{source}: duplicate case name {case.name!r}; case names must be "
                             "unique within a catalog")
        seen.add(case.name)
    description = data.get("description", "")
    return Catalog(method=declared, source=source, description=str(description), cases=cases)


def catalog_methods(root: Traversable | None = None) -> tuple[str, ...]:
    """Methods with a catalog under ``root``, in ``normspec.reference.METHODS`` order.

    A ``.toml`` file whose name is not a method is an error, not silently ignored.
    """
    root = default_cases_root() if root is None else root
    methods: tuple[str, ...] = tuple(reference_module().METHODS)
    stems = sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))
    unknown = [s for s in stems if s not in methods]
    if unknown:
        raise ValueError(f"{describe(root)}: catalog(s) {[s + '.toml' for s in unknown]} name "
                         f"no method, expected names from {list(methods)}")
    return tuple(m for m in methods if m in stems)


def load_catalog(method: str, root: Traversable | Path | None = None) -> Catalog:
    """Read and validate the catalog of ``method`` (``<root>/<method>.toml``)."""
    methods = reference_module().METHODS
    if method not in methods:
        raise ValueError(f"argument 'method': got {method!r}, expected one of {list(methods)}")
    root = default_cases_root() if root is None else root
    entry = root.joinpath(f"{method}.toml")
    source = describe(root, f"{method}.toml")
    if not entry.is_file():
        raise ValueError(f"{source}: no catalog for method {method!r}")
    return parse_catalog(entry.read_text(encoding="utf-8"), source, method)
