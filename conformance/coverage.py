"""Coverage of the definitions by the golden vectors: which cases exercise which branch.

:data:`COVERAGE` maps each method to its rows. A row names one branch or convention of the
method's definition (a reduction over several axes, the biased running variance, the clamped
branch of lp_norm...), says how to recognize a case that exercises it (a predicate on the
catalog case and, where the branch depends on values, on its vectors), the dtypes where the row
is meaningful, and the minimum number of cases it must have in each of them.

A case only counts in a dtype where it has vectors, and only when its output carries its input:
:func:`degenerate` finds cases whose ``y`` is, to the last bit of the dtype, the bias (or zero)
whatever ``x`` holds, such as ``tiny`` inputs with ``eps = 1e-5`` (``(x - mean) * rstd`` is
~1e-13, below the bias' last bit). Rows about such branches themselves (constant input, a
reduction of one value) set ``signal=False`` and count them.

:func:`mutation_score` joins the mutation self-test (tests/mutants/) to the same tables: per
method, how many of the mutants targeting it some case kills, and by how many cases.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

import ml_dtypes
import numpy as np
import numpy.typing as npt

from .vectors import DTYPES, Manifest, VectorCase, load_manifest
from .vectors.catalog import CaseSpec, load_catalog

FloatArray = npt.NDArray[np.float64]

WIDE = ("float64", "float32")
"""Dtypes that hold a mean offset of 1e4 std (16-bit dtypes round such rows to constants)."""

_ROUND: Mapping[str, npt.DTypeLike] = {
    "float64": np.float64, "float32": np.float32, "float16": np.float16,
    "bfloat16": ml_dtypes.bfloat16,
}


@dataclass(frozen=True)
class Sample:
    """One catalog case in one dtype, with its vectors; for a trajectory, one of its calls
    (``step`` names it; ``spec`` and ``vector`` are then that call's single-call views)."""

    spec: CaseSpec
    vector: VectorCase
    step: str = ""

    @property
    def dtype(self) -> str:
        return self.vector.dtype


Predicate = Callable[[Sample], bool]


@dataclass(frozen=True)
class Row:
    """One branch or convention of a method's definition and the cases that exercise it."""

    name: str
    what: str
    test: Predicate
    dtypes: tuple[str, ...] = DTYPES
    """Where the row is meaningful; elsewhere it is neither counted nor required."""
    minimum: int = 1
    """Cases required in each of ``dtypes``."""
    signal: bool = True
    """Whether only cases whose output carries the input count (see :func:`degenerate`)."""
    pending: str = ""
    """Why the catalogs cannot meet ``minimum`` yet (then it is reported, not enforced)."""


# --- predicates on a case --------------------------------------------------------------------


def _axis(spec: CaseSpec, name: str, default: int | None = None) -> int:
    value = spec.hyper.get(name, default)
    assert isinstance(value, int), (spec.name, name, value)
    return value % len(spec.shape)


def channel_axis(spec: CaseSpec) -> int:
    """The channel axis of a method that has channels (default 1)."""
    return _axis(spec, "channel_axis", 1)


def reduced_axes(spec: CaseSpec) -> tuple[int, ...]:
    """Axes of ``x`` one statistic spans, from the method's definition (empty: none, e.g.
    batch_norm in evaluation, or local_response_norm, which reduces a window of channels)."""
    nd, method = len(spec.shape), spec.method
    if method in ("standardize", "min_max_scale"):  # axis list; fits only
        if spec.hyper.get("training") is not True:
            return ()
        return tuple(sorted({int(a) % nd for a in str(spec.hyper["axis"]).split(",")}))
    if method in ("layer_norm", "rms_norm", "power_norm"):
        return tuple(range(_axis(spec, "axis"), nd))
    if method == "qk_norm":  # a head's Dh values, or a token's H and Dh (OLMo-2)
        h = 1 if spec.hyper["layout"] == "bhtd" else 2
        return (nd - 1,) if spec.hyper["norm_axes"] == "head" else (h, nd - 1)
    if method in ("adaptive_layer_norm", "scale_norm"):  # the last axis
        return (nd - 1,)
    if method in ("lp_norm", "fix_norm", "unit_norm"):
        return (_axis(spec, "axis"),)
    if method == "weight_standardization":  # every axis but the output channel
        return tuple(i for i in range(nd) if i != int(spec.hyper["kept_axis"]) % nd)
    if method == "spectral_norm":  # sigma of the whole weight
        return tuple(range(nd))
    if method == "weight_norm":  # every axis but the kept one (all for "none")
        k = spec.hyper["kept_axis"]
        return tuple(i for i in range(nd) if k == "none" or i != int(k) % nd)
    if method == "gradient_normalization":
        return _gn_axes(spec)
    if method == "local_response_norm":
        return ()
    c = channel_axis(spec)
    if method == "mixed_eval_batch_norm":  # batch statistics, with no training switch
        return tuple(i for i in range(nd) if i != c)
    if method == "batch_instance_norm" and spec.hyper["training"] is True:
        return tuple(i for i in range(nd) if i != c)  # the batch part (evaluation: instances)
    if method in ("batch_norm", "batch_renorm", "sync_batch_norm"):
        return tuple(i for i in range(nd) if i != c) if spec.hyper["training"] is True else ()
    if method == "ghost_batch_norm":  # a ghost batch's samples (axis 0, in part) and space
        if spec.hyper["training"] is not True:
            return ()
        return tuple(i for i in range(nd)
                     if i != c and (i != 0 or spec.hyper["ghost_batch_size"] != 1))
    spatial = tuple(i for i in range(1, nd) if i != c)
    if method == "group_norm" and spec.shape[c] != spec.hyper["groups"]:
        return (c, *spatial)  # the channels of one group are reduced together
    return spatial


def reduction_size(spec: CaseSpec) -> int | None:
    """Values per statistic (LRN: the window size; None: the case has no reduction)."""
    if spec.method == "local_response_norm":
        size = spec.hyper["size"]
        assert isinstance(size, int)
        return size
    axes = reduced_axes(spec)
    if spec.method in ("batch_norm", "ghost_batch_norm", "batch_renorm", "sync_batch_norm",
                       "standardize", "min_max_scale") and (
            spec.hyper["training"] is not True):
        return None
    n = math.prod(spec.shape[i] for i in axes)
    if spec.method == "ghost_batch_norm" and 0 in axes:
        size = spec.hyper["ghost_batch_size"]
        assert isinstance(size, int)
        n = n // spec.shape[0] * size
    if spec.method == "group_norm":
        groups = spec.hyper["groups"]
        assert isinstance(groups, int)
        c = channel_axis(spec)
        n = n // spec.shape[c] * (spec.shape[c] // groups) if c in axes else n
    return n


def several_axes(s: Sample) -> bool:
    """At least two reduced axes of size > 1: reducing only one of them gives other values."""
    return sum(s.spec.shape[i] > 1 for i in reduced_axes(s.spec)) >= 2


def channels_last(s: Sample) -> bool:
    """A channel axis other than 1 on an input with spatial axes."""
    return len(s.spec.shape) >= 3 and channel_axis(s.spec) != 1


def channels_last_same_size(s: Sample) -> bool:
    """Channels-last where axis 1 has as many entries as the channel axis: a weight of shape
    (C,) also fits axis 1, so assuming channels-first gives wrong values, not a shape error."""
    c = channel_axis(s.spec)
    return channels_last(s) and s.spec.shape[1] == s.spec.shape[c]


def dist(kind: str) -> Predicate:
    return lambda s: s.spec.dists["x"].kind == kind


def style_dist(kind: str) -> Predicate:
    """adaptive_instance_norm: the style's distribution is ``kind``."""
    return lambda s: s.spec.dists["style"].kind == kind


def _styles(s: Sample) -> list[int]:
    """conditional_instance_norm: the case's style indices, one per sample."""
    return [int(v) for v in s.spec.dists["style"].get("values")]


def offset_at_least(ratio: float) -> Predicate:
    def test(s: Sample) -> bool:
        d = s.spec.dists["x"]
        return d.kind == "offset" and abs(d.get("ratio")) >= ratio
    return test


def mixed_scale(s: Sample) -> bool:
    """Values spread over orders of magnitude inside one reduction set (or LRN window)."""
    return s.spec.dists["x"].kind == "decades"


def hyper(name: str, check: Callable[[Any], bool]) -> Predicate:
    """The case sets hyperparameter ``name`` and its value passes ``check``."""
    return lambda s: name in s.spec.hyper and check(s.spec.hyper[name])


def size_is(check: Callable[[int], bool]) -> Predicate:
    def test(s: Sample) -> bool:
        n = reduction_size(s.spec)
        return n is not None and check(n)
    return test


def primals(*names: str) -> Predicate:
    return lambda s: set(s.spec.present) == {"x", *names}


def both(*tests: Predicate) -> Predicate:
    return lambda s: all(t(s) for t in tests)


def batch_of_one(s: Sample) -> bool:
    return s.spec.shape[0] == 1


def eps_zero(s: Sample) -> bool:
    return s.spec.hyper.get("eps") == 0.0


def training(s: Sample) -> bool:
    return s.spec.hyper.get("training") is True


def _batch_stat_weight(s: Sample) -> float:
    """The weight of the new batch in the running averages (0 without state)."""
    if not (training(s) and s.spec.state):
        return 0.0
    weight = s.spec.hyper["batch_stat_weight"]
    if weight == "cumulative":
        return 1.0 / (counter(s) + 1)
    assert isinstance(weight, (int, float))
    return float(weight)


UNIT_ROUNDOFF: Mapping[str, float] = {
    "float64": 2.0**-53, "float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8,
}
VISIBLE = 16.0
"""A difference counts as visible when it exceeds this many units of roundoff of the result:
four times the smallest budget of the tolerance table (c_out = 4), so a swapped
convention must fail."""


def estimator(kind: str) -> Predicate:
    """The running variance takes the batch variance through ``kind``, and it shows: the two
    estimators' updates differ by ``f var / (n-1)``, which must stand out of the dtype's
    roundoff of the updated running variance (not so for f = 0.01 and n = 20 in bfloat16, a
    batch variance of 1e-30 next to a running one of 1, or n = 1024 in float16)."""
    def test(s: Sample) -> bool:
        f = _batch_stat_weight(s)
        n = reduction_size(s.spec)
        if s.spec.hyper.get("running_var_estimator") != kind or f == 0.0 or not n or n < 2:
            return False
        var, updated = s.vector.forward.get("var"), s.vector.forward.get("running_var")
        if var is None or updated is None or not np.all(np.isfinite(updated)):
            return False
        delta = f * var / (n - 1)
        return bool(np.max(delta / np.abs(updated))
                    > VISIBLE * UNIT_ROUNDOFF[s.dtype])
    return test


def counter(s: Sample) -> int:
    """The step counter the call starts from (0 without state)."""
    value = s.vector.inputs.get("num_batches_tracked")
    return 0 if value is None else int(value)


def trajectory(kind: str) -> Predicate:
    """A training step of a trajectory with the ``kind`` running variance estimator: the state
    it updates is the one the implementation returned from the step before."""
    def test(s: Sample) -> bool:
        return (s.step.startswith("step")
                and s.spec.hyper.get("running_var_estimator") == kind)
    return test


def valid_counts(s: Sample) -> FloatArray | None:
    """sequence_batch_norm: the valid frames behind each statistic (one count sequence-wise,
    one per time step frame-wise), read from the vectors' mask; None without a mask."""
    mask = s.vector.inputs.get("mask")
    if mask is None:
        return None
    m = np.asarray(mask, dtype=bool)
    counts: FloatArray = (np.array([m.sum()]) if s.spec.hyper.get("statistics") == "sequence"
                          else m.sum(axis=0)).astype(np.float64)
    return counts


def counts_are(check: Callable[[FloatArray], bool]) -> Predicate:
    """sequence_batch_norm in training whose valid counts pass ``check``."""
    def test(s: Sample) -> bool:
        counts = valid_counts(s)
        return training(s) and counts is not None and check(counts)
    return test


def mask_is(check: Callable[[npt.NDArray[np.bool_]], bool]) -> Predicate:
    """sequence_batch_norm whose (N, T) mask passes ``check``."""
    def test(s: Sample) -> bool:
        mask = s.vector.inputs.get("mask")
        return mask is not None and check(np.asarray(mask, dtype=bool))
    return test


def padding_holds(check: Callable[[FloatArray, FloatArray], bool]) -> Predicate:
    """sequence_batch_norm whose x, split into padded and valid values, passes ``check``."""
    def test(s: Sample) -> bool:
        x, mask = s.vector.inputs.get("x"), s.vector.inputs.get("mask")
        if x is None or mask is None or bool(np.all(mask)):
            return False
        first = _axis(s.spec, "channel_axis", -1) == 1
        valid = np.broadcast_to(mask[:, None, :] if first else mask[:, :, None], x.shape)
        return bool(np.any(valid)) and check(x[~valid], x[valid])
    return test


def _huge_padding(padded: FloatArray, valid: FloatArray) -> bool:
    with np.errstate(invalid="ignore"):
        return bool(np.min(np.abs(padded)) >= 1e3 * np.max(np.abs(valid)))


def running_estimator(kind: str) -> Predicate:
    """Training with running statistics and the ``kind`` running-variance estimator."""
    return lambda s: (training(s) and bool(s.spec.state)
                      and s.spec.hyper.get("running_var_estimator") == kind)


def ghosts(check: Callable[[int, int], bool]) -> Predicate:
    """ghost_batch_norm in training whose ghost count G and batch size N pass ``check(G, N)``."""
    def test(s: Sample) -> bool:
        size = s.spec.hyper.get("ghost_batch_size")
        return training(s) and isinstance(size, int) and check(s.spec.shape[0] // size,
                                                               s.spec.shape[0])
    return test


def renorm_bound(name: str, clipped: bool) -> Predicate:
    """batch_renorm: some channel's ``r`` (``name="r"``) or ``d`` at its bound (``clipped``) or
    strictly inside it, by the reference's value."""
    def test(s: Sample) -> bool:
        value = s.vector.forward.get(name)
        if value is None or not training(s):
            return False
        top = float(str(s.spec.hyper["rmax" if name == "r" else "dmax"]))
        low = 1.0 / top if name == "r" else -top
        at_bound = (value == top) | (value == low)
        inside = (value > low) & (value < top)
        return bool(np.any(at_bound if clipped else inside))
    return test


@cache
def _trajectory_bounds(name: str) -> dict[str, tuple[Any, Any]]:
    """batch_renorm: ``(rmax, dmax)`` of every call of trajectory ``name``, by step label."""
    spec = next(c for c in load_catalog("batch_renorm").cases if c.name == name)
    return {step.label: (step.hyper.get("rmax"), step.hyper.get("dmax")) for step in spec.steps}


def bounds_changed(s: Sample) -> bool:
    """batch_renorm: a trajectory step whose rmax or dmax differ from the step before (the
    caller's schedule, passed per step)."""
    if not s.step.startswith("step") or s.step == "step1":
        return False
    bounds = _trajectory_bounds(s.spec.name)
    return bounds[s.step] != bounds[f"step{int(s.step[4:]) - 1}"]


def cumulative(later: bool) -> Predicate:
    def test(s: Sample) -> bool:
        tracked = counter(s)
        return (training(s) and bool(s.spec.state)
                and s.spec.hyper.get("batch_stat_weight") == "cumulative"
                and (tracked != 0) == later)
    return test


def momentum_direction(s: Sample) -> bool:
    """A numeric weight f with f != 1 - f: taking it for the old value's weight shows."""
    weight = s.spec.hyper.get("batch_stat_weight")
    return (training(s) and bool(s.spec.state) and isinstance(weight, float)
            and weight not in (0.5,))


def gate(kind: str) -> Predicate:
    """batch_instance_norm: some channel's gate ``rho`` (as stored in the dtype) is ``kind``:
    ``"inside"`` (0, 1), at an ``"end"`` of the clip (0 or 1), or ``"outside"`` [0, 1]."""
    def test(s: Sample) -> bool:
        rho = s.vector.inputs.get("rho")
        if rho is None:
            return False
        where = {"inside": (rho > 0) & (rho < 1), "end": (rho == 0) | (rho == 1),
                 "outside": (rho < 0) | (rho > 1)}[kind]
        return bool(np.any(where))
    return test


def mixture_gap(s: Sample) -> bool:
    """mixed_eval_batch_norm with 0 < alpha < 1 where the variance of the mixture visibly
    exceeds the mixture of the variances: the gap term alpha (1 - alpha) (mean_b - rm)^2."""
    alpha, fwd = s.spec.hyper.get("alpha"), s.vector.forward
    rv = s.vector.inputs.get("running_var")
    if not isinstance(alpha, float) or not 0.0 < alpha < 1.0 or rv is None or "var" not in fwd:
        return False
    with np.errstate(all="ignore"):
        blend = alpha * fwd["batch_var"] + (1.0 - alpha) * rv
        excess = (fwd["var"] - blend) / np.abs(fwd["var"])
    return bool(np.nanmax(excess, initial=0.0) > VISIBLE * UNIT_ROUNDOFF[s.dtype])


def shard_sizes(s: Sample) -> list[int]:
    """sync_batch_norm: each worker's rows (the int64 input of the vectors)."""
    return [int(n) for n in s.vector.inputs["shard_sizes"]]


def workers(check: Callable[[list[int]], bool]) -> Predicate:
    """sync_batch_norm whose shard sizes pass ``check``."""
    return lambda s: s.spec.method == "sync_batch_norm" and check(shard_sizes(s))


def local_count_differs(s: Sample) -> bool:
    """sync_batch_norm updating with the unbiased estimator where some worker's own count
    differs from the global one: a correction with the local count shows."""
    sizes = shard_sizes(s)
    return (training(s) and bool(s.spec.state)
            and s.spec.hyper.get("running_var_estimator") == "unbiased"
            and any(0 < n < sum(sizes) for n in sizes))


def clamped(s: Sample) -> bool:
    """lp_norm: some row's norm is below eps and not zero (y = x / eps carries x)."""
    norm = s.vector.forward.get("norm")
    eps = float(s.spec.hyper["eps"])
    return norm is not None and bool(np.any((norm < eps) & (norm > 0)))


def unclamped(s: Sample) -> bool:
    norm = s.vector.forward.get("norm")
    eps = float(s.spec.hyper["eps"])
    return norm is not None and bool(np.any(norm > eps))


def window_past_channels(s: Sample) -> bool:
    size = s.spec.hyper["size"]
    assert isinstance(size, int)
    return size > s.spec.shape[channel_axis(s.spec)]


# --- degenerate cases ------------------------------------------------------------------------


def _rounded(values: FloatArray, dtype: str) -> FloatArray:
    with np.errstate(all="ignore"):
        return np.asarray(values).astype(_ROUND[dtype]).astype(np.float64)


def _broadcast_param(s: Sample, p: FloatArray) -> FloatArray:
    """A weight/bias in the shape of ``x``, laid out as the method broadcasts it."""
    shape = s.spec.shape
    if s.spec.method in ("layer_norm", "rms_norm", "power_norm"):
        return np.broadcast_to(p, shape)
    view = [1] * len(shape)
    if s.spec.method == "conditional_instance_norm":  # each sample's row of the (S, C) table
        view[0], view[channel_axis(s.spec)] = shape[0], shape[channel_axis(s.spec)]
        return np.broadcast_to(p[_styles(s)].reshape(view), shape)
    view[channel_axis(s.spec)] = p.size
    return np.broadcast_to(p.reshape(view), shape)


def degenerate(s: Sample) -> bool:
    """Whether ``y`` is, rounded to the dtype, the bias (zero without one) wherever finite.

    Then no value of ``x`` reaches the output: an implementation that ignores the whole
    normalization passes the forward check of this case.
    """
    y = s.vector.forward.get("y")
    if y is None:
        return False
    # adaptive_layer_norm's bias belongs to its modulation map, not to the output
    own_bias = "bias" in s.spec.present and s.spec.method != "adaptive_layer_norm"
    bias = s.vector.inputs.get("bias") if own_bias else None
    base = np.zeros(y.shape) if bias is None else _broadcast_param(s, bias)
    finite = np.isfinite(y)
    return bool(np.any(finite)) and bool(
        np.array_equal(_rounded(y, s.dtype)[finite], base[finite]))


def zero_norm_channel(s: Sample) -> bool:
    """global_response_norm: a sample with a zero channel norm next to a nonzero one (the
    norm's subgradient 0 enters the gradient of the others)."""
    gx = s.vector.forward.get("gx")
    return gx is not None and bool(np.any(np.any(gx == 0, axis=1) & np.any(gx > 0, axis=1)))


def _gn_axes(spec: CaseSpec) -> tuple[int, ...]:
    """gradient_normalization: the axes its gradient norm runs over."""
    return tuple(sorted({int(a) % len(spec.shape) for a in str(spec.hyper["axis"]).split(",")}))


def _gn_norms(s: Sample) -> FloatArray:
    """gradient_normalization: the norm of each row of the cotangent (float64, NaN kept)."""
    axes = _gn_axes(s.spec)
    g = np.asarray(s.vector.cotangent, dtype=np.float64)
    with np.errstate(all="ignore"):
        norms: FloatArray = np.sqrt(np.sum(g * g, axis=axes))
    return norms


def _gn_cotangent(kind: str) -> Predicate:
    return lambda s: s.spec.cotangent is not None and s.spec.cotangent.kind == kind


def _gn_zero(s: Sample) -> bool:
    c = s.spec.cotangent
    return c is not None and c.kind == "constant" and c.get("value") == 0.0


def _gn_eps_active(s: Sample) -> bool:
    """Some row's gradient norm is finite and below eps: the floor divides it."""
    n = _gn_norms(s)
    return bool(np.any(np.isfinite(n) & (n < float(s.spec.hyper["eps"]))))


def zero_weight(s: Sample) -> bool:
    """A weight that is zero everywhere (GRN's zero initialisation: y = x)."""
    w = s.vector.inputs.get("weight")
    return w is not None and bool(np.all(w == 0))


def zero_vector(s: Sample) -> bool:
    """The L2 methods: a zero vector with eps > 0 (clamped: y = 0, the gradient g w / eps)."""
    norm = s.vector.forward.get("norm")
    return (norm is not None and float(s.spec.hyper["eps"]) > 0
            and bool(np.any(norm == 0)))


def one_nonzero(s: Sample) -> bool:
    """The L2 methods: a vector with exactly one nonzero element (y = w sign(x) there)."""
    x = s.vector.inputs.get("x")
    if x is None:
        return False
    a = _axis(s.spec, "axis", -1) if "axis" in s.spec.hyper else len(s.spec.shape) - 1
    return bool(np.any(np.sum(np.moveaxis(x, a, -1) != 0, axis=-1) == 1))


def negative_weight(s: Sample) -> bool:
    w = s.vector.inputs.get("weight")
    return w is not None and bool(np.all(w < 0))


def _kept_axis(spec: CaseSpec) -> int | None:
    """weight_norm: the kept axis, normalized (None: one norm over the whole tensor)."""
    k = spec.hyper["kept_axis"]
    return None if k == "none" else int(k) % len(spec.shape)


def _zero_slice(eps_positive: bool) -> Predicate:
    """weight_norm: a slice whose norm is zero, with eps > 0 (w = 0) or eps = 0 (NaN)."""
    def test(s: Sample) -> bool:
        norm = s.vector.forward.get("norm")
        return (norm is not None and bool(np.any(norm == 0))
                and (float(s.spec.hyper["eps"]) > 0) == eps_positive)
    return test


def _eps_near_norm(s: Sample) -> bool:
    """weight_norm: eps > 0 within two decades of some slice's squared norm (both count)."""
    norm, eps = s.vector.forward.get("norm"), float(s.spec.hyper["eps"])
    if norm is None or eps == 0:
        return False
    sq = norm[np.isfinite(norm)] ** 2
    return bool(np.any((sq > 0) & (sq < 100 * eps)))


def _zero_var(s: Sample) -> bool:
    """weight_standardization: some output channel has zero variance (a constant channel)."""
    var = s.vector.forward.get("var")
    return var is not None and bool(np.any(var == 0))


def _eps_near_var(s: Sample) -> bool:
    """weight_standardization: eps > 0 within two decades of some channel's nonzero variance."""
    var, eps = s.vector.forward.get("var"), float(s.spec.hyper["eps"])
    if var is None or eps == 0:
        return False
    v = var[np.isfinite(var)]
    return bool(np.any((v > 0) & (v < 100 * eps)))


# --- the tables ------------------------------------------------------------------------------

def _power_sets(s: Sample) -> FloatArray:
    """power_norm's input as (sets, n): one row per reduction set."""
    x = s.vector.inputs["x"]
    a = _axis(s.spec, "axis")
    return np.asarray(x).reshape(math.prod(x.shape[:a]), -1)


def _power_zero_inside(s: Sample) -> bool:
    rows = _power_sets(s)
    zero = rows == 0
    return bool(np.any(zero.any(axis=1) & ~zero.all(axis=1)))


def _power_zero_set(s: Sample) -> bool:
    return bool(np.any((_power_sets(s) == 0).all(axis=1)))


def _power_one_nonzero(s: Sample) -> bool:
    rows = _power_sets(s)
    return rows.shape[1] > 1 and bool(np.any((rows != 0).sum(axis=1) == 1))


_DIST_ROWS: tuple[Row, ...] = (
    Row("normal input", "standard normal x", dist("normal")),
    Row("mean offset >= 1e3 std", "cancellation in the centered statistics",
        offset_at_least(1e3)),
    Row("mean offset >= 1e4 std", "cancellation beyond 16-bit dtypes", offset_at_least(1e4),
        dtypes=WIDE),
    Row("tiny scale", "squares below the dtype's normal range", dist("tiny")),
    Row("huge scale", "squares above the dtype's range", dist("huge")),
    Row("mixed scales in one set", "values orders of magnitude apart inside one reduction set "
        "or window: the large ones must not swamp the small ones", mixed_scale, minimum=2),
    Row("constant input", "zero variance / a flat window", dist("constant"), signal=False),
    Row("NaN input", "NaN propagation", dist("nan"), signal=False),
    Row("Inf input", "+-inf propagation", dist("inf"), signal=False),
)

_SIZE_ROWS: tuple[Row, ...] = (
    Row("batch of 1", "a leading axis of one", batch_of_one),
    Row("n = 1", "one value per statistic", size_is(lambda n: n == 1), signal=False),
    Row("n = 7", "odd reduction", size_is(lambda n: n == 7)),
    Row("n = 13", "odd reduction", size_is(lambda n: n == 13)),
    Row("n > 1000", "long reduction", size_is(lambda n: n > 1000)),
)

_AFFINE_ROWS: tuple[Row, ...] = (
    Row("weight and bias", "full affine", primals("weight", "bias")),
    Row("weight only", "no bias", primals("weight")),
    Row("bias only", "no weight", primals("bias")),
    Row("no affine", "neither weight nor bias", primals()),
)

_EPS_ROWS: tuple[Row, ...] = (
    Row("eps = 0", "no regularization", eps_zero),
    Row("eps >= 0.1", "eps comparable to the variance", hyper("eps", lambda e: e >= 0.1)),
)

_CHANNEL_ROWS: tuple[Row, ...] = (
    Row("channel axis not 1", "channels-last layouts (NHWC, NLC)", channels_last, minimum=2),
    Row("channels-last, C = size of axis 1", "a weight that also fits axis 1: assuming "
        "channels-first gives wrong values, not a shape error", channels_last_same_size,
        minimum=2),
)

_SEVERAL_AXES = Row("several reduced axes", "one statistic spans two or more axes of size > 1",
                    several_axes, minimum=2)

def _scaler_constant(zero_variance: str) -> Predicate:
    """standardize: a feature fitted constant (a zero fitted variance) under ``zero_variance``."""
    def test(s: Sample) -> bool:
        var = s.vector.forward.get("var") if training(s) else s.vector.inputs.get("var")
        return (s.spec.hyper.get("zero_variance") == zero_variance and var is not None
                and bool(np.any(var == 0)))
    return test


def _step_is(label: str) -> Predicate:
    """A call of a trajectory: ``eval`` (apply after a fit) or ``step2`` (a second fit)."""
    return lambda s: s.step == label


def _sn_singular_ratio(s: Sample) -> float:
    """spectral_norm: sigma_2 / sigma_1 of the (rounded) weight's matrix view (0 for rank 1)."""
    x = s.vector.inputs.get("x")
    if x is None or not np.isfinite(x).all() or not np.any(x):
        return 0.0
    dim = _axis(s.spec, "dim", 0)
    values = np.linalg.svd(np.moveaxis(x, dim, 0).reshape(x.shape[dim], -1),
                           compute_uv=False)
    return float(values[1] / values[0]) if values.size > 1 else 0.0


def _sn_power(s: Sample) -> bool:
    return s.spec.hyper.get("mode") == "power_iteration"


_SPECTRAL_ROWS: tuple[Row, ...] = (
    Row("exact mode", "sigma from the SVD, the singular pair's motion in the second order",
        hyper("mode", lambda m: m == "exact"), minimum=2),
    Row("power iteration, training", "u, v iterated from the state and returned",
        both(_sn_power, training), minimum=2),
    Row("v_first order", "v = N(M^T u), then u = N(M v): the paper, the PyTorch hook, Flax",
        both(_sn_power, training, hyper("update_order", lambda o: o == "v_first")), minimum=2),
    Row("u_first order", "u = N(M v), then v = N(M^T u): the PyTorch parametrization",
        both(_sn_power, training, hyper("update_order", lambda o: o == "u_first")), minimum=2),
    Row("several iterations", "n_power_iterations > 1 in one call",
        both(training, hyper("n_power_iterations", lambda n: n > 1)), minimum=2),
    Row("evaluation", "no iteration: sigma = u^T M v from the given state",
        both(_sn_power, hyper("training", lambda t: t is False)), minimum=2),
    Row("state carried", "a training step after the first, from the implementation's own u, v",
        _step_is("step2"), minimum=2),
    Row("evaluation after training", "a trajectory's evaluation with the carried state",
        both(_sn_power, _step_is("eval")), minimum=2),
    Row("transposed convolution", "dim = 1: (I, O, kh, kw) viewed as (O, I kh kw)",
        hyper("dim", lambda d: d == 1), minimum=2),
    Row("convolution weight", "a 4-d weight flattened behind its dim axis",
        lambda s: len(s.spec.shape) == 4, minimum=2),
    Row("rank 1", "sigma_2 = 0: repeated zero singular values", lambda s: bool(
        np.any(s.vector.inputs.get("x", 0.0))) and _sn_singular_ratio(s) < 1e-6, minimum=2),
    Row("close top singular values", "sigma_2 / sigma_1 > 0.9: the gradient carries 1/gap",
        lambda s: 0.9 < _sn_singular_ratio(s) < 1.0 - 1e-6),
    Row("repeated top singular value", "forward only: sigma not differentiable",
        lambda s: _sn_singular_ratio(s) > 1.0 - 1e-6),
    Row("eps branch", "||M^T u|| below eps: N divides by eps", hyper("eps", lambda e: e >= 0.1)),
    *_SIZE_ROWS, *(r for r in _DIST_ROWS if r.name not in ("mean offset >= 1e4 std",
                                                           "mixed scales in one set")),
)


_STANDARDIZE_ROWS: tuple[Row, ...] = (
    Row("fit", "statistics from x, returned as state; y standardized with them", training),
    Row("apply", "given fitted statistics, constants for the derivatives",
        both(hyper("training", lambda t: t is False), lambda s: not s.step), minimum=2),
    Row("fit then apply", "a trajectory's evaluation batch (another shape and distribution) "
        "with the state the implementation itself fitted", _step_is("eval"), minimum=2),
    Row("refit replaces", "a second fit replaces the state, no merging", _step_is("step2")),
    Row("ddof = 0", "biased variance (scikit-learn, ONNX)",
        both(training, hyper("ddof", lambda d: d == 0)), minimum=2),
    Row("ddof = 1", "unbiased variance", both(training, hyper("ddof", lambda d: d == 1)),
        minimum=2),
    Row("eps inside sqrt, visible", "sqrt(var + eps) with eps >= 0.1",
        both(hyper("eps_placement", lambda p: p == "inside_sqrt"),
             hyper("eps", lambda e: e >= 0.1)), minimum=2),
    Row("eps outside sqrt, visible", "sqrt(var) + eps with eps >= 0.1",
        both(hyper("eps_placement", lambda p: p == "outside_sqrt"),
             hyper("eps", lambda e: e >= 0.1)), minimum=2),
    Row("ONNX MeanVarianceNormalization", "axes 0,2,3, eps 1e-9 outside the sqrt",
        both(hyper("axis", lambda a: a == "0,2,3"), hyper("eps", lambda e: e == 1e-9)),
        minimum=2),
    Row("scikit-learn StandardScaler", "ddof 0, no eps, unit scale for constant features",
        both(hyper("zero_variance", lambda z: z == "unit_scale"), eps_zero), minimum=2),
    Row("constant feature, unit scale", "zero variance: scale 1, y = x - mean",
        _scaler_constant("unit_scale"), minimum=2, signal=False),
    Row("constant feature, IEEE", "zero variance divided as IEEE says (eps > 0: 0; eps = 0: NaN)",
        _scaler_constant("ieee"), minimum=2, signal=False),
    Row("axis without 0", "statistics per sample (rows, spatial)",
        both(training, lambda s: 0 not in reduced_axes(s.spec))),
    _SEVERAL_AXES, *_SIZE_ROWS, *_EPS_ROWS, *_DIST_ROWS,
)

def _minmax_zero_range(s: Sample) -> bool:
    """min_max_scale: a feature fitted constant (data_min == data_max)."""
    src = s.vector.forward if training(s) else s.vector.inputs
    lo, hi = src.get("data_min"), src.get("data_max")
    return lo is not None and hi is not None and bool(np.any(lo == hi))


def _minmax_tied(s: Sample) -> bool:
    """min_max_scale: a fit with an extreme reached at two positions of a varying feature."""
    lo, hi = s.vector.forward.get("data_min"), s.vector.forward.get("data_max")
    x = s.vector.inputs.get("x")
    if not training(s) or lo is None or hi is None or x is None:
        return False
    axes = reduced_axes(s.spec)
    keep = tuple(i for i in range(x.ndim) if i not in axes)
    rows = np.transpose(x, keep + axes).reshape(lo.size, -1)
    varying = lo.reshape(-1) != hi.reshape(-1)
    ties = ((rows == lo.reshape(-1, 1)).sum(axis=1) > 1) | ((rows == hi.reshape(-1, 1)).sum(
        axis=1) > 1)
    return bool(np.any(varying & ties))


def _minmax_cut(s: Sample) -> bool:
    """min_max_scale: an apply with clip where some value lands outside the range."""
    y = s.vector.forward.get("y")
    if training(s) or s.spec.hyper.get("clip") is not True or y is None:
        return False
    a, b = s.spec.hyper["range_min"], s.spec.hyper["range_max"]
    return bool(np.any(y == a) or np.any(y == b))


_MIN_MAX_ROWS: tuple[Row, ...] = (
    Row("fit", "extremes from x, returned as state; y scaled with them", training),
    Row("apply", "given fitted extremes, constants for the derivatives",
        both(hyper("training", lambda t: t is False), lambda s: not s.step), minimum=2),
    Row("fit then apply", "a trajectory's evaluation batch with the implementation's own "
        "fitted state", _step_is("eval"), minimum=2),
    Row("refit replaces", "a second fit replaces the state, no merging", _step_is("step2")),
    Row("range [0, 1]", "scikit-learn's default feature_range",
        both(hyper("range_min", lambda a: a == 0.0), hyper("range_max", lambda b: b == 1.0)),
        minimum=2),
    Row("other range", "feature_range other than (0, 1)",
        hyper("range_min", lambda a: a != 0.0), minimum=2),
    Row("clip cuts", "applied values beyond the fitted extremes clipped (slope 0)", _minmax_cut,
        minimum=2),
    Row("zero range", "a constant feature: divisor 1, y = range_min + (b - a)(x - min)",
        _minmax_zero_range, minimum=2, signal=False),
    Row("tied extremes", "the min/max subgradient split among tied positions", _minmax_tied,
        minimum=1),
    _SEVERAL_AXES, *_SIZE_ROWS, *_DIST_ROWS,
)

_L2_ROWS: tuple[Row, ...] = (
    Row("clamped branch", "norm below eps (and not zero): y = w x / eps", clamped, minimum=2),
    Row("unclamped with eps > 0", "norm above eps: y = w x / norm",
        both(unclamped, hyper("eps", lambda e: e > 0))),
    Row("zero vector", "eps > 0: y = 0, the gradient w g / eps", zero_vector, signal=False),
    Row("one nonzero element", "y = w sign(x) there, 0 elsewhere", one_nonzero),
    *_SIZE_ROWS, *_EPS_ROWS[:1],
    *(r for r in _DIST_ROWS if r.name != "mean offset >= 1e4 std"),
)
"""fix_norm, scale_norm and unit_norm: lp_norm's (p = 2) branches, the zero vector and one
nonzero element (no mean is subtracted, so no 1e4-offset row)."""

_AXIS_NOT_LAST = Row("axis not last", "vectors along a leading axis",
                     lambda s: _axis(s.spec, "axis") != len(s.spec.shape) - 1, minimum=2)

def _gradnorm_tasks(count: int) -> Predicate:
    """gradnorm: T tasks (x is (2, T))."""
    return lambda s: s.spec.shape[1] == count


def _gradnorm_at_target(s: Sample) -> bool:
    """gradnorm: a task whose weighted norm equals its target exactly (sign 0)."""
    big, target = s.vector.forward.get("weighted_norms"), s.vector.forward.get("targets")
    return big is not None and target is not None and bool(np.any(big == target))


def _gradnorm_zero(row: int) -> Predicate:
    """gradnorm: a zero in row 0 (a gradient norm) or row 1 (a loss) of x."""
    def test(s: Sample) -> bool:
        x = s.vector.inputs.get("x")
        return x is not None and bool(np.any(x[row] == 0))
    return test


def _gradnorm_off_sum(s: Sample) -> bool:
    """gradnorm: weights entering a training step that do not sum to T."""
    w = s.vector.inputs.get("weights")
    return (training(s) and w is not None
            and abs(float(np.sum(w)) - w.size) > 1e-6 * w.size)


def _gradnorm_magnitude(check: Callable[[float], bool]) -> Predicate:
    """gradnorm: the largest gradient norm or loss of the call passes ``check``."""
    def test(s: Sample) -> bool:
        x = s.vector.inputs.get("x")
        return x is not None and check(float(np.max(np.abs(x))))
    return test


_GRADNORM_ROWS: tuple[Row, ...] = (
    Row("single step", "one training step: y, the weights and the derivatives in x",
        both(training, lambda s: not s.step), minimum=2),
    Row("trajectory step", "a later step of a run, from the implementation's own weights",
        lambda s: s.step not in ("", "step1", "eval"), minimum=2),
    Row("evaluation", "training = false: the weights are read, not updated",
        hyper("training", lambda t: t is False), minimum=2),
    Row("alpha = 0", "every target is the mean weighted norm", hyper("alpha", lambda a: a == 0),
        minimum=2),
    Row("alpha = 0.12", "the paper's NYUv2 asymmetry", hyper("alpha", lambda a: a == 0.12),
        minimum=2),
    Row("alpha = 1.5", "the paper's toy-example asymmetry", hyper("alpha", lambda a: a == 1.5),
        minimum=2),
    Row("T = 1", "one task: its target is its own norm", _gradnorm_tasks(1)),
    Row("T = 2", "two tasks", _gradnorm_tasks(2), minimum=2),
    Row("T = 3", "three tasks", _gradnorm_tasks(3), minimum=2),
    Row("T = 4", "four tasks", _gradnorm_tasks(4), minimum=2),
    Row("T = 5", "five tasks", _gradnorm_tasks(5), minimum=2),
    Row("task at target", "G_i = c_i exactly: sign 0, zero gradient", _gradnorm_at_target,
        minimum=2),
    Row("zero gradient norm", "g_i = 0: G_i = 0 and a zero gradient for w_i", _gradnorm_zero(0),
        minimum=2),
    Row("zero loss", "L_i(t) = 0: r_i = 0, r_i^0 = 1", _gradnorm_zero(1), minimum=2),
    Row("weights off sum T", "weights entering a step that do not sum to T", _gradnorm_off_sum,
        minimum=2),
    Row("large magnitudes", "norms or losses above 100", _gradnorm_magnitude(lambda m: m > 100),
        minimum=2),
    Row("tiny magnitudes", "norms and losses below 1e-20",
        _gradnorm_magnitude(lambda m: m < 1e-20), dtypes=("float64", "float32", "bfloat16")),
)

def _qk_zero_query(s: Sample) -> bool:
    """qk_norm: a query vector of zeros (the L2 clamp or RMSNorm's 1/sqrt(eps) branch)."""
    x = s.vector.inputs.get("x")
    return x is not None and bool(np.any(np.all(x == 0, axis=-1)))


def _qk_tq_ne_tk(s: Sample) -> bool:
    t = 2 if s.spec.hyper["layout"] == "bhtd" else 1
    return s.spec.shapes["k"][t] != s.spec.shape[t]


def _qk_axis_size(name: str) -> Callable[[Sample], int]:
    """The size of axis ``name`` ("H" or "T") of the queries in the case's layout."""
    def size(s: Sample) -> int:
        bhtd = s.spec.hyper["layout"] == "bhtd"
        return s.spec.shape[{"H": 1, "T": 2}[name] if bhtd else {"H": 2, "T": 1}[name]]
    return size


_QK_ROWS: tuple[Row, ...] = (
    Row("L2 (QKNorm)", "q / max(||q||, eps) over Dh", hyper("variant", lambda v: v == "l2"),
        minimum=2),
    Row("L2, learned gain", "QKNorm's scalar g is an input: its gradient sums over the logits",
        both(hyper("variant", lambda v: v == "l2"), lambda s: "gain" in s.spec.present),
        minimum=2),
    Row("L2, fixed scale", "no gain: logit_scale alone",
        both(hyper("variant", lambda v: v == "l2"), lambda s: "gain" not in s.spec.present)),
    Row("RMSNorm per head", "over Dh, weights (Dh,) shared by the heads (Qwen3, Gemma 3)",
        both(hyper("variant", lambda v: v == "rms"), hyper("norm_axes", lambda a: a == "head")),
        minimum=2),
    Row("RMSNorm over the hidden axes", "over H * Dh per token, weights (H, Dh) (OLMo-2)",
        hyper("norm_axes", lambda a: a == "hidden"), minimum=2),
    Row("RMSNorm without weights", "no q_weight, k_weight",
        both(hyper("variant", lambda v: v == "rms"), lambda s: "q_weight" not in s.spec.present)),
    Row("channels-last (B, T, H, Dh)", "the logits still (B, H, Tq, Tk)",
        hyper("layout", lambda v: v == "bthd"), minimum=2),
    Row("Tq != Tk", "queries and keys of different lengths", _qk_tq_ne_tk, minimum=2),
    Row("one query", "a decoding step", lambda s: _qk_axis_size("T")(s) == 1, minimum=2),
    Row("H = 1", "a single head", lambda s: _qk_axis_size("H")(s) == 1, minimum=2),
    Row("logit scale != 1", "the fixed factor reaches the output and every derivative",
        hyper("logit_scale", lambda c: c != 1.0), minimum=2),
    Row("zero query vector", "the L2 clamp (g / eps) or RMSNorm's rrms = 1/sqrt(eps)",
        _qk_zero_query, minimum=2),
    Row("eps dominates", "eps >= 0.01 against norms near or below it",
        hyper("eps", lambda e: e >= 0.01), minimum=2),
    Row("Dh = 1", "one value per head vector", lambda s: s.spec.shape[-1] == 1),
    Row("Dh >= 128", "a realistic head dimension", lambda s: s.spec.shape[-1] >= 128),
    *_EPS_ROWS[:1],
    *(r for r in _DIST_ROWS if r.name in ("normal input", "mean offset >= 1e3 std",
                                          "tiny scale", "huge scale", "mixed scales in one set",
                                          "NaN input")),
)

COVERAGE: Mapping[str, tuple[Row, ...]] = {
    "batch_norm": (
        Row("training", "batch statistics", training),
        Row("evaluation", "running statistics normalize", hyper("training", lambda t: t is False)),
        _SEVERAL_AXES, *_CHANNEL_ROWS,
        Row("unbiased running variance", "var * n/(n-1) enters the running average",
            estimator("unbiased"), minimum=2),
        Row("biased running variance", "var enters the running average", estimator("biased"),
            minimum=2),
        Row("cumulative, first batch", "f = 1/(0+1): the batch replaces the running statistics",
            cumulative(later=False), minimum=2),
        Row("cumulative, later batch", "f = 1/(num_batches_tracked+1)", cumulative(later=True),
            minimum=2),
        Row("batch_stat_weight direction", "a numeric f != 1 - f: the weight of the new batch",
            momentum_direction, minimum=2),
        Row("batch_stat_weight = 0", "the running statistics do not move",
            both(training, hyper("batch_stat_weight", lambda f: f == 0.0))),
        Row("trajectory, biased", "5+ training steps, each from the implementation's own "
            "state, then evaluation", trajectory("biased"), minimum=2),
        Row("trajectory, unbiased", "the same with the unbiased running variance",
            trajectory("unbiased"), minimum=2),
        Row("running_var = 0 (evaluation)", "eps alone bounds the output",
            lambda s: not training(s) and s.spec.dists.get("running_var") is not None
            and s.spec.dists["running_var"].kind == "constant"),
        *_SIZE_ROWS, *_AFFINE_ROWS, *_EPS_ROWS[:1], *_DIST_ROWS,
    ),
    "sync_batch_norm": (
        Row("training", "global statistics over every worker's shard", training),
        Row("evaluation", "running statistics normalize; no statistics are exchanged",
            hyper("training", lambda t: t is False), minimum=2),
        Row("two workers", "W = 2", workers(lambda w: len(w) == 2), minimum=2),
        Row("three workers", "W = 3", workers(lambda w: len(w) == 3), minimum=2),
        Row("four workers", "W = 4", workers(lambda w: len(w) == 4), minimum=2),
        Row("uneven shards", "workers hold different counts: the merge weights by count",
            both(training, workers(lambda w: len(set(w)) > 1)), minimum=2),
        Row("equal shards", "every worker holds the same count",
            both(training, workers(lambda w: len(w) > 1 and len(set(w)) == 1)), minimum=2),
        Row("an empty worker", "a worker with no rows takes part in every collective",
            workers(lambda w: 0 in w), minimum=2),
        Row("one row per worker", "every worker holds one sample",
            workers(lambda w: len(w) > 1 and set(w) == {1})),
        Row("global count in the correction", "unbiased update where a worker's own count "
            "differs from the global one", local_count_differs, minimum=2),
        Row("unbiased running variance", "var * n/(n-1), n the global count",
            estimator("unbiased"), minimum=2),
        Row("biased running variance", "var enters the running average", estimator("biased"),
            minimum=2),
        Row("cumulative, first batch", "f = 1/(0+1)", cumulative(later=False)),
        Row("cumulative, later batch", "f = 1/(num_batches_tracked+1)", cumulative(later=True)),
        Row("trajectory, biased", "5 training steps from the implementation's own state, "
            "then evaluation", trajectory("biased")),
        Row("trajectory, unbiased", "the same with the unbiased running variance",
            trajectory("unbiased")),
        _SEVERAL_AXES, _CHANNEL_ROWS[0],
        _AFFINE_ROWS[0], _AFFINE_ROWS[3], _EPS_ROWS[0],
        *(r for r in _DIST_ROWS if r.name not in ("mixed scales in one set", "Inf input")),
    ),
    "ghost_batch_norm": (
        Row("training", "per-ghost-batch statistics", training),
        Row("evaluation", "running statistics normalize; the batch is not split",
            hyper("training", lambda t: t is False)),
        Row("several ghost batches", "1 < G: each slice has its own statistics, and the "
            "running update averages G of them", ghosts(lambda g, n: g > 1), minimum=2),
        Row("one ghost batch", "ghost_batch_size = N: batch norm", ghosts(lambda g, n: g == 1)),
        Row("ghost batches of one sample", "ghost_batch_size = 1: per-sample statistics",
            ghosts(lambda g, n: g == n), minimum=2, signal=False),
        Row("evaluation, N not a multiple", "evaluation does not split the batch",
            lambda s: not training(s)
            and s.spec.shape[0] % int(str(s.spec.hyper["ghost_batch_size"])) != 0),
        _SEVERAL_AXES, *_CHANNEL_ROWS,
        Row("unbiased running variance", "mean ghost var * n/(n-1), n of one ghost batch",
            estimator("unbiased"), minimum=2),
        Row("biased running variance", "the mean within-ghost variance", estimator("biased"),
            minimum=2),
        Row("cumulative, first batch", "f = 1: the ghost averages replace the state",
            cumulative(later=False), minimum=2),
        Row("cumulative, later batch", "f = 1/(num_batches_tracked+1), counted in steps",
            cumulative(later=True), minimum=2),
        Row("batch_stat_weight direction", "a numeric f != 1 - f: the weight of the new "
            "statistics", momentum_direction, minimum=2),
        Row("batch_stat_weight = 0", "the running statistics do not move",
            both(training, hyper("batch_stat_weight", lambda f: f == 0.0))),
        Row("trajectory, biased", "5+ training steps, each from the implementation's own "
            "state, then evaluation", trajectory("biased"), minimum=2),
        Row("trajectory, unbiased", "the same with the unbiased running variance",
            trajectory("unbiased"), minimum=2),
        *_SIZE_ROWS, *_AFFINE_ROWS, *_EPS_ROWS[:1], *_DIST_ROWS,
    ),
    "batch_renorm": (
        Row("training", "batch statistics corrected by r and d", training),
        Row("evaluation", "batch norm's, with the running statistics",
            hyper("training", lambda t: t is False)),
        Row("r clipped", "sigma / sigma_running outside [1/rmax, rmax]: r at a bound",
            renorm_bound("r", clipped=True), minimum=2),
        Row("r not clipped", "r = sigma / sigma_running inside its bounds (a derivative "
            "through r would show)", renorm_bound("r", clipped=False), minimum=2),
        Row("d clipped", "|mean - running_mean| / sigma_running above dmax: d at a bound",
            renorm_bound("d", clipped=True), minimum=2),
        Row("d not clipped", "d inside [-dmax, dmax] (a derivative through d would show)",
            renorm_bound("d", clipped=False), minimum=2),
        Row("rmax = 1, dmax = 0", "r = 1, d = 0: batch norm", both(
            training, hyper("rmax", lambda r: r == 1.0), hyper("dmax", lambda d: d == 0.0)),
            minimum=2),
        Row("bounds change in a trajectory", "rmax or dmax other than the step before's: the "
            "caller's schedule", bounds_changed, minimum=2),
        _SEVERAL_AXES, *_CHANNEL_ROWS,
        Row("unbiased running variance", "var * n/(n-1) enters the running average",
            estimator("unbiased"), minimum=2),
        Row("biased running variance", "var enters the running average", estimator("biased"),
            minimum=2),
        Row("cumulative, first batch", "f = 1: the batch replaces the state; r and d from the "
            "state before", cumulative(later=False), minimum=2),
        Row("cumulative, later batch", "f = 1/(num_batches_tracked+1)", cumulative(later=True),
            minimum=2),
        Row("batch_stat_weight direction", "a numeric f != 1 - f: the weight of the new batch",
            momentum_direction, minimum=2),
        Row("batch_stat_weight = 0", "the running statistics do not move",
            both(training, hyper("batch_stat_weight", lambda f: f == 0.0))),
        Row("batch_stat_weight = 1", "the batch replaces the running statistics",
            both(training, hyper("batch_stat_weight", lambda f: f == 1.0))),
        Row("trajectory, biased", "5+ training steps, each from the implementation's own "
            "state, then evaluation", trajectory("biased"), minimum=2),
        Row("trajectory, unbiased", "the same with the unbiased running variance",
            trajectory("unbiased"), minimum=2),
        # eps = 0 is left out: F.batch_norm refuses it in training (T1), batch_norm covers it
        *_SIZE_ROWS, *_AFFINE_ROWS, *_EPS_ROWS[1:],
        *_DIST_ROWS,
    ),
    "sequence_batch_norm": (
        Row("training", "batch statistics over the valid frames", training),
        Row("evaluation", "running statistics normalize the valid frames",
            hyper("training", lambda t: t is False), minimum=2),
        Row("sequence-wise", "one statistic per channel over every valid (n, t)",
            both(training, hyper("statistics", lambda v: v == "sequence")), minimum=2),
        Row("frame-wise", "one statistic per (t, c) over the valid n",
            both(training, hyper("statistics", lambda v: v == "frame")), minimum=2),
        Row("uneven lengths", "padding at the end of some sequences: it must stay out of the "
            "statistics and receive no gradient", mask_is(lambda m: bool(m.any() and not m.all())),
            minimum=4),
        Row("no padding", "a full mask: batch norm over batch (and time)",
            mask_is(lambda m: bool(m.all()))),
        Row("a sequence of length 0", "a whole row of the mask is padding",
            mask_is(lambda m: bool((~m.any(axis=1)).any() and m.any())), minimum=2),
        Row("a frame with one valid element", "k = 1: var = 0, y = bias there",
            both(hyper("statistics", lambda v: v == "frame"), counts_are(
                lambda k: bool((k == 1).any()))), minimum=2),
        Row("a statistic without valid elements", "k = 0: NaN statistics, running statistics "
            "kept, zero gradient", counts_are(lambda k: bool((k == 0).any())), minimum=2,
            signal=False),
        Row("NaN or Inf at padding", "values that must never be read: outputs stay finite",
            padding_holds(lambda p, v: bool(np.any(~np.isfinite(p)))), minimum=2),
        Row("huge values at padding", "finite padding >= 1e3 x the valid values: counted, it "
            "would dominate the statistics", padding_holds(_huge_padding), minimum=2),
        Row("channels-first", "(N, C, T): channel_axis = 1, the mask still (N, T)",
            lambda s: _axis(s.spec, "channel_axis", -1) == 1, minimum=2),
        Row("unbiased running variance", "var * k/(k-1) with the valid count k",
            running_estimator("unbiased"), minimum=2),
        Row("biased running variance", "var enters the running average",
            running_estimator("biased"), minimum=2),
        Row("cumulative, first batch", "f = 1: the batch replaces the running statistics",
            cumulative(later=False), minimum=2),
        Row("cumulative, later batch", "f = 1/(num_batches_tracked+1)", cumulative(later=True),
            minimum=2),
        Row("batch_stat_weight direction", "a numeric f != 1 - f: the weight of the new batch",
            momentum_direction, minimum=2),
        Row("trajectory, biased", "5+ training steps, each from the implementation's own "
            "state, then evaluation", trajectory("biased"), minimum=2),
        Row("trajectory, unbiased", "the same with the unbiased running variance",
            trajectory("unbiased"), minimum=2),
        Row("batch of 1", "a single sequence", batch_of_one),
        Row("k = 7", "odd count of valid frames", counts_are(lambda k: bool((k == 7).any()))),
        Row("k = 13", "odd count of valid frames", counts_are(lambda k: bool((k == 13).any()))),
        Row("k > 1000", "long reduction over valid frames",
            counts_are(lambda k: bool((k > 1000).any()))),
        *_AFFINE_ROWS, *_EPS_ROWS[:1],
        *(r for r in _DIST_ROWS if r.name not in ("NaN input", "Inf input")),
    ),
    "mixed_eval_batch_norm": (
        Row("alpha = 0", "batch_norm's evaluation: the batch enters multiplied by 0",
            hyper("alpha", lambda a: a == 0.0), minimum=2),
        Row("alpha = 1", "batch_norm's training normalization (biased batch variance)",
            hyper("alpha", lambda a: a == 1.0), minimum=2),
        Row("0 < alpha < 1, alpha != 1/2", "a mixture whose weights tell the batch side from "
            "the running side", hyper("alpha", lambda a: 0.0 < a < 1.0 and a != 0.5), minimum=2),
        Row("variance of the mixture", "the gap term alpha (1 - alpha) (mean_b - running_mean)^2 "
            "stands out of the dtype's roundoff", mixture_gap, minimum=2),
        _SEVERAL_AXES, *_CHANNEL_ROWS, *_SIZE_ROWS, *_AFFINE_ROWS, *_EPS_ROWS[:1], *_DIST_ROWS,
    ),
    "batch_instance_norm": (
        Row("training", "batch statistics in the batch part", training),
        Row("evaluation", "running statistics in the batch part, instance statistics always",
            hyper("training", lambda t: t is False), minimum=2),
        Row("gate inside (0, 1)", "a blend of batch and instance norm", gate("inside"),
            minimum=2),
        Row("gate at a clip end", "rho exactly 0 or 1: the clip's slope there is 1",
            gate("end"), minimum=2),
        Row("gate outside [0, 1]", "clipped in the forward, no gradient", gate("outside"),
            minimum=2),
        _SEVERAL_AXES, *_CHANNEL_ROWS,
        Row("unbiased running variance", "var * n/(n-1) enters the running average",
            estimator("unbiased"), minimum=2),
        Row("biased running variance", "var enters the running average", estimator("biased"),
            minimum=2),
        Row("cumulative, first batch", "f = 1: the batch replaces the running statistics",
            cumulative(later=False)),
        Row("cumulative, later batch", "f = 1/(num_batches_tracked+1)", cumulative(later=True)),
        Row("batch_stat_weight direction", "a numeric f != 1 - f: the weight of the new batch",
            momentum_direction, minimum=2),
        Row("trajectory, biased", "5+ training steps, each from the implementation's own "
            "state, then evaluation", trajectory("biased"), minimum=2),
        Row("trajectory, unbiased", "the same with the unbiased running variance",
            trajectory("unbiased"), minimum=2),
        # n = 1 is left out: a spatial size of 1 makes each instance constant (instance_norm
        # covers it, and F.instance_norm refuses it, T3)
        *(r for r in _SIZE_ROWS if r.name != "n = 1"),
        *(Row(r.name, r.what, primals("rho", *names)) for r, names in zip(
            _AFFINE_ROWS, (("weight", "bias"), ("weight",), ("bias",), ()), strict=True)),
        *_EPS_ROWS[:1], *_DIST_ROWS,
    ),
    "adaptive_layer_norm": (
        Row("adaLN (ungated)", "y = z (1 + scale) + shift", hyper("gated", lambda g: g is False),
            minimum=2),
        Row("adaLN-Zero (gated)", "y = gate (z (1 + scale) + shift): the gate's columns",
            hyper("gated", lambda g: g is True), minimum=2),
        Row("SiLU on cond", "the activation's derivative on the path to cond",
            hyper("activation", lambda a: a == "silu"), minimum=2),
        Row("no activation", "cond enters the map as is",
            hyper("activation", lambda a: a == "none")),
        Row("zero-initialised map", "W = b = 0: the plain layer norm, or y = 0 gated",
            lambda s: "weight" in s.vector.inputs and not np.any(s.vector.inputs["weight"]),
            minimum=2, signal=False),
        Row("token axes", "x (N, L, D): the modulation broadcasts over the tokens",
            lambda s: len(s.spec.shape) >= 3, minimum=2),
        Row("two token axes", "a patch grid (N, H, W, D)", lambda s: len(s.spec.shape) >= 4),
        Row("(N, D) input", "no token axis", lambda s: len(s.spec.shape) == 2),
        Row("map with bias", "u W + b", primals("cond", "weight", "bias"), minimum=2),
        Row("map without bias", "u W", primals("cond", "weight"), minimum=2),
        Row("non-finite cond", "NaN/inf in the conditioning vector poisons its sample",
            lambda s: s.spec.dists["cond"].kind in ("nan", "inf"), minimum=2, signal=False),
        *_SIZE_ROWS, *_EPS_ROWS, *_DIST_ROWS,
    ),
    "layer_norm": (
        _SEVERAL_AXES, Row("1-d input", "the whole input is one set",
                           lambda s: len(s.spec.shape) == 1),
        *_SIZE_ROWS, *_AFFINE_ROWS, *_EPS_ROWS, *_DIST_ROWS,
    ),
    "rms_norm": (
        _SEVERAL_AXES, Row("1-d input", "the whole input is one set",
                           lambda s: len(s.spec.shape) == 1),
        *_SIZE_ROWS, *_AFFINE_ROWS,
        Row("bias over several axes", "the bias gradient sums over every leading axis",
            both(primals("weight", "bias"), lambda s: len(s.spec.shape) >= 3)),
        *_EPS_ROWS, *_DIST_ROWS,
    ),
    "power_norm": (
        Row("p < 1", "the power mean of a quasi-norm: small values dominate",
            hyper("p", lambda p: p < 1), minimum=2),
        Row("p = 1", "the mean absolute value; sign(0) = 0", hyper("p", lambda p: p == 1)),
        Row("1 < p < 2", "phi'' unbounded at 0: the convention phi''(0) = 0",
            hyper("p", lambda p: 1 < p < 2), minimum=2),
        Row("p = 2", "rms_norm exactly", hyper("p", lambda p: p == 2)),
        Row("p > 2", "large values dominate", hyper("p", lambda p: p > 2), minimum=2),
        Row("zeros inside a set", "phi'(0) = 0 (and phi''(0) = 0): the derivative convention",
            _power_zero_inside, minimum=2),
        Row("all-zero set", "mean_power = 0: y = bias (eps > 0) or NaN (eps = 0)",
            _power_zero_set, minimum=2, signal=False),
        Row("one nonzero in a set", "y = sign(x) n^(1/p) there with eps = 0",
            _power_one_nonzero),
        _SEVERAL_AXES, Row("1-d input", "the whole input is one set",
                           lambda s: len(s.spec.shape) == 1),
        *_SIZE_ROWS, *_AFFINE_ROWS, *_EPS_ROWS,
        *(r for r in _DIST_ROWS if r.name not in ("mean offset >= 1e4 std", "constant input",
                                                  "Inf input")),
    ),
    "adaptive_instance_norm": (
        Row("unbiased estimator", "var/(n-1) on both inputs, the paper's code",
            hyper("variance_estimator", lambda e: e == "unbiased"), minimum=2),
        Row("biased estimator", "var/n on both inputs",
            hyper("variance_estimator", lambda e: e == "biased"), minimum=2),
        Row("style size != content size", "m != n: the estimator's factors do not cancel",
            lambda s: s.spec.shapes["style"] != s.spec.shape, minimum=2),
        Row("unbiased, n = 2", "the smallest unbiased set",
            both(hyper("variance_estimator", lambda e: e == "unbiased"),
                 size_is(lambda n: n == 2))),
        Row("style variance near eps", "eps = 0.1 against a style of scale 0.2: where eps "
            "goes shows", hyper("eps", lambda e: e >= 0.1), minimum=2),
        _SEVERAL_AXES, *_CHANNEL_ROWS,
        Row("3 spatial axes", "NCDHW", lambda s: len(s.spec.shape) == 5),
        *_SIZE_ROWS, *_EPS_ROWS[:1],
        # tiny content with eps > 0 leaves y = style_mean to the dtype's last bit: only eps = 0
        # keeps x in the output
        *(r for r in _DIST_ROWS if r.name != "tiny scale"),
        Row("tiny scale", "squares below the dtype's normal range, eps = 0",
            both(dist("tiny"), eps_zero)),
        Row("style offset >= 1e3 std", "cancellation in the style's statistics",
            style_dist("offset")),
        Row("style offset >= 1e4 std", "beyond 16-bit dtypes",
            lambda s: style_dist("offset")(s) and abs(s.spec.dists["style"].get("ratio")) >= 1e4,
            dtypes=WIDE),
        Row("style tiny", "style variance far below eps: style_std = sqrt(eps)",
            style_dist("tiny")),
        Row("style huge", "style squares above the dtype's range", style_dist("huge")),
        Row("style mixed scales", "style values over several decades", style_dist("decades"),
            minimum=2),
        Row("style constant", "style_std = sqrt(eps)", style_dist("constant"), signal=False),
        Row("style NaN", "NaN propagation from the style", style_dist("nan"), signal=False),
        Row("style Inf", "inf - inf in the style's variance", style_dist("inf"), signal=False),
    ),
    "conditional_instance_norm": (
        Row("repeated style", "two samples share a row: their table gradients add",
            lambda s: len(set(_styles(s))) < len(_styles(s)), minimum=2),
        Row("unused rows", "rows no sample selects: zero table gradients",
            lambda s: len(set(_styles(s))) < s.spec.shapes["weight"][0], minimum=2),
        Row("several styles in a batch", "different rows side by side",
            lambda s: len(set(_styles(s))) > 1, minimum=2),
        Row("style != batch position", "row style[k] for sample k, not row k",
            lambda s: any(v != k for k, v in enumerate(_styles(s))), minimum=2),
        _SEVERAL_AXES, *_CHANNEL_ROWS,
        Row("3 spatial axes", "NCDHW", lambda s: len(s.spec.shape) == 5),
        *_SIZE_ROWS, *_EPS_ROWS, *_DIST_ROWS,
    ),
    "instance_norm": (
        _SEVERAL_AXES, *_CHANNEL_ROWS,
        Row("3 spatial axes", "NCDHW", lambda s: len(s.spec.shape) == 5),
        *_SIZE_ROWS, *_AFFINE_ROWS, *_EPS_ROWS[:1], *_DIST_ROWS,
    ),
    "group_norm": (
        _SEVERAL_AXES, *_CHANNEL_ROWS,
        Row("1 < groups < C", "groups of several channels, several groups",
            lambda s: 1 < int(str(s.spec.hyper["groups"]))
            < s.spec.shape[channel_axis(s.spec)]),
        Row("groups = 1", "one group: layer norm over C and space",
            hyper("groups", lambda g: g == 1)),
        Row("groups = C", "one channel per group: instance norm",
            lambda s: s.spec.hyper["groups"] == s.spec.shape[channel_axis(s.spec)]),
        *_SIZE_ROWS, *_AFFINE_ROWS, *_EPS_ROWS[:1], *_DIST_ROWS,
    ),
    "lp_norm": (
        Row("p = 1", "sum of |x|", hyper("p", lambda p: p == 1.0)),
        Row("p = 2", "Euclidean norm", hyper("p", lambda p: p == 2.0)),
        Row("other p", "p = 1.5, 3, 4", hyper("p", lambda p: p not in (1.0, 2.0))),
        Row("p = 1, eps = 0", "a runtime without eps, at p = 1",
            both(hyper("p", lambda p: p == 1.0), eps_zero), minimum=2),
        Row("clamped branch", "norm below eps (and not zero): y = x / eps", clamped, minimum=2),
        Row("unclamped with eps > 0", "norm above eps: y = x / norm", both(
            unclamped, hyper("eps", lambda e: e > 0))),
        Row("axis not last", "the norm along a leading axis",
            lambda s: _axis(s.spec, "axis") != len(s.spec.shape) - 1, minimum=2),
        *_SIZE_ROWS, *_EPS_ROWS[:1], *_DIST_ROWS,
    ),
    "local_response_norm": (
        Row("channel axis not 1", "channels-last layouts: the window runs along another axis",
            channels_last, minimum=2),
        Row("even size", "asymmetric window: floor(size/2) before, floor((size-1)/2) after",
            hyper("size", lambda n: n % 2 == 0)),
        Row("size = 1", "a window of one channel", hyper("size", lambda n: n == 1)),
        Row("window past both edges", "size > C: zero padding on both sides",
            window_past_channels),
        Row("k = 0", "no additive constant", hyper("k", lambda k: k == 0.0)),
        Row("beta != 0.75", "other exponents", hyper("beta", lambda b: b != 0.75)),
        Row("3 spatial axes", "NCDHW", lambda s: len(s.spec.shape) == 5),
        *_SIZE_ROWS[:1], *(r for r in _DIST_ROWS if r.dtypes != WIDE),
    ),
    "standardize": _STANDARDIZE_ROWS,
    "fix_norm": (
        *_L2_ROWS, _AXIS_NOT_LAST,
        Row("g = 0", "y = 0, yet g's gradient sum(g u) is not", zero_weight, signal=False),
        Row("g < 0", "a negative scalar", negative_weight),
    ),
    "scale_norm": (
        *_L2_ROWS,
        Row("M > 1 modules", "one g' for several modules: its gradient sums over them",
            lambda s: s.spec.shape[0] > 1, minimum=2),
        Row("M = 1", "a single module", lambda s: s.spec.shape[0] == 1),
        Row("g' = 0", "y = 0, yet the gradient of g' is not", zero_weight, signal=False),
        Row("g' < 0", "a negative scalar", negative_weight),
    ),
    "unit_norm": (
        *_L2_ROWS, _AXIS_NOT_LAST,
        Row("hidden states (B, T, D)", "nGPT's h along D", lambda s: len(s.spec.shape) == 3),
        Row("weight matrix along its rows", "W_q/W_k/W_v/W_up (out, D) and the embeddings: axis 1",
            lambda s: len(s.spec.shape) == 2 and _axis(s.spec, "axis") == 1, minimum=2),
        Row("weight matrix along its columns", "W_o/W_down (D, in) and Flax kernels: axis 0",
            lambda s: len(s.spec.shape) == 2 and _axis(s.spec, "axis") == 0, minimum=2),
    ),
    "global_response_norm": (
        _SEVERAL_AXES, *_CHANNEL_ROWS,
        Row("channels-first", "NCHW (timm's channels_last=False)",
            lambda s: channel_axis(s.spec) == 1, minimum=2),
        Row("3 spatial axes", "NDHWC and NCDHW", lambda s: len(s.spec.shape) == 5, minimum=2),
        Row("C = 1", "one channel: nx = gx / (gx + eps)",
            lambda s: s.spec.shape[channel_axis(s.spec)] == 1),
        Row("zero channel", "a zero norm next to nonzero ones: the subgradient 0",
            zero_norm_channel, minimum=2, signal=False),
        Row("zero weight", "the official zero initialisation: y = x, d/dweight not 0",
            zero_weight),
        Row("eps dominates", "the norms far below eps: nx ~ gx / eps",
            lambda s: s.spec.name in ("eps_dominates", "tiny")),
        *_SIZE_ROWS, *_EPS_ROWS, *_DIST_ROWS,
    ),
    "min_max_scale": _MIN_MAX_ROWS,
    "spectral_norm": _SPECTRAL_ROWS,
    "qk_norm": _QK_ROWS,
    "gradient_normalization": (
        Row("several normalized axes", "one norm spans two or more axes of size > 1",
            several_axes),
        Row("not the last axis", "the normalized axes are not just the last one",
            lambda s: _gn_axes(s.spec) != (len(s.spec.shape) - 1,), minimum=2),
        Row("whole tensor", "one norm over every axis",
            lambda s: len(_gn_axes(s.spec)) == len(s.spec.shape) > 1),
        Row("n = 1", "rows of one value: the gradient becomes its sign",
            size_is(lambda n: n == 1)),
        Row("n > 1000", "long reduction", size_is(lambda n: n > 1000)),
        Row("zero gradient", "g = 0 stays 0 (eps > 0) or is 0 / 0 = NaN (eps = 0)", _gn_zero,
            minimum=2),
        Row("eps active", "some row's norm is below eps: g / eps", _gn_eps_active, minimum=2),
        Row("eps = 0", "no floor", eps_zero, minimum=2),
        Row("huge gradient", "the dtype's huge scale in the cotangent", _gn_cotangent("huge"),
            minimum=2),
        Row("tiny gradient", "the dtype's tiny scale in the cotangent", _gn_cotangent("tiny"),
            minimum=2),
        Row("mixed scales in one row", "gradients decades apart in one norm",
            _gn_cotangent("decades")),
        Row("NaN gradient", "NaN propagates through its row", _gn_cotangent("nan")),
        Row("Inf gradient", "inf / inf = NaN at the infinite component", _gn_cotangent("inf")),
        Row("NaN input", "the forward copies NaN", dist("nan")),
        Row("normal gradient", "standard normal cotangent", lambda s: s.spec.cotangent is None,
            minimum=5),
    ),
    "weight_norm": (
        Row("kept axis 0", "one norm per output channel of (O, I, ...): PyTorch's default dim=0",
            lambda s: _kept_axis(s.spec) == 0, minimum=2),
        Row("kept axis -1", "the last axis, Flax's default feature_axes=-1 (PyTorch's dim=-1 "
            "is the whole tensor)", hyper("kept_axis", lambda k: k == -1), minimum=2),
        Row("last axis as ndim - 1", "the last axis given positively: PyTorch's way to keep it",
            lambda s: s.spec.hyper["kept_axis"] == len(s.spec.shape) - 1
            and len(s.spec.shape) > 1),
        Row("middle kept axis", "a kept axis neither first nor last",
            lambda s: (k := _kept_axis(s.spec)) is not None and 0 < k < len(s.spec.shape) - 1),
        Row("whole tensor", "kept_axis = 'none': PyTorch's dim=None/-1, Flax's feature_axes=None",
            lambda s: _kept_axis(s.spec) is None, minimum=2),
        _SEVERAL_AXES,
        Row("1-d weight", "a vector: one-element slices or one norm",
            lambda s: len(s.spec.shape) == 1, minimum=2),
        Row("zero slice, eps = 0", "g * 0 / 0: NaN in that slice (PyTorch)", _zero_slice(False),
            signal=False),
        Row("zero slice, eps > 0", "w = 0 and a finite gradient (Flax)", _zero_slice(True),
            minimum=2, signal=False),
        Row("eps near the squared norm", "both terms of sqrt(norm^2 + eps) matter",
            _eps_near_norm, minimum=2),
        Row("g = 0", "w = 0, x's gradient 0, g's not", lambda s: bool(np.all(
            s.vector.inputs["g"] == 0)), signal=False),
        *_SIZE_ROWS, *_EPS_ROWS,
        Row("normal input", "standard normal x", dist("normal")),
        Row("tiny scale", "squares below the dtype's normal range", dist("tiny")),
        Row("huge scale", "squares above the dtype's range", dist("huge")),
        Row("mixed scales in one slice", "values six decades apart in one slice", mixed_scale,
            dtypes=("float64", "float32", "bfloat16")),
        Row("common offset", "every element near 1e3: w ~ g / sqrt(n)", offset_at_least(1e3)),
        Row("NaN input", "NaN propagation (x or g)", lambda s: "nan" in (
            s.spec.dists["x"].kind, s.spec.dists["g"].kind), minimum=2, signal=False),
        Row("Inf input", "+-inf propagation", dist("inf"), signal=False),
    ),
    "gradnorm": _GRADNORM_ROWS,
    "weight_standardization": (
        Row("kept axis 0", "a PyTorch weight (O, I, ...): one set per output channel",
            lambda s: _kept_axis(s.spec) == 0, minimum=2),
        Row("kept axis -1", "a Flax/Keras kernel (..., in, out): the output channel last",
            hyper("kept_axis", lambda k: k == -1), minimum=2),
        Row("middle kept axis", "a ConvTranspose weight (I, O, kh, kw)",
            lambda s: 0 < (_kept_axis(s.spec) or 0) < len(s.spec.shape) - 1),
        _SEVERAL_AXES,
        Row("constant channel, eps > 0", "var = 0: y = 0 and a finite gradient",
            both(_zero_var, lambda s: float(s.spec.hyper["eps"]) > 0), minimum=2, signal=False),
        Row("constant channel, eps = 0", "0 / 0: NaN in that channel", both(_zero_var, eps_zero),
            signal=False),
        Row("n = 2, eps = 0", "y = +-1 exactly, a zero derivative",
            both(size_is(lambda n: n == 2), eps_zero), signal=False),
        Row("eps near the variance", "eps inside or outside the root differ",
            _eps_near_var, minimum=2),
        *_SIZE_ROWS, *_EPS_ROWS, *_DIST_ROWS,
    ),
}
"""Per method, the branches and conventions of its definition (see the module docstring)."""


# --- counting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowCoverage:
    """The cases of one row, per dtype where the row is meaningful."""

    row: Row
    cases: Mapping[str, tuple[str, ...]]
    """dtype -> names of the counted cases, in catalog order."""
    degenerate: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """dtype -> cases the predicate matches but whose output does not carry the input."""

    @property
    def fewest(self) -> int:
        return min((len(v) for v in self.cases.values()), default=0)

    @property
    def short(self) -> bool:
        """Below the row's minimum in some dtype (pending rows are never short)."""
        return not self.row.pending and self.fewest < self.row.minimum


@dataclass(frozen=True)
class MethodCoverage:
    method: str
    rows: tuple[RowCoverage, ...]
    degenerate: Mapping[str, tuple[str, ...]]
    """dtype -> cases whose output does not carry the input."""
    not_applicable: Mapping[str, str] = field(default_factory=dict)
    """Checks the method declares not applicable (check -> reason): its vectors hold
    none, and a run reports them so."""


@cache
def _manifest() -> Manifest:
    return load_manifest()


def samples(method: str, manifest: Manifest | None = None) -> dict[str, tuple[Sample, ...]]:
    """dtype -> every case of the catalog that has vectors in that dtype (a trajectory as
    one sample per call)."""
    manifest = _manifest() if manifest is None else manifest
    specs = {c.name: c for c in load_catalog(method).cases}
    return {dtype: tuple(s for v in manifest.cases(method, dtype)
                         for s in _calls(specs[v.name], v))
            for dtype in manifest.dtypes(method)}


def _calls(spec: CaseSpec, vector: VectorCase) -> tuple[Sample, ...]:
    if not vector.trajectory:
        return (Sample(spec, vector),)
    out = []
    for step, call in zip(spec.steps, vector.trajectory, strict=True):
        single = replace(spec, shape=step.shape, hyper=step.hyper, steps=(),
                         shapes={**spec.shapes, "x": step.shape},
                         dists={**spec.dists, "x": step.dist})
        out.append(Sample(single, vector.step_view(call), step.label))
    return tuple(out)


def method_coverage(method: str, manifest: Manifest | None = None) -> MethodCoverage:
    """Count the cases of every row of ``method`` (see the module docstring)."""
    if method not in COVERAGE:
        raise ValueError(f"argument 'method': got {method!r}, expected one of {list(COVERAGE)}")
    by_dtype = samples(method, manifest)
    flat = {d: {s.spec.name for s in ss if degenerate(s)}
            - {s.spec.name for s in ss if not degenerate(s)} for d, ss in by_dtype.items()}
    rows = []
    for row in COVERAGE[method]:
        counted: dict[str, tuple[str, ...]] = {}
        dropped: dict[str, tuple[str, ...]] = {}
        for dtype in row.dtypes:
            hits = [s for s in by_dtype.get(dtype, ()) if row.test(s)]
            # a case counts once, through any of its calls whose output carries its input
            keep = list(dict.fromkeys(s.spec.name for s in hits
                                      if not row.signal or not degenerate(s)))
            counted[dtype] = tuple(keep)
            dropped[dtype] = tuple(dict.fromkeys(s.spec.name for s in hits
                                                 if s.spec.name not in keep))
        rows.append(RowCoverage(row, counted, dropped))
    declared = (manifest if manifest is not None else _manifest()).not_applicable(method)
    return MethodCoverage(method, tuple(rows),
                          {d: tuple(sorted(v)) for d, v in flat.items() if v},
                          declared)


# --- mutation score ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MutantKills:
    """What one mutant's run against its target methods failed."""

    mutant: str
    what: str
    targets: tuple[str, ...]
    killing_cases: Mapping[str, tuple[str, ...]]
    """method -> cases with a failing or erroring check."""


def mutation_score(kills: Iterable[MutantKills]) -> dict[str, tuple[int, int, int]]:
    """method -> (killed, total, fewest killing cases of a killed mutant)."""
    out: dict[str, list[int]] = {}
    for k in kills:
        for method in k.targets:
            entry = out.setdefault(method, [0, 0, 1 << 30])
            n = len(k.killing_cases.get(method, ()))
            entry[1] += 1
            if n:
                entry[0] += 1
                entry[2] = min(entry[2], n)
    return {m: (e[0], e[1], e[2] if e[0] else 0) for m, e in out.items()}


# --- rendering ---------------------------------------------------------------------------------

PAGE_TITLE = "# Coverage of the definitions"
MUTATION_HEADING = "## Mutation score"

_INTRO = """\
Generated by `normspec coverage --mutants tests --markdown docs/coverage.md`; do not edit.
The rows are `normspec.conformance.coverage.COVERAGE`: each names a branch or convention of a
method's definition and a predicate on a catalog case (hyperparameters, shapes, distributions,
which of weight/bias/state it passes) and, where the branch depends on values, on its vectors.
A column counts the cases that exercise the row in that dtype; `-` marks a dtype where the row
is not meaningful. A case whose output is, to the dtype's last bit, the bias (or zero) whatever
its input holds does not count (rows about that branch itself excepted); those are listed per
method. **min** is the number of cases a row must have in each of its dtypes.
"""


def _cell(names: Sequence[str] | None) -> str:
    return "-" if names is None else str(len(names))


def _union(cov: RowCoverage) -> list[str]:
    seen: dict[str, None] = {}
    for names in cov.cases.values():
        seen.update(dict.fromkeys(names))
    return list(seen)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def coverage_markdown(coverages: Sequence[MethodCoverage]) -> str:
    lines = [PAGE_TITLE, "", _INTRO]
    for mc in coverages:
        lines += [f"## {mc.method}", "",
                  "| row | what | min | " + " | ".join(DTYPES) + " | cases |",
                  "|---|---|---|" + "---|" * len(DTYPES) + "---|"]
        for cov in mc.rows:
            row = cov.row
            minimum = f"{row.minimum} (pending)" if row.pending else str(row.minimum)
            counts = " | ".join(_cell(cov.cases.get(d)) for d in DTYPES)
            names = ", ".join(f"`{n}`" for n in _union(cov))
            what = row.what + (f"; pending: {row.pending}" if row.pending else "")
            lines.append(f"| {row.name} | {what} | {minimum} | {counts} | {names} |")
        if mc.degenerate:
            lines += ["", "Not counted (output independent of the input): " + "; ".join(
                f"{d}: " + ", ".join(f"`{n}`" for n in names)
                for d, names in mc.degenerate.items()) + "."]
        if mc.not_applicable:
            lines += ["", "Not applicable (no vectors; every run reports these checks as "
                      "not applicable): " + "; ".join(
                          f"{check}: {_md(reason)}" for check, reason
                          in mc.not_applicable.items()) + "."]
        lines.append("")
    return "\n".join(lines)


def mutation_markdown(kills: Sequence[MutantKills]) -> str:
    score = mutation_score(kills)
    lines = [MUTATION_HEADING, "",
             "Each mutant (tests/mutants/) is the `numpy` adapter with one real bug; it is run "
             "on the methods its bug class lives in. A mutant is killed in a method when some "
             "check of some case fails or errors there.", "",
             "| method | killed / total | fewest killing cases |", "|---|---|---|"]
    for method in COVERAGE:
        if method in score:
            killed, total, fewest = score[method]
            lines.append(f"| {method} | {killed} / {total} | {fewest} |")
    lines += ["", "| mutant | bug class | method: killing cases |", "|---|---|---|"]
    for k in kills:
        cells = "; ".join(f"{m}: {len(k.killing_cases.get(m, ()))}" for m in k.targets)
        lines.append(f"| `{k.mutant}` | {k.what} | {cells} |")
    lines.append("")
    return "\n".join(lines)


def page(coverages: Sequence[MethodCoverage], kills: Sequence[MutantKills] | None) -> str:
    """The whole docs/coverage.md; without ``kills``, the coverage part only."""
    text = coverage_markdown(coverages)
    return text if kills is None else text + "\n" + mutation_markdown(kills)


def split_page(text: str) -> tuple[str, str]:
    """(coverage part, mutation part) of a page written by :func:`page`."""
    head, sep, tail = text.partition("\n" + MUTATION_HEADING)
    return head, (sep.lstrip("\n") + tail if sep else "")


__all__ = ["COVERAGE", "MethodCoverage", "MutantKills", "Row", "RowCoverage", "Sample",
           "baseline", "coverage_markdown", "degenerate", "kill", "method_coverage",
           "mutation_markdown", "mutation_score", "page", "reduced_axes", "reduction_size",
           "samples", "split_page"]


def kill(mutant: str, spec: str, targets: Sequence[str], what: str = "",
         baseline: Mapping[str, str] | None = None) -> MutantKills:
    """Run the mutant adapter ``spec`` (``module:attribute``) on ``targets`` and collect the
    cases where a check fails or errors.

    ``baseline`` maps result ids to the status the ``numpy`` adapter (which every mutant
    modifies) gets; a check the baseline does not pass kills nothing, so a defect of the
    baseline itself is not counted as the suite seeing the mutant's bug.
    """
    from .runner import RunConfig, Runner

    report = Runner(RunConfig(adapters=(spec,), methods=tuple(targets))).run()
    found: dict[str, dict[str, None]] = {m: {} for m in targets}
    for r in report.results:
        if r.status in ("fail", "error") and (baseline is None
                                               or baseline.get(r.id) in ("pass", "skip")):
            found.setdefault(r.method, {})[r.case] = None
    return MutantKills(mutant, what, tuple(targets),
                       {m: tuple(found[m]) for m in targets})


def baseline(methods: Sequence[str], adapter: str = "numpy") -> dict[str, str]:
    """Result id -> status of ``adapter`` on ``methods`` (the reference point of :func:`kill`)."""
    from .runner import RunConfig, Runner

    report = Runner(RunConfig(adapters=(adapter,), methods=tuple(methods))).run()
    return {r.id: r.status for r in report.results}
