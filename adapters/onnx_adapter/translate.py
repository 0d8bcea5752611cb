"""The spec's canonical calls as single ONNX nodes: which operator, which attributes, which feeds.

Pure NumPy: nothing here imports onnx, so the decisions (what a case maps to, which cases are
declined, which quantities cannot be produced) are testable and listable without the framework.

A :class:`Plan` holds a hashable :class:`NodeSpec` (operator, attributes, dtype, input shapes,
outputs: the key of the model cache), the arrays to feed in ONNX's positional input order, and
how to turn the node's outputs back into the reference's names and layout. Layout glue (moving
the channel axis to ONNX's axis 1, viewing LRN input as 4-d, reversing the channel order for an
even LRN window) is an exact permutation or reshape done in NumPy; the runtime computes every
value, so the result stays ``native``.

Conventions translated here, each checked against onnx 1.23.2 and onnxruntime 1.32.0:

* ONNX float attributes (``epsilon``, ``momentum``, ``alpha``, ``beta``, ``bias``) are 32-bit
  floats: the spec's values are passed as given and become ``float32(value)``; a float64 case
  where that shows is a ledgered deviation, never a tolerance.
* ``BatchNormalization`` momentum weights the *old* running value:
  ``running' = momentum * running + (1 - momentum) * batch``, so ``momentum = 1 -
  batch_stat_weight``; its running variance is always the biased batch variance.
* ``LRN``: ``y = x / (bias + alpha / size * sum(window x^2))^beta``, the spec's ``alpha/size``
  rule, so ``alpha`` passes unchanged and ``bias = k``. ONNX's window is
  ``[c - floor((size-1)/2), c + ceil((size-1)/2)]``: for an even ``size`` it is one channel
  later than the spec's ``[c - floor(size/2), c + floor((size-1)/2)]``. Reversing the channel
  order maps one onto the other exactly, so an even ``size`` runs on the reversed channels.
* ``LayerNormalization``/``GroupNormalization``/``RMSNormalization`` take ``stash_type``, the
  type of their first-stage computation: float32 (1) for 16-bit and float32 models, the spec's
  float32 accumulation; float64 (11) for float64 models of GroupNormalization and
  RMSNormalization, so a float64 model is not computed in float32. LayerNormalization's schema
  allows only float32 and bfloat16 for its stash type (and its Mean/InvStdDev outputs), so its
  float64 model would compute its statistics in float32 by definition: float64 layer norm is
  declined (:data:`LAYER_NORM_FLOAT64`).
* Operators whose scale (and bias) inputs are required get ones (and zeros) for a case without
  that parameter: ``v * 1`` and ``v + 0`` are exact in IEEE arithmetic, so the op's result is the
  no-affine result (up to the sign of a zero, which no comparison sees).

``MeanVarianceNormalization`` is not used: its function body (onnx 1.23.2) divides by
``sqrt(E[x^2] - E[x]^2) + 1e-9``, a fixed epsilon added to the standard deviation, so no method
of the spec maps to it exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from normspec.reference import lp_norm as lp_reference

from .._hyper import axis as _axis
from .._hyper import integer as _int
from .._hyper import real as _float
from .._hyper import required as _required
from ..protocol import Array

METHODS: tuple[str, ...] = ("batch_norm", "layer_norm", "rms_norm", "instance_norm",
                            "group_norm", "lp_norm", "local_response_norm")
"""Every method of :data:`normspec.reference.METHODS` has an ONNX operator."""

OPSET = 23
"""The default-domain opset of every model: RMSNormalization needs 23; the other operators
keep their semantics from their own versions (BatchNormalization 15, LayerNormalization 17,
GroupNormalization 21 with per-channel scale and bias)."""

OPS: dict[str, str] = {
    "batch_norm": "BatchNormalization",
    "layer_norm": "LayerNormalization",
    "rms_norm": "RMSNormalization",
    "instance_norm": "InstanceNormalization",
    "group_norm": "GroupNormalization",
    "lp_norm": "LpNormalization",
    "local_response_norm": "LRN",
}
"""The ONNX operator of each method."""

STASH_TYPES: dict[str, int] = {"float64": 11, "float32": 1, "float16": 1, "bfloat16": 1}
"""``stash_type`` (an ONNX TensorProto element type) per dtype under test."""
_STASH_NAMES = {11: "float64", 1: "float32"}
LAYER_NORM_FLOAT64 = (
    "ONNX LayerNormalization (opset 17) cannot express a float64 layer norm: its stash_type, "
    "the type of stage one and of Mean/InvStdDev, allows float32 and bfloat16 only, so a "
    "float64 model computes its statistics in float32 by definition")


def stash_type(op: str, dtype: str) -> int:
    """The ``stash_type`` of ``op`` for a ``dtype`` model (see the module docstring).

    >>> stash_type("RMSNormalization", "float64"), stash_type("LayerNormalization", "float64")
    (11, 1)
    """
    if dtype not in STASH_TYPES:
        raise ValueError(f"argument 'dtype': got {dtype!r}, expected one of {list(STASH_TYPES)}")
    # LayerNormalization-17 constrains its stash type U to float and bfloat16.
    return 1 if op == "LayerNormalization" else STASH_TYPES[dtype]

_STATE_INPUTS = ("running_mean", "running_var", "num_batches_tracked")
Attribute = int | float | tuple[int, ...]


@dataclass(frozen=True)
class NodeSpec:
    """Everything that defines one single-node model: the key of the model and session cache.

    ``inputs`` holds one shape per ONNX positional input, None for an omitted optional input;
    ``outputs`` holds ``(name, dtype, shape)`` per requested output (a statistic can be typed by
    ``stash_type`` rather than by the input). Output shapes are stated, not inferred, because
    ONNX's shape inference does not reach through function-bodied operators.
    """

    op: str
    dtype: str
    attributes: tuple[tuple[str, Attribute], ...]
    inputs: tuple[tuple[int, ...] | None, ...]
    outputs: tuple[tuple[str, str, tuple[int, ...]], ...]
    opset: int = OPSET


Finish = Callable[[Sequence[np.ndarray]], dict[str, Array]]


@dataclass(frozen=True)
class Plan:
    """One call: the node, the arrays to feed (in ONNX input order) and the way back."""

    node: NodeSpec
    feeds: tuple[Array | None, ...]
    finish: Finish


def _array(inputs: Mapping[str, Array | None], name: str) -> Array | None:
    value = inputs.get(name)
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.dtype.kind != "f":
        raise TypeError(f"argument 'inputs[{name!r}]': got dtype {arr.dtype}, expected float64 "
                        "values")
    out: Array = np.asarray(arr, dtype=np.float64)
    return out


def _x(inputs: Mapping[str, Array | None]) -> Array:
    x = _array(inputs, "x")
    if x is None:
        raise ValueError("argument 'inputs': got no 'x', expected the input array under 'x'")
    if x.ndim < 1:
        raise ValueError(f"argument 'inputs['x']': got a {x.ndim}-d array, expected >= 1-d")
    return x


def _channel_param(inputs: Mapping[str, Array | None], name: str, channels: int, fill: float
                   ) -> Array:
    """A per-channel parameter, or ``fill`` (1 for a scale, 0 for a bias) when it is absent."""
    value = _array(inputs, name)
    if value is None:
        return np.full(channels, fill)
    if value.shape != (channels,):
        raise ValueError(f"argument 'inputs[{name!r}]': got shape {value.shape}, expected "
                         f"({channels},)")
    return value


def _to_channels_first(x: Array, c: int) -> Array:
    moved: Array = np.moveaxis(x, c, 1) if x.ndim > 1 else x
    return moved


def _from_channels_first(y: np.ndarray, c: int) -> Array:
    back: Array = np.moveaxis(np.asarray(y, dtype=np.float64), 1, c)
    return back


def _f64(a: np.ndarray) -> Array:
    out: Array = np.asarray(a, dtype=np.float64)
    return out


def _spec(op: str, dtype: str, attrs: Mapping[str, Attribute],
          feeds: Sequence[Array | None],
          outputs: Sequence[tuple[str, str, tuple[int, ...]]]) -> NodeSpec:
    return NodeSpec(op=op, dtype=dtype, attributes=tuple(sorted(attrs.items())),
                    inputs=tuple(None if f is None else tuple(f.shape) for f in feeds),
                    outputs=tuple(outputs))


def _check_keys(method: str, inputs: Mapping[str, object], allowed: Sequence[str]) -> None:
    unknown = sorted(set(inputs) - set(allowed))
    if unknown:
        raise ValueError(f"argument 'inputs': got keys {unknown} that {method} does not take, "
                         f"expected a subset of {list(allowed)}")


# --- the translations ---

def batch_norm_factor(hyper: Mapping[str, Any]) -> float | str:
    """The spec's ``batch_stat_weight``, validated: a number in [0, 1] or ``"cumulative"``."""
    value = _required(hyper, "batch_stat_weight")
    if value == "cumulative":
        return "cumulative"
    f = _float(hyper, "batch_stat_weight")
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"argument 'hyper['batch_stat_weight']': got {value!r}, expected a "
                         "number in [0, 1] or 'cumulative'")
    return f


def onnx_momentum(batch_stat_weight: float) -> float:
    """ONNX BatchNormalization ``momentum`` for the spec's ``batch_stat_weight``.

    ONNX weights the old running value by momentum, the spec's factor weights the new batch.

    >>> onnx_momentum(0.1)
    0.9
    """
    return 1.0 - batch_stat_weight


def is_tracking(inputs: Mapping[str, object], hyper: Mapping[str, Any]) -> bool:
    """Whether a batch_norm call updates running statistics (training with them given)."""
    return bool(hyper.get("training", False)) and inputs.get("running_mean") is not None


def batch_norm(inputs: Mapping[str, Array | None], hyper: Mapping[str, Any], dtype: str) -> Plan:
    """``BatchNormalization`` (opset 15), channels at axis 1.

    Evaluation: ``training_mode=0`` on the running statistics. Training: ``training_mode=1``,
    which normalizes with the batch statistics and returns the updated running statistics
    (opset 15 exposes no batch mean or variance). ONNX always takes running statistics; a
    training call without them gets zeros and ones and its running outputs are dropped (they
    do not enter ``y``). ONNX Runtime rejects a training node with fewer than three outputs, so
    all three are always requested.
    """
    _check_keys("batch_norm", inputs, ("x", "weight", "bias", *_STATE_INPUTS))
    x = _x(inputs)
    if x.ndim < 2:
        raise ValueError(f"argument 'inputs['x']': got a {x.ndim}-d array, expected >= 2-d")
    c = _axis(hyper, "channel_axis", x.ndim, default=1)
    eps = _float(hyper, "eps")
    training = _required(hyper, "training")
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"argument 'hyper['training']': got {training!r}, expected True or False")
    xm = _to_channels_first(x, c)
    channels = xm.shape[1]
    scale = _channel_param(inputs, "weight", channels, 1.0)
    bias = _channel_param(inputs, "bias", channels, 0.0)
    rm, rv = _array(inputs, "running_mean"), _array(inputs, "running_var")
    if (rm is None) != (rv is None):
        raise ValueError("argument 'inputs': got only one of 'running_mean' and 'running_var', "
                         "expected both or neither")
    attrs: dict[str, Attribute] = {"epsilon": eps, "training_mode": int(bool(training))}
    tracking = bool(training) and rm is not None
    if not bool(training):
        if rm is None or rv is None:
            raise ValueError("argument 'inputs': got no running statistics with training=False, "
                             "expected 'running_mean' and 'running_var'")
        outputs = [("Y", dtype, xm.shape)]
    else:
        if tracking:
            f = batch_norm_factor(hyper)
            if f == "cumulative":
                raise ValueError("argument 'hyper['batch_stat_weight']': got 'cumulative', which "
                                 "ONNX BatchNormalization cannot express (see case_support)")
            attrs["momentum"] = onnx_momentum(float(f))
        outputs = [("Y", dtype, xm.shape), ("running_mean", dtype, (channels,)),
                   ("running_var", dtype, (channels,))]
    rm_feed = np.zeros(channels) if rm is None else _channel_param(inputs, "running_mean",
                                                                    channels, 0.0)
    rv_feed = np.ones(channels) if rv is None else _channel_param(inputs, "running_var",
                                                                   channels, 1.0)
    feeds = (xm, scale, bias, rm_feed, rv_feed)

    def finish(out: Sequence[np.ndarray]) -> dict[str, Array]:
        result = {"y": _from_channels_first(out[0], c)}
        if tracking:
            result["running_mean"] = _f64(out[1])
            result["running_var"] = _f64(out[2])
        return result

    return Plan(_spec("BatchNormalization", dtype, attrs, feeds, outputs), feeds, finish)


def layer_norm(inputs: Mapping[str, Array | None], hyper: Mapping[str, Any], dtype: str) -> Plan:
    """``LayerNormalization`` (opset 17) over ``x.shape[axis:]``; Mean and InvStdDev are the
    reference's ``mean`` and ``rstd`` (shape ``x.shape[:axis]``). ``B`` is optional and left out
    without a bias; ``Scale`` is required (ones without a weight)."""
    _check_keys("layer_norm", inputs, ("x", "weight", "bias"))
    x = _x(inputs)
    axis = _axis(hyper, "axis", x.ndim)
    shape = x.shape[axis:]
    weight, bias = _array(inputs, "weight"), _array(inputs, "bias")
    for name, value in (("weight", weight), ("bias", bias)):
        if value is not None and value.shape != shape:
            raise ValueError(f"argument 'inputs[{name!r}]': got shape {value.shape}, expected "
                             f"{shape}")
    scale = np.ones(shape) if weight is None else weight
    feeds = (x, scale, bias)
    stash = stash_type("LayerNormalization", dtype)
    attrs: dict[str, Attribute] = {"axis": axis, "epsilon": _float(hyper, "eps"),
                                   "stash_type": stash}
    lead = x.shape[:axis]
    stat_shape = (*lead, *(1,) * len(shape))
    outputs = [("Y", dtype, x.shape), ("Mean", _STASH_NAMES[stash], stat_shape),
               ("InvStdDev", _STASH_NAMES[stash], stat_shape)]

    def finish(out: Sequence[np.ndarray]) -> dict[str, Array]:
        return {"y": _f64(out[0]), "mean": _f64(out[1]).reshape(lead),
                "rstd": _f64(out[2]).reshape(lead)}

    return Plan(_spec("LayerNormalization", dtype, attrs, feeds, outputs), feeds, finish)


def rms_norm(inputs: Mapping[str, Array | None], hyper: Mapping[str, Any], dtype: str) -> Plan:
    """``RMSNormalization`` (opset 23) over ``x.shape[axis:]``; ``scale`` is required (ones
    without a weight). The op returns ``Y`` only."""
    _check_keys("rms_norm", inputs, ("x", "weight"))
    x = _x(inputs)
    axis = _axis(hyper, "axis", x.ndim)
    shape = x.shape[axis:]
    weight = _array(inputs, "weight")
    if weight is not None and weight.shape != shape:
        raise ValueError(f"argument 'inputs['weight']': got shape {weight.shape}, expected "
                         f"{shape}")
    feeds = (x, np.ones(shape) if weight is None else weight)
    attrs: dict[str, Attribute] = {"axis": axis, "epsilon": _float(hyper, "eps"),
                                   "stash_type": stash_type("RMSNormalization", dtype)}
    return Plan(_spec("RMSNormalization", dtype, attrs, feeds, [("Y", dtype, x.shape)]), feeds,
                lambda out: {"y": _f64(out[0])})


def instance_norm(inputs: Mapping[str, Array | None], hyper: Mapping[str, Any], dtype: str
                  ) -> Plan:
    """``InstanceNormalization`` (opset 22), channels at axis 1; scale and B are required."""
    _check_keys("instance_norm", inputs, ("x", "weight", "bias"))
    x = _x(inputs)
    if x.ndim < 3:
        raise ValueError(f"argument 'inputs['x']': got a {x.ndim}-d array, expected >= 3-d")
    c = _axis(hyper, "channel_axis", x.ndim, default=1)
    xm = _to_channels_first(x, c)
    channels = xm.shape[1]
    feeds = (xm, _channel_param(inputs, "weight", channels, 1.0),
             _channel_param(inputs, "bias", channels, 0.0))
    attrs: dict[str, Attribute] = {"epsilon": _float(hyper, "eps")}
    return Plan(_spec("InstanceNormalization", dtype, attrs, feeds, [("Y", dtype, xm.shape)]),
                feeds,
                lambda out: {"y": _from_channels_first(out[0], c)})


def group_norm(inputs: Mapping[str, Array | None], hyper: Mapping[str, Any], dtype: str) -> Plan:
    """``GroupNormalization`` (opset 21: per-channel scale and bias, both required), channels
    at axis 1, contiguous groups like the spec's. The op returns ``Y`` only."""
    _check_keys("group_norm", inputs, ("x", "weight", "bias"))
    x = _x(inputs)
    if x.ndim < 2:
        raise ValueError(f"argument 'inputs['x']': got a {x.ndim}-d array, expected >= 2-d")
    c = _axis(hyper, "channel_axis", x.ndim, default=1)
    xm = _to_channels_first(x, c)
    channels = xm.shape[1]
    groups = _int(hyper, "groups")
    if groups < 1 or channels % groups:
        raise ValueError(f"argument 'hyper['groups']': got {groups}, expected a positive "
                         f"divisor of the {channels} channels")
    feeds = (xm, _channel_param(inputs, "weight", channels, 1.0),
             _channel_param(inputs, "bias", channels, 0.0))
    attrs: dict[str, Attribute] = {"num_groups": groups, "epsilon": _float(hyper, "eps"),
                                   "stash_type": stash_type("GroupNormalization", dtype)}
    return Plan(_spec("GroupNormalization", dtype, attrs, feeds, [("Y", dtype, xm.shape)]),
                feeds,
                lambda out: {"y": _from_channels_first(out[0], c)})


LP_ORDERS = (1.0, 2.0)
"""The orders LpNormalization defines (its ``p`` attribute is 1 or 2)."""


def lp_norm(inputs: Mapping[str, Array | None], hyper: Mapping[str, Any], dtype: str) -> Plan:
    """``LpNormalization``: ``x / ||x||_p`` along ``axis``, without eps (see :func:`decline`)."""
    _check_keys("lp_norm", inputs, ("x",))
    x = _x(inputs)
    axis = _axis(hyper, "axis", x.ndim)
    p = _float(hyper, "p")
    if p not in LP_ORDERS:
        raise ValueError(f"argument 'hyper['p']': got {p!r}, expected 1 or 2 (LpNormalization)")
    feeds = (x,)
    attrs: dict[str, Attribute] = {"axis": axis, "p": int(p)}
    return Plan(_spec("LpNormalization", dtype, attrs, feeds, [("Y", dtype, x.shape)]), feeds,
                lambda out: {"y": _f64(out[0])})


def local_response_norm(inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
                        dtype: str) -> Plan:
    """``LRN`` on the 4-d view ``(N, C, prod(spatial), 1)`` with channels at axis 1.

    LRN only mixes channels, so flattening the other axes keeps every window; ONNX Runtime and
    the reference evaluator only accept 4-d input. An even ``size`` runs on the reversed
    channels (see the module docstring), which turns ONNX's window into the spec's.
    """
    _check_keys("local_response_norm", inputs, ("x",))
    x = _x(inputs)
    if x.ndim < 2:
        raise ValueError(f"argument 'inputs['x']': got a {x.ndim}-d array, expected >= 2-d")
    c = _axis(hyper, "channel_axis", x.ndim, default=1)
    size = _int(hyper, "size")
    if size < 1:
        raise ValueError(f"argument 'hyper['size']': got {size}, expected a positive integer")
    xm = _to_channels_first(x, c)
    moved = xm.shape
    x4 = xm.reshape(moved[0], moved[1], -1, 1)
    even = size % 2 == 0
    if even:
        x4 = x4[:, ::-1]
    feeds = (np.ascontiguousarray(x4),)
    attrs: dict[str, Attribute] = {"size": size, "alpha": _float(hyper, "alpha"),
                                   "beta": _float(hyper, "beta"), "bias": _float(hyper, "k")}

    def finish(out: Sequence[np.ndarray]) -> dict[str, Array]:
        y = _f64(out[0])
        if even:
            y = y[:, ::-1]
        return {"y": _from_channels_first(y.reshape(moved), c)}

    return Plan(_spec("LRN", dtype, attrs, feeds, [("Y", dtype, x4.shape)]), feeds, finish)


TRANSLATIONS: dict[str, Callable[[Mapping[str, Array | None], Mapping[str, Any], str], Plan]] = {
    "batch_norm": batch_norm,
    "layer_norm": layer_norm,
    "rms_norm": rms_norm,
    "instance_norm": instance_norm,
    "group_norm": group_norm,
    "lp_norm": lp_norm,
    "local_response_norm": local_response_norm,
}


def plan(method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any], dtype: str
         ) -> Plan:
    """The single-node plan of one call; ValueError/TypeError for a call that cannot be made."""
    if method not in TRANSLATIONS:
        raise ValueError(f"argument 'method': got {method!r}, expected one of {list(METHODS)}")
    if dtype not in STASH_TYPES:
        raise ValueError(f"argument 'dtype': got {dtype!r}, expected one of "
                         f"{list(STASH_TYPES)}")
    return TRANSLATIONS[method](inputs, hyper, dtype)


# --- per-case support ---

def decline(method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any]
            ) -> str | None:
    """Why ONNX's operator cannot express this case exactly, or None when it can."""
    if (method == "batch_norm" and is_tracking(inputs, hyper)
            and hyper.get("batch_stat_weight") == "cumulative"):
        return ("ONNX BatchNormalization's momentum is a fixed model attribute; the "
                "cumulative average (batch_stat_weight='cumulative', f = 1/(count+1)) needs a "
                "batch counter the op does not keep")
    if method == "lp_norm":
        return _lp_decline(inputs, hyper)
    if method == "rms_norm" and inputs.get("bias") is not None:
        return ("RMSNormalization (opset 23) takes X and scale only: it has no bias input, and "
                "a second node would make the case a composition, not the op")
    return None


def _lp_decline(inputs: Mapping[str, Array | None], hyper: Mapping[str, Any]) -> str | None:
    p = _float(hyper, "p")
    if p not in LP_ORDERS:
        return f"LpNormalization defines p = 1 and p = 2 only; the case asks for p = {p:g}"
    eps = _float(hyper, "eps")
    with np.errstate(all="ignore"):
        norm = lp_reference.forward(_x(inputs), p=p, axis=_int(hyper, "axis"), eps=eps)["norm"]
    # ONNX divides by the unclamped norm and returns 0 for a zero vector (measured on onnxruntime
    # 1.32.0 and onnx 1.23.2's reference evaluator). That is the spec's x / max(norm, eps)
    # wherever norm >= eps, and for a zero vector when eps > 0 (0 / eps = 0); elsewhere it is not.
    if np.any((norm > 0) & (norm < eps)):
        return (f"LpNormalization has no eps: the spec clamps the norm at eps = {eps:g} and this "
                "case has a nonzero vector with a smaller norm, where x / norm is not "
                "x / max(norm, eps)")
    if eps == 0 and np.any(norm == 0):
        return ("LpNormalization returns 0 for a zero vector (onnxruntime and the onnx reference "
                "evaluator, measured); with eps = 0 the spec defines 0 / 0 = NaN there")
    return None


def not_produced(method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any]
                 ) -> dict[str, str]:
    """Quantities (manifest names) this case asks for and the ONNX operator cannot return."""
    if (method == "batch_norm" and is_tracking(inputs, hyper)
            and hyper.get("running_var_estimator") == "unbiased"):
        return {"forward/running_var": "ONNX BatchNormalization updates the running variance "
                                       "with the biased estimator only; the case asks for the "
                                       "unbiased one"}
    return {}


__all__: Sequence[str] = ("LP_ORDERS", "METHODS", "OPS", "OPSET", "STASH_TYPES", "NodeSpec",
                          "Plan", "batch_norm_factor", "decline", "is_tracking", "not_produced",
                          "onnx_momentum", "plan", "stash_type")
