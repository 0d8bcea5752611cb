"""Golden vectors from the catalogs: draw, round to each dtype, evaluate the float64 reference.

For every case and dtype: the inputs, the cotangent and the tangents are drawn in float64 from
``np.random.default_rng(seed)``, rounded to the dtype under test, and the reference's forward,
VJP, JVP and second order are computed *from the rounded values*. Nothing here runs at import
time; :func:`build` is called by ``normspec vectors build`` and ``check`` only.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import numpy.typing as npt

from .catalog import CaseSpec, Catalog, catalog_methods, load_catalog, not_applicable
from .sampling import HUGE, LITERAL_KINDS, NONFINITE_KINDS, TINY, Sample, draw, draw_literal
from .storage import (
    DTYPES,
    FORMAT_VERSION,
    MANIFEST_NAME,
    STORAGE_CODE,
    Traversable,
    default_cases_root,
    describe,
    encode,
    numpy_dtype,
    reference_module,
    round_to,
    sha256,
)

TOLERANCE_CLASSES: tuple[str, ...] = (
    "output", "statistic", "state", "input_grad", "param_grad", "jvp", "second_order",
)
"""Each expected quantity belongs to one class; the tolerance table is keyed by
(method, dtype, class). See spec/FORMAT.md."""
STATE_OUTPUTS = frozenset({"running_mean", "running_var", "num_batches_tracked"})

FloatArray = npt.NDArray[np.float64]


def tolerance_class(quantity: str) -> str:
    """The tolerance class of a quantity name such as ``forward/y``, ``vjp/weight`` or, in a
    trajectory, ``forward/step3/running_var``."""
    check, _, key = quantity.partition("/")
    key = key.rsplit("/", 1)[-1]
    if check == "forward":
        return "output" if key == "y" else "state" if key in STATE_OUTPUTS else "statistic"
    if check == "vjp":
        return "input_grad" if key == "x" else "param_grad"
    if check in ("jvp", "second_order"):
        return check
    raise ValueError(f"argument 'quantity': got {quantity!r}, expected forward/..., vjp/..., "
                     "jvp or second_order/...")


@dataclass(frozen=True)
class Drawn:
    """A case's draws, before any rounding: the same for every dtype."""

    samples: Mapping[str, Sample]
    cotangent: FloatArray | Sample
    """Standard normal, or a draw from the case's ``cotangent`` distribution (scaled per
    dtype like an input)."""
    tangents: Mapping[str, FloatArray]
    """Unit-scale draws; tangent of input ``n`` is ``tangents[n] * samples[n].scale_for(dtype)``."""
    batches: Mapping[str, Sample] = field(default_factory=dict)
    """A trajectory's batch ``x`` per step label (``step1`` ... ``eval``)."""


def draw_case(case: CaseSpec) -> Drawn:
    """Draw inputs (in :attr:`CaseSpec.inputs` order), then the cotangent, then tangents.

    A trajectory draws its shared inputs, then each step's batch in order, and has no
    directions. Literal inputs (``values``, ``prefix``) draw nothing from the generator.
    """
    rng = np.random.default_rng(case.seed)
    where = f"{case.source}: case {case.name!r}"
    samples = {n: _draw(case, n, rng, where) for n in case.inputs}
    if case.steps:
        batches = {s.label: draw(s.dist, rng, s.shape, f"{where}: {s.label}: inputs.x")
                   for s in case.steps}
        return Drawn(samples=samples, cotangent=np.zeros(0), tangents={}, batches=batches)
    # y has x's shape unless the method says otherwise (qk_norm's logits); build() verifies it.
    cotangent: FloatArray | Sample = (
        rng.standard_normal(output_shape(case)) if case.cotangent is None
        else draw(case.cotangent, rng, output_shape(case), f"{where}: cotangent"))
    tangents = {p: rng.standard_normal(case.shapes[p]) for p in case.present}
    return Drawn(samples=samples, cotangent=cotangent, tangents=tangents)


def _draw(case: CaseSpec, name: str, rng: np.random.Generator, where: str) -> Sample:
    dist, shape, here = case.dists[name], case.shapes[name], f"{where}: inputs.{name}"
    if dist.kind in LITERAL_KINDS:
        return draw_literal(dist, case.element(name), shape, here)
    return draw(dist, rng, shape, here)


@dataclass(frozen=True)
class CaseVectors:
    """One case in one dtype: the tensors to store and what the manifest says about them."""

    name: str
    tensors: dict[str, npt.NDArray[Any]]
    quantities: dict[str, str]
    record: dict[str, Any]


@dataclass(frozen=True)
class Skip:
    name: str
    reason: str


def _c_order(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """A C-contiguous copy that keeps 0-d arrays 0-d (``np.ascontiguousarray`` makes them 1-d)."""
    return np.array(a, order="C", copy=True)


def _finfo(dtype: str) -> Any:
    return ml_dtypes.finfo(numpy_dtype(dtype))  # type: ignore[no-untyped-call, unused-ignore]


def _rounded(dtype: str, label: str, values: FloatArray) -> tuple[npt.NDArray[Any], str | None]:
    stored = round_to(dtype, values)
    back = stored.astype(np.float64)
    overflow = np.isfinite(values) & ~np.isfinite(back)
    if not overflow.any():
        return stored, None
    worst = float(np.max(np.abs(values[overflow])))
    largest = float(_finfo(dtype).max)
    return stored, (f"rounding {label} to {dtype} overflows (|value| up to {worst:.4g}, the "
                    f"largest finite {dtype} is {largest:.5g})")


def _beyond_range(dtype: str, value: FloatArray) -> bool:
    """Whether a finite nonzero value lies outside the dtype's normal range."""
    info = _finfo(dtype)
    mag = np.abs(value[np.isfinite(value) & (value != 0)])
    return bool(mag.size) and bool(
        (mag.max() > float(info.max)) or (mag.min() < float(info.smallest_normal)))


def _keywords(case: CaseSpec, values: Mapping[str, npt.NDArray[Any]]) -> dict[str, Any]:
    return {n: values[n] for n in (*case.state, *case.constants)}


def _reference(case: CaseSpec, dtype: str, values: Mapping[str, npt.NDArray[Any]], g: FloatArray,
               t: Mapping[str, FloatArray]) -> dict[str, FloatArray]:
    module = reference_module(case.method)
    args = [values.get(p) for p in case.primals]
    kw: dict[str, Any] = _keywords(case, values)
    kw.update(case.hyper)
    # A check the method declares not applicable has no quantity: nothing is computed or stored.
    skip = not_applicable(module)
    try:
        # NaN/Inf cases are meant to produce IEEE warnings; the results are checked below.
        with np.errstate(all="ignore"):
            fwd = module.forward(*args, **kw)
            vjp = {} if "vjp" in skip else module.vjp(*args, cotangent=g, **kw)
            jvp = None if "jvp" in skip else module.jvp(*args, tangent=dict(t), **kw)
            so = {} if "second_order" in skip else module.second_order(
                *args, cotangent=g, tangent=dict(t), **kw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{case.source}: case {case.name!r} ({dtype}): the reference "
                         f"rejects it: {exc}") from exc
    out = {f"forward/{k}": v for k, v in fwd.items()}
    out.update({f"vjp/{k}": v for k, v in vjp.items()})
    if jvp is not None:
        out["jvp"] = jvp
    out.update({f"second_order/{k}": v for k, v in so.items()})
    _check_outputs(case, out, output_shape(case))
    return out


def output_shape(case: CaseSpec) -> tuple[int, ...]:
    """The shape of ``y`` (and of the cotangent): x's, or the reference's ``output_shape``."""
    hook = getattr(reference_module(case.method), "output_shape", None)
    return case.shape if hook is None else tuple(hook(case.shape, case.hyper))


def _check_outputs(case: CaseSpec, out: Mapping[str, object], shape: tuple[int, ...],
                   prefix: str = "forward/") -> None:
    for q, v in out.items():
        if not isinstance(v, np.ndarray) or v.dtype != np.float64:
            raise TypeError(f"reference {case.method}: {q} of case {case.name!r} is not a "
                            f"float64 array ({type(v).__name__})")
    y = out[f"{prefix}y"]
    assert isinstance(y, np.ndarray)
    if y.shape != shape:
        raise ValueError(f"reference {case.method}: y of case {case.name!r} has shape "
                         f"{y.shape}, expected {shape}")


def _trajectory(case: CaseSpec, dtype: str, values: Mapping[str, npt.NDArray[Any]],
                batches: Mapping[str, FloatArray]) -> dict[str, FloatArray]:
    """The reference along a trajectory: each step's outputs and updated state, the state
    threaded from step to step, then the evaluation on the last batch."""
    module = reference_module(case.method)
    state = {n: values[n] for n in case.state}
    out: dict[str, FloatArray] = {}
    for step in case.steps:
        args = [batches[step.label] if p == "x" else values.get(p) for p in case.primals]
        kw = {**state, **{n: values[n] for n in case.constants}, **step.hyper}
        try:
            with np.errstate(all="ignore"):
                fwd = module.forward(*args, **kw)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{case.source}: case {case.name!r} ({dtype}), {step.label}: the "
                             f"reference rejects it: {exc}") from exc
        if step.hyper.get("training", False):
            missing = [n for n in case.state if n not in fwd]
            if missing:
                raise ValueError(f"reference {case.method}: {step.label} of case {case.name!r} "
                                 f"returns no updated {missing}")
            state = {n: _counter(fwd[n]) if values[n].dtype == np.int64 else fwd[n]
                     for n in case.state}
        step_out = {f"forward/{step.label}/{k}": v for k, v in fwd.items()}
        hook = getattr(module, "output_shape", None)  # y not shaped like x (gradnorm's weights)
        y_shape = step.shape if hook is None else tuple(hook(step.shape, step.hyper))
        _check_outputs(case, step_out, y_shape, f"forward/{step.label}/")
        out.update(step_out)
    return out


def _counter(value: FloatArray) -> npt.NDArray[np.int64]:
    """A returned step counter (0-d float64) as the int64 input of the next step."""
    count = float(value)
    if not count.is_integer():
        raise ValueError(f"the reference returned a step counter of {count!r}, expected an "
                         "integer")
    return np.array(int(count), dtype=np.int64)


def case_vectors(case: CaseSpec, drawn: Drawn, dtype: str) -> CaseVectors | Skip:
    """The stored tensors of ``case`` in ``dtype``, or why the case is skipped there."""
    if dtype not in case.dtypes:
        return Skip(case.name, f"the catalog limits this case to dtypes {list(case.dtypes)}")
    tensors: dict[str, npt.NDArray[Any]] = {}
    floats = {n: s for n, s in drawn.samples.items() if s.is_float}
    scales = {n: s.scale_for(dtype) for n, s in floats.items()}
    raw = {f"inputs/{n}": s.values(dtype) for n, s in floats.items()}
    raw.update({f"{label}/x": s.values(dtype) for label, s in drawn.batches.items()})
    if not case.steps:
        cot = drawn.cotangent
        raw["cotangent"] = cot if isinstance(cot, np.ndarray) else cot.values(dtype)
        raw.update({f"tangent/{n}": t * scales[n] for n, t in drawn.tangents.items()})
    exact: dict[str, npt.NDArray[Any]] = {}
    for label, draws in raw.items():
        stored, overflow = _rounded(dtype, label, draws)
        if overflow:
            return Skip(case.name, overflow)
        tensors[f"{case.name}/{label}"] = stored
        exact[label] = stored.astype(np.float64)
    for n, s in drawn.samples.items():
        if not s.is_float:  # integers and booleans are stored as they are, in every dtype
            tensors[f"{case.name}/inputs/{n}"] = _c_order(s.base)
            exact[f"inputs/{n}"] = s.base
    values = {n: exact[f"inputs/{n}"] for n in drawn.samples}
    if case.steps:
        batches = {label: exact[f"{label}/x"] for label in drawn.batches}
        expected = _trajectory(case, dtype, values, batches)
        float_inputs = [*(values[n] for n in floats), *batches.values()]
    else:
        tangents = {n: exact[f"tangent/{n}"] for n in drawn.tangents}
        expected = _reference(case, dtype, values, exact["cotangent"], tangents)
        float_inputs = [values[n] for n in floats]
    nonfinite = [q for q, v in expected.items() if not np.isfinite(v).all()]
    finite_inputs = all(np.isfinite(v).all() for v in float_inputs)
    if nonfinite and finite_inputs and not case.expect_nonfinite:
        raise ValueError(f"{case.source}: case {case.name!r} ({dtype}): {nonfinite[0]} has "
                         "NaN/Inf although every input is finite; fix the case or declare "
                         "expect_nonfinite = true")
    for q, v in expected.items():
        tensors[f"{case.name}/{q}"] = _c_order(v)
    record = {
        "name": case.name,
        "scales": scales,
        "nonfinite": bool(nonfinite),
        "beyond_dtype_range": sorted(q for q, v in expected.items() if _beyond_range(dtype, v)),
    }
    quantities = {q: tolerance_class(q) for q in expected}
    return CaseVectors(case.name, tensors, quantities, record)


def _role(case: CaseSpec, name: str) -> str:
    return "primal" if name in case.present else "state" if name in case.state else "constant"


def _case_entry(case: CaseSpec, quantities: Mapping[str, str]) -> dict[str, Any]:
    inputs = {n: {"shape": list(case.shapes[n]), "role": _role(case, n),
                  "element": case.element(n), "dist": case.dists[n].to_json()}
              for n in case.inputs}
    entry: dict[str, Any] = {
        "name": case.name, "seed": case.seed, "description": case.description,
        "hyper": dict(case.hyper), "present": list(case.present), "state": list(case.state),
        "constants": list(case.constants), "inputs": inputs,
        "tangents": [] if case.steps else list(case.present), "quantities": dict(quantities),
        "expect_nonfinite": case.expect_nonfinite,
        "nonfinite_inputs": any(case.dists[n].kind in NONFINITE_KINDS for n in case.inputs)
        or any(s.dist.kind in NONFINITE_KINDS for s in case.steps),
    }
    if case.cotangent is not None:
        entry["cotangent"] = case.cotangent.to_json()
    if case.steps:
        entry["trajectory"] = [{"label": s.label, "shape": list(s.shape),
                                "dist": s.dist.to_json(), "hyper": dict(s.hyper)}
                               for s in case.steps]
    return entry


@dataclass
class MethodVectors:
    """Everything built for one method: its manifest entry and its files' bytes."""

    method: str
    entry: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    """Relative path (``<method>/<dtype>.safetensors``) -> bytes."""


def build_method(catalog: Catalog, dtypes: Sequence[str] = DTYPES) -> MethodVectors:
    """Vectors of every case of ``catalog`` in every dtype."""
    draws = {case.name: draw_case(case) for case in catalog.cases}
    quantities: dict[str, dict[str, str]] = {}
    out = MethodVectors(catalog.method, {})
    dtype_entries: dict[str, Any] = {}
    for dtype in dtypes:
        tensors: dict[str, npt.NDArray[Any]] = {}
        records, skipped = [], []
        for case in catalog.cases:
            result = case_vectors(case, draws[case.name], dtype)
            if isinstance(result, Skip):
                skipped.append({"name": result.name, "reason": result.reason})
                continue
            previous = quantities.setdefault(case.name, result.quantities)
            if previous != result.quantities:
                raise ValueError(f"{case.source}: case {case.name!r}: the reference returns "
                                 f"different quantities in {dtype}: {sorted(result.quantities)}"
                                 f" vs {sorted(previous)}")
            tensors.update(result.tensors)
            records.append(result.record)
        path = f"{catalog.method}/{dtype}.safetensors"
        data = encode(tensors, {"format_version": FORMAT_VERSION, "method": catalog.method,
                                "dtype": dtype})
        out.files[path] = data
        dtype_entries[dtype] = {"file": path, "sha256": sha256(data), "bytes": len(data),
                                "storage": STORAGE_CODE[dtype], "cases": records,
                                "skipped": skipped}
    never = [c.name for c in catalog.cases if c.name not in quantities]
    if never:
        raise ValueError(f"{catalog.source}: case(s) {never} are skipped in every dtype")
    out.entry = {
        "catalog": f"cases/{catalog.method}.toml",
        "description": catalog.description,
        "primals": list(catalog.cases[0].primals),
        "cases": [_case_entry(c, quantities[c.name]) for c in catalog.cases],
        "dtypes": dtype_entries,
    }
    declared = not_applicable(reference_module(catalog.method))
    if declared:
        out.entry["not_applicable"] = declared
    return out


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def generator_info() -> dict[str, str]:
    """What produced the vectors; ``vectors check`` reports but does not compare it."""
    return {"name": "normspec", "version": _version("normspec"), "numpy": np.__version__,
            "ml_dtypes": _version("ml_dtypes"), "safetensors": _version("safetensors"),
            "python": platform.python_version()}


def build(methods: Sequence[str] | None = None, cases_root: Traversable | Path | None = None
          ) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Build the manifest and the files' bytes for ``methods`` (default: every catalog)."""
    root = default_cases_root() if cases_root is None else cases_root
    chosen = tuple(catalog_methods(root)) if methods is None else tuple(methods)
    if not chosen:
        # a manifest without methods is rejected on load; say so here, where the cause is
        raise ValueError(f"{describe(root)}: no case catalog (<method>.toml) to build from")
    built = [build_method(load_catalog(m, root)) for m in chosen]
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "generator": generator_info(),
        "dtypes": {d: {"storage": STORAGE_CODE[d], "tiny": TINY[d], "huge": HUGE[d]}
                   for d in DTYPES},
        "tolerance_classes": list(TOLERANCE_CLASSES),
        "methods": {b.method: b.entry for b in built},
    }
    files = {path: data for b in built for path, data in b.files.items()}
    return manifest, files


def _listed_files(out: Path) -> dict[str, set[str]]:
    """Vector files per method that the manifest already in ``out`` lists (empty if none).

    The manifest is only a record of what an earlier build wrote; it is not validated, since a
    build must be able to replace a broken one. A listing that is not a plain
    ``<method>/<dtype>.safetensors`` path is ignored, so no manifest can point outside ``out``.
    """
    import json

    try:
        data = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
        methods = data["methods"]
        listed = {m: {d["file"] for d in entry["dtypes"].values()}
                  for m, entry in methods.items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}
    return {m: {f for f in files if f in {f"{m}/{d}.safetensors" for d in DTYPES}}
            for m, files in listed.items()}


def write(out: Path, manifest: Mapping[str, Any], files: Mapping[str, bytes]) -> list[str]:
    """Write ``files`` and the manifest under ``out``; return the vector files removed.

    Removal rule: a file is removed only when the manifest previously in ``out`` lists it
    under a method that ``manifest`` lists too (a method rebuilt or kept), and neither
    ``manifest`` nor ``files`` has it any more. Anything else under ``out`` (other methods'
    vectors, unrelated files) is never touched. New files are written before anything is
    removed, so a failed write (an ``OSError``) leaves every earlier file in place.
    """
    from .manifest import dumps

    previous = _listed_files(out)
    out.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (out / MANIFEST_NAME).write_text(dumps(manifest), encoding="utf-8")
    listed = {d["file"] for entry in manifest["methods"].values()
              for d in entry["dtypes"].values()}
    stale = sorted({f for m in manifest["methods"] for f in previous.get(m, ())}
                   - set(files) - listed)
    for rel in stale:
        (out / rel).unlink(missing_ok=True)
    for method in {rel.split("/", 1)[0] for rel in stale}:
        folder = out / method
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return stale


def keep_other_methods(out: Path, manifest: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """``manifest`` plus the entries of the manifest already in ``out`` for methods not rebuilt.

    Rebuilding some methods (``--method``) then updates them in place instead of leaving a
    manifest that no longer lists the other methods' files. The earlier entries are kept
    only when that manifest is valid and was built with the same format, dtypes and tolerance
    classes; otherwise the note says why the new manifest lists only the methods built (their
    files stay where they are, unlisted).
    """
    from .manifest import load_manifest
    from .storage import VectorFormatError

    if not (out / MANIFEST_NAME).is_file():
        return manifest, None
    try:
        previous = load_manifest(out).data
    except VectorFormatError as exc:
        return manifest, (f"the manifest already there is not valid ({exc}); the new one lists "
                          "only the methods built, other files are left in place")
    fixed = ("format_version", "dtypes", "tolerance_classes")
    changed = [k for k in fixed if previous.get(k) != manifest.get(k)]
    if changed:
        return manifest, (f"the manifest already there differs in {changed}; the new one "
                          "lists only the methods built, other files are left in place")
    kept = {m: e for m, e in previous["methods"].items() if m not in manifest["methods"]}
    if not kept:
        return manifest, None
    merged = {**manifest, "methods": {**kept, **manifest["methods"]}}
    return merged, f"kept the vectors of {sorted(kept)} from the manifest already there"


def sizes(manifest: Mapping[str, Any]) -> dict[str, int]:
    """Bytes of vector files per method, from a manifest."""
    return {m: sum(d["bytes"] for d in entry["dtypes"].values())
            for m, entry in manifest["methods"].items()}


# The vectors ship inside the package. 30 MB served the first seven methods; the 30 methods of
# the seed material at about 1.1 MB each, with their catalogs trimmed, need 40 MB, which keeps the
# wheel far below PyPI's 100 MB default file limit. A catalog that grows past it is trimmed, not
# the budget raised again without a reason.
SIZE_BUDGET = 40_000_000
"""Committed vectors (files and manifest) stay within 30 MB (issue 2)."""


__all__ = ["FORMAT_VERSION", "SIZE_BUDGET", "TOLERANCE_CLASSES", "build", "build_method",
           "case_vectors", "draw_case", "generator_info", "keep_other_methods", "sizes",
           "tolerance_class", "write"]
