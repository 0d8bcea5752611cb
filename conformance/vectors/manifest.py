"""Reading the golden vectors: the manifest (schema-validated) and typed case records.

>>> manifest = load_manifest()                                  # doctest: +SKIP
>>> case = next(manifest.cases("layer_norm", "float32"))         # doctest: +SKIP
>>> case.args, case.hyper, case.expected["forward/y"]            # doctest: +SKIP

Every file is checked against the sha256 in the manifest before it is used, and every error
names the file it is about (:class:`~.storage.VectorFormatError`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from .catalog import TRAINING, hyper_names
from .storage import (
    FORMAT_VERSION,
    INTEGER_CODES,
    MANIFEST_NAME,
    SCHEMA_NAME,
    Traversable,
    VectorFormatError,
    decode,
    default_vectors_root,
    describe,
    reference_module,
    sha256,
    spec_root,
    storage_code,
)

FloatArray = npt.NDArray[np.float64]


def dumps(manifest: Mapping[str, Any]) -> str:
    """The manifest's canonical JSON text (sorted keys, strict JSON: no NaN or Infinity)."""
    return json.dumps(manifest, indent=1, sort_keys=True, allow_nan=False) + "\n"


def load_schema() -> dict[str, Any]:
    """The JSON Schema of the manifest, from the installed spec/."""
    schema: dict[str, Any] = json.loads(
        spec_root().joinpath(SCHEMA_NAME).read_text(encoding="utf-8"))
    return schema


def _inline_refs(node: Any, defs: Mapping[str, Any]) -> Any:
    """The schema with its local ``{"$ref": "#/$defs/..."}`` replaced by the definitions.

    The schema has no recursion; inlining halves jsonschema's validation time, which
    otherwise spends it resolving references.
    """
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and len(node) == 1 and ref.startswith("#/$defs/"):
            return _inline_refs(defs[ref.rsplit("/", 1)[1]], defs)
        return {k: _inline_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


@functools.lru_cache(maxsize=1)
def _validator() -> Any:
    from jsonschema import (  # type: ignore[import-untyped, unused-ignore]
        Draft202012Validator,
    )

    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(_inline_refs(schema, schema.get("$defs", {})))


_VALID_DIGESTS: set[str] = set()
"""sha256 of manifest texts that passed the schema in this process (validation takes
seconds on the full manifest, and a run or a check loads the same text more than once)."""


def validate(data: object, source: str, digest: str | None = None) -> None:
    """Raise :class:`VectorFormatError` naming ``source`` unless ``data`` fits the schema.

    Beyond the schema, each method's dtype entries must cover its cases exactly once and each
    file must sit at ``<method>/<dtype>.safetensors``. ``digest`` (the sha256 of the text
    ``data`` was parsed from) lets a text that already passed skip the schema pass.
    """
    from jsonschema.exceptions import (  # type: ignore[import-untyped, unused-ignore]
        best_match,
    )

    if isinstance(data, dict) and data.get("format_version") != FORMAT_VERSION and isinstance(
            data.get("format_version"), int):
        raise VectorFormatError(
            f"{source}: format version {data['format_version']}, but this normspec reads format "
            f"version {FORMAT_VERSION} (spec/FORMAT.md); rebuild the vectors with `normspec "
            f"vectors build`, or read them with the normspec release that wrote them"
            + (" (version 2 moved num_batches_tracked from the hyperparameters to the state "
               "inputs and added integer and boolean inputs and trajectories)"
               if data["format_version"] == 1 else ""))
    if isinstance(data, dict) and data.get("methods") == {}:
        # Said before the schema pass: an empty set would otherwise surface much later as a
        # run that "matches no test", which points at the selection rather than the file.
        raise VectorFormatError(f"{source}: defines no methods, expected at least one (build "
                                "the vectors with `normspec vectors build`)")
    if digest is None or digest not in _VALID_DIGESTS:
        error = best_match(_validator().iter_errors(data))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
            raise VectorFormatError(f"{source}: does not match {SCHEMA_NAME} at {where}: "
                                    f"{error.message}")
    assert isinstance(data, dict)
    methods = reference_module().METHODS
    for method, entry in data["methods"].items():
        if method not in methods:
            raise VectorFormatError(f"{source}: methods/{method}: not a method of the "
                                    f"reference, expected names from {list(methods)}")
        _check_hyper(source, method, entry["cases"])
        _check_shape_of_cases(source, method, entry["cases"])
        _check_checks(source, method, entry)
        names = [c["name"] for c in entry["cases"]]
        if len(set(names)) != len(names):
            raise VectorFormatError(f"{source}: methods/{method}: duplicate case names")
        for dtype, d in entry["dtypes"].items():
            if d["file"] != f"{method}/{dtype}.safetensors":
                raise VectorFormatError(f"{source}: methods/{method}/dtypes/{dtype}/file: got "
                                        f"{d['file']!r}, expected '{method}/{dtype}.safetensors'")
            covered = [r["name"] for r in d["cases"]] + [s["name"] for s in d["skipped"]]
            if sorted(covered) != sorted(names):
                raise VectorFormatError(
                    f"{source}: methods/{method}/dtypes/{dtype}: cases and skipped list "
                    f"{sorted(covered)}, expected each of {sorted(names)} exactly once")
    if digest is not None:
        _VALID_DIGESTS.add(digest)


_DIFFERENTIATED = ("forward", "vjp", "jvp", "second_order")


def _check_checks(source: str, method: str, entry: Mapping[str, Any]) -> None:
    """Each case that is not a trajectory holds every check of :data:`_DIFFERENTIATED`
    except those the method declares not applicable, and none of those: a check is never
    silently absent, and one declared not applicable is never also compared."""
    declared = entry.get("not_applicable", {})
    for case in entry["cases"]:
        if "trajectory" in case:
            continue  # a trajectory holds forward (and state) quantities only (FORMAT.md 2.2)
        heads = {q.split("/", 1)[0] for q in case["quantities"]}
        bad = sorted(heads & set(declared))
        if bad:
            raise VectorFormatError(
                f"{source}: methods/{method}: case {case['name']!r} holds {bad[0]} quantities, "
                f"but the method declares {bad[0]} not applicable ({declared[bad[0]]})")
        missing = [c for c in _DIFFERENTIATED if c not in heads and c not in declared]
        if missing:
            raise VectorFormatError(
                f"{source}: methods/{method}: case {case['name']!r} has no {missing[0]} "
                f"quantity, and the method does not declare {missing[0]} not applicable "
                f"(NOT_APPLICABLE in its reference module)")


def _check_hyper(source: str, method: str, cases: Sequence[Mapping[str, Any]]) -> None:
    """Each case's hyperparameters must be keyword-only parameters of the method's ``forward``.

    A misspelt key would otherwise reach an adapter, which may ignore it and test a default.
    """
    accepted, required = hyper_names(reference_module(method), method)
    for i, case in enumerate(cases):
        where = f"{source}: methods/{method}/cases[{i}] ({case['name']!r})"
        steps = case.get("trajectory", [])
        for hyper in (case["hyper"], *(s["hyper"] for s in steps)):
            unknown = sorted(set(hyper) - accepted)
            if unknown:
                raise VectorFormatError(f"{where}: unknown hyperparameter(s) {unknown} for "
                                        f"{method}, expected names from {sorted(accepted)}")
        given = set(case["hyper"]) | ({TRAINING} if steps else set())
        missing = sorted(required - given)
        if missing:
            raise VectorFormatError(f"{where}: missing required hyperparameter(s) {missing} "
                                    f"for {method}")


def _check_shape_of_cases(source: str, method: str, cases: Sequence[Mapping[str, Any]]) -> None:
    """What the schema cannot say: a single call has an ``x`` and a ``y``; a trajectory has
    its steps in order, ending with ``eval``, and its batches are not among the inputs."""
    for i, case in enumerate(cases):
        where = f"{source}: methods/{method}/cases[{i}] ({case['name']!r})"
        steps = case.get("trajectory")
        if steps is None:
            if "x" not in case["inputs"] or "forward/y" not in case["quantities"]:
                raise VectorFormatError(f"{where}: expected an input 'x' and a quantity "
                                        "'forward/y' (a single call)")
            continue
        labels = [s["label"] for s in steps]
        want = [f"step{k + 1}" for k in range(len(steps) - 1)] + ["eval"]
        if labels != want:
            raise VectorFormatError(f"{where}: trajectory labels {labels}, expected {want}")
        if "x" in case["inputs"] or case["tangents"]:
            raise VectorFormatError(f"{where}: a trajectory keeps its batches in its steps and "
                                    "has no tangents")
        missing = [f"forward/{label}/y" for label in labels
                   if f"forward/{label}/y" not in case["quantities"]]
        if missing:
            raise VectorFormatError(f"{where}: quantities lack {missing}")


@dataclass(frozen=True)
class VectorStep:
    """One call of a trajectory: its batch, its hyperparameters, the reference's results.

    ``state_in`` is the state the reference entered this call with (the initial state for
    ``step1``); the runner instead feeds the adapter the state the adapter itself returned.
    """

    label: str
    x: FloatArray
    hyper: Mapping[str, Any]
    expected: Mapping[str, FloatArray]
    """The reference's forward results, keyed like the reference (``y``, ``running_mean``)."""
    tolerance: Mapping[str, str]
    """Same keys -> tolerance class."""
    state_in: Mapping[str, npt.NDArray[Any]]


@dataclass(frozen=True)
class VectorCase:
    """One golden-vector case in one dtype; every array is float64.

    Inputs, cotangent and tangents hold exactly the values stored in the dtype under test
    (converted to float64 without rounding); expected quantities are the float64 reference.
    """

    method: str
    dtype: str
    name: str
    seed: int
    description: str
    hyper: Mapping[str, Any]
    """Hyperparameters, keyword arguments of the reference (JSON values)."""
    primals: tuple[str, ...]
    """The method's differentiable inputs in call order."""
    present: tuple[str, ...]
    """The primals this case passes; the others are None."""
    inputs: Mapping[str, npt.NDArray[Any]]
    """Present primals, state (running statistics, the int64 step counter) and constants
    (int64 and bool arrays) by name; a trajectory's batches are in its steps."""
    cotangent: FloatArray
    tangent: Mapping[str, FloatArray]
    """One tangent per present primal; the JVP and second order use all of them together."""
    expected: Mapping[str, FloatArray]
    """Quantity name (``forward/y``, ``vjp/x``, ``jvp``, ``second_order/x``...) -> value."""
    tolerance: Mapping[str, str]
    """Quantity name -> tolerance class."""
    nonfinite: bool
    """Whether some expected value is NaN or Inf."""
    beyond_dtype_range: tuple[str, ...]
    """Quantities with finite values outside the dtype's normal range (|v| > max or
    0 < |v| < smallest normal): the dtype cannot hold them to full relative precision."""
    scales: Mapping[str, float]
    """Scale of each input's distribution in this dtype (its tangent has this scale)."""
    constants: tuple[str, ...] = ()
    """Integer and boolean inputs (masks, shard sizes), passed by keyword."""
    trajectory: tuple[VectorStep, ...] = ()
    """A trajectory's training steps then its evaluation (empty: a single call)."""
    carried_budgets: float = 1.0
    """In a :meth:`step_view`: how many single-call budgets of rounding error the adapter's
    state can carry into this call (see :func:`carried_budgets`); 1 outside trajectories."""
    state_scale: Mapping[str, float] = field(default_factory=dict)
    """In a :meth:`step_view`: the largest finite magnitude of each state quantity of the
    reference so far (entering state and this call's update included)."""

    @property
    def args(self) -> tuple[FloatArray | None, ...]:
        """Positional primals for a reference-style call (None where absent)."""
        return tuple(self.inputs.get(p) if p in self.present else None for p in self.primals)

    @property
    def state(self) -> dict[str, npt.NDArray[Any]]:
        """Every input passed by keyword: state and constants."""
        return {k: v for k, v in self.inputs.items() if k not in self.present}

    def step_view(self, step: VectorStep) -> VectorCase:
        """This case as the single call ``step`` makes, with the state the reference entered
        it with: what the tolerance model reads to size the budgets of that call."""
        inputs = {**self.inputs, **step.state_in, "x": step.x}
        position = next(i for i, s in enumerate(self.trajectory) if s.label == step.label) + 1
        scale: dict[str, float] = {}
        for earlier in self.trajectory[:position]:
            for name, value in (*earlier.state_in.items(), *earlier.expected.items()):
                if name in earlier.state_in and value.dtype == np.float64:
                    finite = np.abs(value[np.isfinite(value)])
                    top = float(finite.max()) if finite.size else 0.0
                    scale[name] = max(scale.get(name, 0.0), top)
        return replace(self, hyper=step.hyper, inputs=_frozen(inputs),
                       carried_budgets=carried_budgets(self.trajectory[:position]),
                       state_scale=_frozen(scale),
                       cotangent=np.zeros_like(step.x), tangent=_frozen({}),
                       expected=_frozen({f"forward/{k}": v for k, v in step.expected.items()}),
                       tolerance=_frozen({f"forward/{k}": c for k, c in step.tolerance.items()}),
                       trajectory=())

    def _check(self, check: str) -> dict[str, FloatArray]:
        prefix = check + "/"
        return {q[len(prefix):]: v for q, v in self.expected.items() if q.startswith(prefix)}

    @property
    def forward(self) -> dict[str, FloatArray]:
        """Expected ``y``, statistics and updated state, keyed like the reference's forward."""
        return self._check("forward")

    @property
    def vjp(self) -> dict[str, FloatArray]:
        return self._check("vjp")

    @property
    def jvp(self) -> FloatArray:
        return self.expected["jvp"]

    @property
    def second_order(self) -> dict[str, FloatArray]:
        return self._check("second_order")

    @property
    def by_check(self) -> dict[str, dict[str, FloatArray]]:
        """Expected values grouped by check, keyed like the reference's outputs.

        ``{"forward": {"y", stats...}, "vjp": {...}, "jvp": {"y": ...},
        "second_order": {...}}``; the JVP is the derivative of ``y``, hence its key.
        """
        jvp = {"y": self.expected["jvp"]} if "jvp" in self.expected else {}
        return {"forward": self.forward, "vjp": self.vjp, "jvp": jvp,
                "second_order": self.second_order}

    @property
    def id(self) -> str:
        """A stable readable id, ``method[case]-dtype``."""
        return f"{self.method}[{self.name}]-{self.dtype}"


def _frozen(d: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(d))


@dataclass
class Manifest:
    """A validated manifest and the directory its files live in."""

    data: Mapping[str, Any]
    root: Traversable
    source: str
    digest: str = ""
    """sha256 of the manifest's text: it identifies the vector set (reports record it)."""
    _files: dict[tuple[str, str], Mapping[str, npt.NDArray[Any]]] = field(
        default_factory=dict, repr=False)

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self.data["methods"])

    def _method(self, method: str) -> Mapping[str, Any]:
        if method not in self.data["methods"]:
            raise ValueError(f"argument 'method': got {method!r}, expected one of "
                             f"{list(self.methods)} (the methods in {self.source})")
        entry: Mapping[str, Any] = self.data["methods"][method]
        return entry

    def _dtype(self, method: str, dtype: str) -> Mapping[str, Any]:
        entries = self._method(method)["dtypes"]
        if dtype not in entries:
            raise ValueError(f"argument 'dtype': got {dtype!r}, expected one of "
                             f"{list(entries)} (the dtypes of {method} in {self.source})")
        entry: Mapping[str, Any] = entries[dtype]
        return entry

    def dtypes(self, method: str) -> tuple[str, ...]:
        return tuple(self._method(method)["dtypes"])

    def case_names(self, method: str, dtype: str) -> tuple[str, ...]:
        """Cases with vectors in ``dtype``, in catalog order."""
        return tuple(r["name"] for r in self._dtype(method, dtype)["cases"])

    def not_applicable(self, method: str) -> dict[str, str]:
        """Checks ``method`` declares not applicable: check -> reason (empty for most)."""
        return dict(self._method(method).get("not_applicable", {}))

    def skipped(self, method: str, dtype: str) -> tuple[tuple[str, str], ...]:
        """``(case, reason)`` for each case without vectors in ``dtype``."""
        return tuple((s["name"], s["reason"]) for s in self._dtype(method, dtype)["skipped"])

    def file_source(self, method: str, dtype: str) -> str:
        return describe(self.root, *self._dtype(method, dtype)["file"].split("/"))

    def tensors(self, method: str, dtype: str) -> Mapping[str, npt.NDArray[Any]]:
        """All tensors of one file, after checking its sha256 against the manifest."""
        key = (method, dtype)
        if key not in self._files:
            entry = self._dtype(method, dtype)
            source = self.file_source(method, dtype)
            resource = self.root.joinpath(*entry["file"].split("/"))
            try:
                data = resource.read_bytes()
            except OSError as exc:
                raise VectorFormatError(f"{source}: cannot be read ({exc.strerror or exc})"
                                        ) from None
            digest = sha256(data)
            if digest != entry["sha256"]:
                raise VectorFormatError(
                    f"{source}: sha256 {digest} does not match {entry['sha256']} recorded in "
                    f"{self.source}; the file was modified or corrupted (restore it, or "
                    "regenerate all vectors with `normspec vectors build`)")
            self._files[key] = _frozen(decode(data, source))
        return self._files[key]

    def cases(self, method: str, dtype: str, names: Sequence[str] | None = None
              ) -> Iterator[VectorCase]:
        """The cases of ``method`` in ``dtype`` (all, or ``names`` in that order)."""
        available = self.case_names(method, dtype)
        wanted = available if names is None else tuple(names)
        unknown = [n for n in wanted if n not in available]
        if unknown:
            raise ValueError(f"argument 'names': got {unknown}, expected cases of {method} in "
                             f"{dtype}: {list(available)}")
        for name in wanted:
            yield self.case(method, dtype, name)

    def case(self, method: str, dtype: str, name: str) -> VectorCase:
        entry = self._dtype(method, dtype)
        spec = next((c for c in self._method(method)["cases"] if c["name"] == name), None)
        record = next((r for r in entry["cases"] if r["name"] == name), None)
        if spec is None or record is None:
            raise ValueError(f"argument 'name': got {name!r}, expected a case of {method} in "
                             f"{dtype}: {list(self.case_names(method, dtype))}")
        tensors = self.tensors(method, dtype)
        source = self.file_source(method, dtype)

        def get(suffix: str, code: str, shape: Sequence[int] | None = None
                ) -> npt.NDArray[Any]:
            tname = f"{name}/{suffix}"
            if tname not in tensors:
                raise VectorFormatError(f"{source}: case {name!r}: tensor {tname!r} is missing")
            arr = tensors[tname]
            if storage_code(arr) != code or (shape is not None and list(arr.shape) != list(shape)):
                raise VectorFormatError(
                    f"{source}: case {name!r}: tensor {tname!r} is {storage_code(arr)} "
                    f"{list(arr.shape)}, expected {code} {list(shape) if shape else '(any shape)'}")
            if code in INTEGER_CODES.values():
                return np.array(arr)
            return np.array(arr, dtype=np.float64)

        storage = entry["storage"]
        inputs = {n: get(f"inputs/{n}", INTEGER_CODES.get(i["element"], storage), i["shape"])
                  for n, i in spec["inputs"].items()}
        expected = {q: get(q, "F64") for q in spec["quantities"]}
        steps = self._steps(spec, inputs, expected, lambda label, shape: get(
            f"{label}/x", storage, shape))
        x_shape = spec["inputs"]["x"]["shape"] if not steps else [0]
        return VectorCase(
            method=method, dtype=dtype, name=name, seed=spec["seed"],
            description=spec["description"], hyper=_frozen(spec["hyper"]),
            primals=tuple(self._method(method)["primals"]), present=tuple(spec["present"]),
            inputs=_frozen(inputs),
            cotangent=np.zeros(0) if steps else get(
                "cotangent", storage,
                expected["forward/y"].shape if "forward/y" in expected else x_shape),
            tangent=_frozen({n: get(f"tangent/{n}", storage, spec["inputs"][n]["shape"])
                             for n in spec["tangents"]}),
            expected=_frozen(expected),
            tolerance=_frozen(spec["quantities"]), nonfinite=record["nonfinite"],
            beyond_dtype_range=tuple(record["beyond_dtype_range"]),
            scales=_frozen(record["scales"]), constants=tuple(spec["constants"]),
            trajectory=steps)

    @staticmethod
    def _steps(spec: Mapping[str, Any], inputs: Mapping[str, npt.NDArray[Any]],
               expected: Mapping[str, FloatArray],
               batch: Callable[[str, Sequence[int]], npt.NDArray[Any]]
               ) -> tuple[VectorStep, ...]:
        state = {n: inputs[n] for n in spec["state"]}
        out = []
        for step in spec.get("trajectory", []):
            label = step["label"]
            prefix = f"forward/{label}/"
            mine = {q[len(prefix):]: v for q, v in expected.items() if q.startswith(prefix)}
            classes = {q[len(prefix):]: c for q, c in spec["quantities"].items()
                       if q.startswith(prefix)}
            out.append(VectorStep(label=label, x=batch(label, step["shape"]),
                                  hyper=_frozen(step["hyper"]), expected=_frozen(mine),
                                  tolerance=_frozen(classes), state_in=_frozen(state)))
            if step["hyper"].get(TRAINING, False):
                state = {n: _as_input(mine[n], inputs[n]) for n in state}
        return tuple(out)


def _update_weight(step: VectorStep) -> float:
    """The weight ``f`` of the new batch in a training step's state update (0 if unknown)."""
    weight = step.hyper.get("batch_stat_weight")
    if weight == "cumulative":
        counter = step.state_in.get("num_batches_tracked")
        return 1.0 / (int(counter) + 1) if counter is not None else 0.0
    return float(weight) if isinstance(weight, (int, float)) else 0.0


def carried_budgets(steps: Sequence[VectorStep]) -> float:
    """``1 + F`` for the last of ``steps``: its own rounding plus what the state carries in.

    The state error after training step k obeys ``E_k = (1 - f_k) E_(k-1) + e_k`` with ``e_k``
    at most one call's budget, so ``E_k <= F_k`` budgets with ``F_k = 1 + (1 - f_k) F_(k-1)``
    (``F_0 = 0``): at most k budgets, fewer when updates forget (``f = 1`` keeps none, the
    cumulative average keeps ``(k + 1) / 2``). A call depends on the state it enters with,
    ``F`` of the steps before it, and adds its own rounding.
    """
    carried = 0.0
    for step in steps[:-1]:
        if step.hyper.get("training", False):
            carried = 1.0 + (1.0 - _update_weight(step)) * carried
    return 1.0 + carried


def _as_input(value: FloatArray, like: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """A returned state value as the input of the next call (the counter back to int64)."""
    return np.array(value, dtype=like.dtype) if like.dtype == np.int64 else value


def load_manifest(root: Traversable | Path | str | None = None) -> Manifest:
    """Load and validate ``<root>/manifest.json`` (default: the installed spec/vectors)."""
    base: Traversable = default_vectors_root() if root is None else (
        Path(root) if isinstance(root, str) else root)
    source = describe(base, MANIFEST_NAME)
    resource = base.joinpath(MANIFEST_NAME)
    if not resource.is_file():
        raise VectorFormatError(f"{source}: not found (build the vectors with "
                                "`normspec vectors build`)")
    try:
        raw = resource.read_bytes()
    except OSError as exc:
        raise VectorFormatError(f"{source}: cannot be read ({exc.strerror or exc})") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VectorFormatError(f"{source}: not valid JSON ({exc})") from None
    digest = sha256(raw)
    validate(data, source, digest)
    return Manifest(data=data, root=base, source=source, digest=digest)


def iter_cases(method: str, dtype: str, root: Traversable | Path | str | None = None
               ) -> Iterator[VectorCase]:
    """Shortcut for ``load_manifest(root).cases(method, dtype)``."""
    return load_manifest(root).cases(method, dtype)
