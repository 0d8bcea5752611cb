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
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from .sampling import LITERAL_KINDS, Dist, literal_shape, parse_dist
from .storage import DTYPES, Traversable, default_cases_root, describe, reference_module

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

HyperValue = bool | int | float | str

COUNTER = "num_batches_tracked"
"""The step counter: state like the running statistics, an int64 0-d input (0 unless a case
gives ``inputs.num_batches_tracked = { dist = "values", values = N }``)."""


def state_inputs(module: ModuleType) -> tuple[str, ...]:
    """Float state a method takes by keyword and returns updated (its ``STATE``)."""
    return tuple(getattr(module, "STATE", ()))


def constant_inputs(module: ModuleType) -> Mapping[str, str]:
    """Integer and boolean inputs a method takes by keyword (its ``CONSTANTS``: name -> kind)."""
    return dict(getattr(module, "CONSTANTS", {}))


def takes_counter(module: ModuleType) -> bool:
    """Whether the method keeps a step counter next to its state."""
    params = inspect.signature(module.forward).parameters
    return bool(state_inputs(module)) and COUNTER in params


NOT_APPLICABLE_CHECKS: tuple[str, ...] = ("vjp", "jvp", "second_order")
"""The checks a method may declare not applicable (the forward pass always applies)."""


def not_applicable(module: ModuleType) -> dict[str, str]:
    """Checks the method's definition has no quantity for (its ``NOT_APPLICABLE``: check ->
    reason), e.g. the JVP of a method defined by its backward pass. Only these checks may be
    absent from a case's vectors; a run reports them as ``not_applicable`` with the reason."""
    raw = getattr(module, "NOT_APPLICABLE", {})
    name = getattr(module, "__name__", "?")
    if not isinstance(raw, Mapping):
        raise ValueError(f"{name}.NOT_APPLICABLE: got {type(raw).__name__}, expected a dict "
                         f"check -> reason")
    for check, reason in raw.items():
        if check not in NOT_APPLICABLE_CHECKS:
            raise ValueError(f"{name}.NOT_APPLICABLE: check {check!r}, expected names from "
                             f"{list(NOT_APPLICABLE_CHECKS)}")
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"{name}.NOT_APPLICABLE[{check!r}]: got {reason!r}, expected a "
                             f"non-empty reason")
    return {c: str(raw[c]).strip() for c in NOT_APPLICABLE_CHECKS if c in raw}


def keyword_inputs(module: ModuleType) -> frozenset[str]:
    """Keyword parameters of ``forward`` that are inputs (state, counter, constants), not
    hyperparameters."""
    names = set(state_inputs(module)) | set(constant_inputs(module))
    if takes_counter(module):
        names.add(COUNTER)
    return frozenset(names)

DEFAULT_DISTS: Mapping[str, Dist] = {
    "x": Dist("normal"),
    "weight": Dist("normal", (("loc", 1.0), ("scale", 0.25))),
    "bias": Dist("normal", (("scale", 0.5),)),
    "running_mean": Dist("normal"),
    "running_var": Dist("uniform", (("high", 2.0), ("low", 0.5))),
    COUNTER: Dist("values", (("values", 0),)),
}
"""The distribution of each input when a case does not name one."""

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")
MAX_ELEMENTS = 1 << 16
"""Largest input a case may have; the vectors have a size budget (spec/FORMAT.md)."""

_CASE_KEYS = frozenset({"name", "seed", "shape", "hyper", "primals", "state", "inputs", "dtypes",
                        "expect_nonfinite", "description", "step", "eval", "cotangent"})
_STEP_KEYS = frozenset({"shape", "inputs", "hyper"})
TRAINING = "training"
"""The hyperparameter a trajectory sets per step: true for its steps, false for evaluation."""


@dataclass(frozen=True)
class StepSpec:
    """One call of a trajectory: its batch ``x`` and the hyperparameters of that call."""

    label: str
    """``step1`` ... ``stepK``, or ``eval``; the prefix of the step's tensors and quantities."""
    shape: tuple[int, ...]
    dist: Dist
    hyper: Mapping[str, HyperValue]
    """Every hyperparameter of the call: the case's, the step's overrides, and ``training``."""

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
    """Non-differentiated state passed by keyword (running statistics, then the counter)."""
    shapes: Mapping[str, tuple[int, ...]]
    """Shape of every input (present primals, state and constants)."""
    dists: Mapping[str, Dist]
    """Distribution of every input."""
    dtypes: tuple[str, ...]
    expect_nonfinite: bool
    """Whether the case may expect NaN/Inf although every input is finite."""
    description: str
    source: str
    """The catalog file, for messages."""
    constants: tuple[str, ...] = ()
    """Integer and boolean inputs passed by keyword (masks, shard sizes)."""
    elements: Mapping[str, str] = field(default_factory=dict)
    """Kind of every input that is not a float: ``int64`` or ``bool``."""
    steps: tuple[StepSpec, ...] = ()
    """A trajectory's training steps, then its evaluation (empty: a single call)."""
    cotangent: Dist | None = None
    """The cotangent's distribution where the case gives one (a method defined by its backward
    pass needs zero, huge and tiny cotangents); None: standard normal."""

    @property
    def inputs(self) -> tuple[str, ...]:
        """Input names in drawing order: present primals, state, constants. A trajectory's
        batches are drawn after these, step by step, so ``x`` is not among them."""
        names = self.present + self.state + self.constants
        return tuple(n for n in names if n != "x") if self.steps else names

    def element(self, name: str) -> str:
        """``float``, ``int64`` or ``bool``."""
        return self.elements.get(name, "float")


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
    state = keyword_inputs(module)
    names = frozenset(p.name for p in kw) - state
    required = frozenset(p.name for p in kw if p.default is inspect.Parameter.empty) - state
    return names, required


def _input_shapes(module: ModuleType, method: str, shape: tuple[int, ...],
                  hyper: Mapping[str, HyperValue], names: Sequence[str], where: str
                  ) -> dict[str, tuple[int, ...]]:
    """Shapes of the inputs ``names`` (not ``x``) for an ``x`` of ``shape``.

    A method that defines ``input_shapes(shape, hyper)`` says them itself; otherwise they
    are the parameter shape of the core methods (weight, bias, running statistics).
    """
    hook = getattr(module, "input_shapes", None)
    if hook is None:
        return {n: () if n == COUNTER else _param_shape(method, shape, hyper, where)
                for n in names}
    try:
        given = hook(shape, hyper)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: the reference rejects shape {list(shape)} with these "
                         f"hyperparameters: {exc}") from None
    out = {n: tuple(given[n]) for n in names if n in given}
    if COUNTER in names:
        out[COUNTER] = ()
    return out


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


def _hyper(where: str, raw: object, module: ModuleType, method: str, *,
           partial: bool = False) -> dict[str, HyperValue]:
    """``raw`` checked against ``forward``'s keyword-only hyperparameters; ``partial`` leaves
    the required ones to be checked later (a trajectory sets ``training`` per step)."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: 'hyper': got {raw!r}, expected a table")
    names, required = hyper_names(module, method)
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ValueError(f"{where}: unknown hyperparameter(s) {unknown} for {method}, expected "
                         f"names from {sorted(names)}")
    missing = sorted(required - set(raw) - ({TRAINING} if partial else set()))
    if missing:
        raise ValueError(f"{where}: missing required hyperparameter(s) {missing} for {method}")
    for key, value in raw.items():
        ok = isinstance(value, (bool, int, str)) or (
            isinstance(value, float) and math.isfinite(value))
        if not ok:
            raise ValueError(f"{where}: hyperparameter {key!r}: got {value!r}, expected a "
                             "boolean, an integer, a finite number or a string")
    return dict(raw)


def _shape(where: str, raw_shape: object) -> tuple[int, ...]:
    if not isinstance(raw_shape, list) or not raw_shape or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in raw_shape):
        raise ValueError(f"{where}: 'shape': got {raw_shape!r}, expected a non-empty list of "
                         "positive integers")
    shape = tuple(raw_shape)
    if math.prod(shape) > MAX_ELEMENTS:
        raise ValueError(f"{where}: 'shape': got {list(shape)} ({math.prod(shape)} elements), "
                         f"expected at most {MAX_ELEMENTS} elements")
    return shape


def _table(where: str, key: str, raw: object) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: {key!r}: got {raw!r}, expected a table")
    return raw


def _steps(where: str, raw: Mapping[str, Any], module: ModuleType, method: str,
           shape: tuple[int, ...], x_dist: Dist, hyper: Mapping[str, HyperValue],
           shapes: Mapping[str, tuple[int, ...]]) -> tuple[StepSpec, ...]:
    """A trajectory's steps (``[[case.step]]``) and evaluation (``[case.eval]``)."""
    if "step" not in raw:
        if "eval" in raw:
            raise ValueError(f"{where}: 'eval' without [[case.step]] tables; an evaluation "
                             "batch belongs to a trajectory")
        return ()
    if not state_inputs(module) or TRAINING not in inspect.signature(module.forward).parameters:
        raise ValueError(f"{where}: [[case.step]]: {method} keeps no running state, so it has "
                         "no trajectory")
    if TRAINING in hyper:
        raise ValueError(f"{where}: 'hyper' sets {TRAINING!r}; a trajectory sets it per step "
                         "(true for its steps, false for its evaluation)")
    raw_steps = raw["step"]
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ValueError(f"{where}: 'step': expected one or more [[case.step]] tables")
    tables = [(f"step{i + 1}", t, True) for i, t in enumerate(raw_steps)]
    tables.append(("eval", raw.get("eval", {}), False))
    names, _ = hyper_names(module, method)
    out = []
    for label, table, training in tables:
        here = f"{where}: {label}"
        table = _table(here, label, table)
        unknown = sorted(set(table) - _STEP_KEYS)
        if unknown:
            raise ValueError(f"{here}: unknown key(s) {unknown}, expected keys from "
                             f"{sorted(_STEP_KEYS)}")
        step_shape = _shape(here, table["shape"]) if "shape" in table else shape
        fits = _input_shapes(module, method, step_shape, hyper, list(shapes), here)
        moved = sorted(n for n, s in shapes.items() if n in fits and fits[n] != s)
        if moved:
            raise ValueError(f"{here}: 'shape' {list(step_shape)} changes the shape of {moved}, "
                             "which every step shares; only the batch may change")
        inputs = _table(here, "inputs", table.get("inputs", {}))
        if set(inputs) - {"x"}:
            raise ValueError(f"{here}: 'inputs' names {sorted(set(inputs) - {'x'})}; a step "
                             "draws only its batch 'x'")
        dist = parse_dist(f"{here}: inputs.x", inputs["x"]) if "x" in inputs else x_dist
        overrides = _table(here, "hyper", table.get("hyper", {}))
        bad = sorted(set(overrides) - names) + sorted(set(overrides) & {TRAINING})
        if bad:
            raise ValueError(f"{here}: 'hyper' overrides {bad}, expected hyperparameters of "
                             f"{method} other than {TRAINING!r}: {sorted(names - {TRAINING})}")
        merged = {**_hyper(here, {**hyper, **overrides, TRAINING: training}, module, method)}
        out.append(StepSpec(label=label, shape=step_shape, dist=dist, hyper=merged))
    return tuple(out)


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
    shape = _shape(where, raw.get("shape"))
    raw_hyper = raw.get("hyper", {})
    if isinstance(raw_hyper, dict) and set(raw_hyper) & keyword_inputs(module):
        inputs_named = sorted(set(raw_hyper) & keyword_inputs(module))
        raise ValueError(f"{where}: 'hyper' sets {inputs_named}, which are inputs of {method}, "
                         "not hyperparameters; give them under 'inputs' (e.g. "
                         "inputs.num_batches_tracked = { dist = \"values\", values = 3 })")
    hyper = _hyper(where, raw_hyper, module, method, partial="step" in raw or "eval" in raw)
    primals: tuple[str, ...] = tuple(module.PRIMALS)
    present = _string_list(where, "primals", raw.get("primals", list(primals)), primals)
    if "x" not in present:
        raise ValueError(f"{where}: 'primals': got {list(present)}, expected a list with 'x'")
    allowed_state = state_inputs(module)
    state = _string_list(where, "state", raw.get("state", []), allowed_state)
    if state and takes_counter(module):
        state = (*state, COUNTER)
    kinds = constant_inputs(module)
    raw_inputs = _table(where, "inputs", raw.get("inputs", {}))
    constants = tuple(n for n in kinds if n in raw_inputs)
    if COUNTER in raw_inputs and COUNTER not in state:
        raise ValueError(f"{where}: 'inputs' gives {COUNTER!r} but the case tracks no running "
                         f"state (add 'state = {list(allowed_state)}')")
    stray = sorted(set(raw_inputs) - {*present, *state, *constants})
    if stray:
        raise ValueError(f"{where}: 'inputs' names {stray}, which the case does not pass; "
                         f"expected names from {sorted({*present, *state, *kinds})}")
    elements = {n: kinds[n] for n in constants}
    if COUNTER in state:
        elements[COUNTER] = "int64"
    dists = {n: parse_dist(f"{where}: inputs.{n}", raw_inputs[n]) if n in raw_inputs
             else DEFAULT_DISTS[n] for n in (*present, *state, *constants)}
    for n, kind in elements.items():
        if dists[n].kind not in LITERAL_KINDS:
            raise ValueError(f"{where}: inputs.{n}: got distribution {dists[n].kind!r}, "
                             f"expected one of {sorted(LITERAL_KINDS)} for this {kind} input")
    shapes = {"x": shape, **_input_shapes(module, method, shape, hyper,
                                          [*present[1:], *state, *constants], where)}
    for n in constants:
        given = literal_shape(dists[n], f"{where}: inputs.{n}")
        if given is not None and n in shapes and shapes[n] != given:
            raise ValueError(f"{where}: inputs.{n}: the literal has shape {list(given)}, "
                             f"expected {list(shapes[n])}")
        if n not in shapes:
            if given is None:
                raise ValueError(f"{where}: inputs.{n}: its shape does not follow from x's; "
                                 "give it as a 'values' literal")
            shapes[n] = given
    if COUNTER in state:
        counter_shape = literal_shape(dists[COUNTER], f"{where}: inputs.{COUNTER}")
        if counter_shape != ():
            raise ValueError(f"{where}: inputs.{COUNTER}: expected one integer, got shape "
                             f"{list(counter_shape or [])}")
    steps = _steps(where, raw, module, method, shape, dists["x"], hyper,
                   {n: s for n, s in shapes.items() if n != "x"})
    if steps:
        _, required = hyper_names(module, method)
        missing = sorted(required - set(steps[0].hyper))
        if missing:
            raise ValueError(f"{where}: missing required hyperparameter(s) {missing} for "
                             f"{method}")
    dtypes = _string_list(where, "dtypes", raw.get("dtypes", list(DTYPES)), DTYPES)
    if not dtypes:
        raise ValueError(f"{where}: 'dtypes': got [], expected at least one of {list(DTYPES)}")
    nonfinite = raw.get("expect_nonfinite", False)
    description = raw.get("description", "")
    if not isinstance(nonfinite, bool) or not isinstance(description, str):
        raise ValueError(f"{where}: 'expect_nonfinite' must be a boolean and 'description' "
                         f"a string, got {nonfinite!r} and {description!r}")
    cotangent = None
    if "cotangent" in raw:
        if steps:
            raise ValueError(f"{where}: 'cotangent': a trajectory has no cotangent")
        cotangent = parse_dist(f"{where}: cotangent", raw["cotangent"])
        if cotangent.kind in LITERAL_KINDS:
            raise ValueError(f"{where}: 'cotangent': got distribution {cotangent.kind!r}, "
                             "expected a float distribution")
    return CaseSpec(method=method, name=name, seed=seed, shape=shape, hyper=hyper,
                    primals=primals, present=present, state=state, shapes=shapes, dists=dists,
                    dtypes=dtypes, expect_nonfinite=nonfinite, description=description,
                    source=source, constants=constants, elements=elements, steps=steps,
                    cotangent=cotangent)


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
