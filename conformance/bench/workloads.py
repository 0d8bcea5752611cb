"""What gets benchmarked: methods with their hyperparameters, shapes users run, and inputs.

Shapes come in three families, each sized for the device class (a GPU, or the host CPU):

* ``rows``: transformer activations, tokens x hidden (4096 x 4096 and 16384 x 8192 on a GPU),
  for methods that normalize the last axis (layer_norm, rms_norm);
* ``maps``: CNN feature maps N x C x H x W (32 x 256 x 56 x 56 on a GPU), for methods with a
  channel axis (batch_norm, group_norm, instance_norm);
* ``sweep``: the same family over a range of sizes, so the plots show where each
  implementation falls off (caches, launch overhead).

The CPU sizes are smaller, but the largest of each family exceeds a 32 MiB last-level cache in
float32 (each result records whether its input is larger than the measured LLC). ``quick``
takes one small shape per method.

Methods without an entry in :data:`SPECS` get a generic workload from their case catalog (the
first single-call case on a normal input whose rank fits a family, its hyperparameters checked
against the reference's ``layout`` at the new shape); methods with integer or boolean inputs
have no generic generator and are skipped with that reason.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import ml_dtypes
import numpy as np
from normspec import reference

from .bytes_model import input_shapes


@dataclass(frozen=True)
class Spec:
    """A method's benchmark setting: its shape family, hyperparameters and inputs present."""

    family: str
    """``"rows"`` or ``"maps"``."""
    hyper: Mapping[str, Any]
    present: tuple[str, ...]
    """Differentiable inputs given (the rest are None)."""
    source: str = "normspec.conformance.bench.workloads.SPECS"


_ROWS_EPS = 1e-5
SPECS: Mapping[str, Spec] = {
    "layer_norm": Spec("rows", {"axis": -1, "eps": _ROWS_EPS}, ("x", "weight", "bias")),
    "rms_norm": Spec("rows", {"axis": -1, "eps": 1e-6}, ("x", "weight")),
    "batch_norm": Spec("maps", {"training": True, "channel_axis": 1, "eps": 1e-5,
                                "batch_stat_weight": 0.1, "running_var_estimator": "unbiased"},
                       ("x", "weight", "bias")),
    "group_norm": Spec("maps", {"groups": 32, "channel_axis": 1, "eps": 1e-5},
                       ("x", "weight", "bias")),
    "instance_norm": Spec("maps", {"channel_axis": 1, "eps": 1e-5}, ("x", "weight", "bias")),
}
"""The methods the benchmark covers by default, as users run them: PyTorch's defaults for eps,
batch norm in training with running statistics, 32 groups."""
DEFAULT_METHODS: tuple[str, ...] = tuple(SPECS)


@dataclass(frozen=True)
class Shape:
    family: str
    label: str
    """``"rows"``, ``"maps"`` or ``"sweep"``: the table shows rows/maps, the plots the sweep."""
    shape: tuple[int, ...]


def shapes(family: str, device: str, *, quick: bool) -> tuple[Shape, ...]:
    """The shapes of ``family`` on ``device`` (any device but ``cpu`` counts as a GPU)."""
    gpu = device != "cpu"
    main: tuple[tuple[int, ...], ...]
    sweep: list[tuple[int, ...]]
    if family == "rows":
        if quick:
            return (Shape("rows", "rows", (512, 1024)),)
        main = ((4096, 4096), (16384, 8192)) if gpu else ((2048, 1024), (8192, 2048))
        sweep = ([(t, 4096) for t in (128, 512, 2048, 8192, 32768)] if gpu
                 else [(t, 1024) for t in (256, 4096, 16384)])
    elif family == "maps":
        if quick:
            return (Shape("maps", "maps", (4, 64, 28, 28)),)
        main = ((32, 256, 56, 56),) if gpu else ((8, 64, 56, 56), (32, 128, 56, 56))
        sweep = ([(n, 256, 56, 56) for n in (1, 4, 16, 64)] if gpu
                 else [(n, 64, 56, 56) for n in (1, 16, 64)])
    else:
        raise ValueError(f"argument 'family': got {family!r}, expected 'rows' or 'maps'")
    return (*(Shape(family, family, s) for s in main),
            *(Shape(family, "sweep", s) for s in sweep if s not in main))


def _generic(method: str) -> Spec | str:
    """A workload from the method's catalog, or the reason there is none."""
    from ..vectors import catalog

    module = reference.get(method)
    if catalog.constant_inputs(module):
        return (f"{method} takes integer or boolean inputs "
                f"({', '.join(catalog.constant_inputs(module))}); no generic input generator")
    for case in catalog.load_catalog(method).cases:
        if case.steps or case.dists["x"].kind != "normal" or case.expect_nonfinite:
            continue
        if dict(case.dists["x"].params).get("loc", 0.0) != 0.0:
            continue
        family = "maps" if len(case.shape) == 4 else "rows" if len(case.shape) == 2 else None
        if family is None:
            continue
        hyper = dict(case.hyper)
        if "training" in hyper:
            hyper["training"] = True
        return Spec(family, hyper, case.present, source=f"{case.source}: case {case.name!r}")
    return f"{method}: no single-call 2-d or 4-d case on a normal input in its catalog"


def spec(method: str) -> Spec | str:
    """The benchmark setting of ``method``, or the reason it has none."""
    if method in SPECS:
        return SPECS[method]
    if method not in reference.METHODS:
        return f"unknown method {method!r}; expected one of {list(reference.METHODS)}"
    return _generic(method)


def check_shape(method: str, s: Spec, shape: tuple[int, ...]) -> str | None:
    """Why ``method`` cannot run at ``shape`` with ``s``'s hyperparameters, or None."""
    module = reference.get(method)
    lay = getattr(module, "layout", None)
    try:
        if lay is not None:
            params = inspect.signature(lay).parameters
            lay(shape, **{k: v for k, v in s.hyper.items() if k in params})
        names = tuple(p for p in s.present if p != "x")
        from ..vectors import catalog

        input_shapes(method, shape, s.hyper, (*names, *catalog.state_inputs(module)))
    except (TypeError, ValueError) as exc:
        return f"{method} with {dict(s.hyper)} does not take shape {list(shape)}: {exc}"
    return None


_ROUND: Mapping[str, Any] = {"float64": np.float64, "float32": np.float32,
                             "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


def rounded(a: np.ndarray, dtype: str) -> np.ndarray:
    """``a`` rounded to ``dtype`` and held as float64 (the adapter contract's inputs)."""
    out: np.ndarray = np.asarray(a).astype(_ROUND[dtype]).astype(np.float64)
    return out


@dataclass(frozen=True)
class Workload:
    """One benchmarked call: inputs as the adapter contract passes them."""

    method: str
    shape: Shape
    hyper: Mapping[str, Any]
    inputs: Mapping[str, np.ndarray | None]
    cotangent: np.ndarray
    present: tuple[str, ...] = field(default_factory=tuple)


def make(method: str, s: Spec, shape: Shape, dtype: str, seed: int = 0) -> Workload:
    """Seeded inputs for one call: x and the cotangent standard normal, weights near 1,
    biases near 0, running variance in [0.5, 2], all rounded to ``dtype``."""
    from ..vectors import catalog

    module = reference.get(method)
    rng = np.random.default_rng(seed)
    x = rounded(rng.standard_normal(shape.shape, dtype=np.float32), dtype)
    out_shape = getattr(module, "output_shape", None)
    y_shape = shape.shape if out_shape is None else tuple(out_shape(shape.shape, s.hyper))
    g = rounded(rng.standard_normal(y_shape, dtype=np.float32), dtype)
    state = catalog.state_inputs(module)
    others = tuple(p for p in s.present if p != "x")
    dims = input_shapes(method, shape.shape, s.hyper, (*others, *state))
    # Absent primals are left out rather than passed as None: the protocol allows both, and
    # an adapter that has not caught up with a new optional input still runs.
    inputs: dict[str, np.ndarray | None] = {"x": x}
    for name in others:
        base = rng.standard_normal(dims[name])
        inputs[name] = rounded(0.5 * base if name == "bias" else 1.0 + 0.25 * base, dtype)
    for name in state:
        # state is kept in at least float32 by every framework: float32 values are exact there
        value = rng.uniform(0.5, 2.0, dims[name]) if "var" in name else rng.standard_normal(
            dims[name])
        inputs[name] = rounded(value, "float32" if dtype != "float64" else "float64")
    if catalog.takes_counter(module):
        inputs["num_batches_tracked"] = np.array(0, dtype=np.int64)
    return Workload(method, shape, dict(s.hyper), inputs, g, s.present)


__all__ = ["DEFAULT_METHODS", "SPECS", "Shape", "Spec", "Workload", "check_shape", "make",
           "rounded", "shapes", "spec"]
