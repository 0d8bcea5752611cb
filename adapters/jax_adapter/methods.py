"""One translation per method: canonical hyperparameters to a Flax layer or a jax.numpy composition.

Each builder takes the JAX dtype under test and the reference's canonical keyword
hyperparameters, and returns ``fn(primals, state) -> (y, stats)``: ``primals`` holds the
differentiable inputs that are present (``weight``/``bias`` absent means no affine), ``state``
the non-differentiable inputs (batch_norm's running statistics). JAX and Flax are imported
inside the builders, so this module can be imported without them.

Conventions translated here, explicitly, for every call:

* ``eps`` is always passed (Flax defaults 1e-6 for LayerNorm, RMSNorm, GroupNorm and
  InstanceNorm, 1e-5 for BatchNorm; the spec has no default).
* ``dtype`` and ``param_dtype`` are the dtype under test, so a bfloat16 input returns bfloat16
  (Flax infers the output dtype from x *and* the params; with its float32 default params a
  bfloat16 input would come back float32). Flax still reduces in at least float32
  (``force_float32_reductions``, left at its default True): that is the framework's own
  numerics, not a widening by the adapter.
* ``use_fast_variance`` is left at Flax's default, which is what users get: True in Flax
  0.12.8 (checked in the installed wheel), i.e. ``var = max(0, E[x^2] - E[x]^2)`` in one pass.
  :meth:`JaxAdapter.versions` reports the default found at run time.
* Axes: layer_norm/rms_norm reduce ``axis..ndim-1`` and take weight/bias of shape
  ``x.shape[axis:]`` (``reduction_axes == feature_axes``); instance_norm passes
  ``feature_axes=channel_axis`` (Flax reduces every axis but 0 and the feature axes, any
  channel position); group_norm moves the channel axis last because Flax GroupNorm is
  channel-last only, and back afterwards; batch_norm passes ``axis=channel_axis``.
* batch_norm: Flax ``momentum`` is the weight of the *old* running value, so
  ``momentum = 1 - batch_stat_weight``; ``"cumulative"`` becomes the per-step momentum
  ``k / (k + 1)`` with ``k = num_batches_tracked``, which is the cumulative average step by
  step. Flax feeds the *biased* batch variance into ``batch_stats['var']``, so with
  ``running_var_estimator="unbiased"`` the update is composed from jax.numpy and the case is
  labelled ``composed`` (never Flax's value rescaled behind its back).
* lp_norm and local_response_norm have no Flax layer: they are jax.numpy compositions, labelled
  ``composed``, that follow Flax's reduction rule (statistics in at least float32, the result
  cast to the dtype under test).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..protocol import Kind
from . import adaptive_instance_norm as _adain
from . import adaptive_layer_norm as _adaln
from . import batch_instance_norm as _bin
from . import batch_renorm as _renorm
from . import conditional_instance_norm as _cin
from . import ghost_batch_norm as _ghost
from . import global_response_norm as _grn
from . import gradient_normalization as _gradnorm
from . import gradnorm as _gradnorm_mtl
from . import l2_scale as _l2
from . import min_max_scale as _minmax
from . import mixed_eval_batch_norm as _mixed
from . import power_norm as _power
from . import qk_norm as _qk
from . import sequence_batch_norm as _seq
from . import spectral_norm as _spectral
from . import standardize as _standardize
from . import weight_norm as _wn
from . import weight_standardization as _ws

if TYPE_CHECKING:
    import jax

Fn = Callable[[Mapping[str, "jax.Array"], Mapping[str, "jax.Array"]],
              tuple["jax.Array", dict[str, "jax.Array"]]]
"""``fn(primals, state) -> (y, stats)``, traceable by jax.jit, jax.vjp and jax.jvp."""


def _always_as_declared(hyper: Mapping[str, Any], state: frozenset[str]) -> str | None:
    return None


@dataclass(frozen=True)
class Translation:
    """How the adapter runs one method: which API, which inputs, and the builder."""

    kind: Kind
    api: str
    primals: tuple[str, ...]
    """Differentiable inputs, in the reference's ``PRIMALS`` order."""
    build: Callable[..., Fn]
    """``build(jax_dtype, **hyper) -> fn``; raises TypeError for an unknown hyperparameter."""
    state: tuple[str, ...] = ()
    """Non-differentiable inputs (running statistics)."""
    composed_when: Callable[[Mapping[str, Any], frozenset[str]], str | None] = field(
        default=_always_as_declared)
    """``(hyper, inputs present: state and primals) ->`` why that case is ``composed``
    although the method is native, or None when it runs as :attr:`kind` says."""
    constants: tuple[str, ...] = ()
    """Integer and boolean inputs (a padding mask): arrays of their own dtype, next to ``state``."""


def _axis(name: str, axis: object, ndim: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"argument {name!r}: got {axis!r}, expected an int")
    if not -ndim <= int(axis) < ndim:
        raise ValueError(f"argument {name!r}: got {axis}, expected an axis in [{-ndim}, {ndim})")
    return int(axis) % ndim


def _affine(primals: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Flax's parameter names for the spec's weight (``scale``) and bias (``bias``)."""
    names = {"weight": "scale", "bias": "bias"}
    return {names[k]: v for k, v in primals.items() if k in names}


def _apply(layer: Any, variables: Mapping[str, Any], x: jax.Array) -> jax.Array:
    """``layer.apply`` with immutable variables (Flax's apply is untyped)."""
    y: jax.Array = layer.apply(variables, x)
    return y


def _reduction_dtype(dt: Any) -> Any:
    """Flax's ``force_float32_reductions`` rule: statistics in at least float32."""
    import jax.numpy as jnp

    return jnp.promote_types(dt, jnp.float32)


def layer_norm(dt: Any, *, axis: int, eps: float) -> Fn:
    """``flax.linen.LayerNorm`` over ``axis..ndim-1`` with elementwise affine there."""
    from flax import linen as nn

    def fn(p: Mapping[str, jax.Array], s: Mapping[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
        x = p["x"]
        axes = tuple(range(_axis("axis", axis, x.ndim), x.ndim))
        layer = nn.LayerNorm(epsilon=eps, dtype=dt, param_dtype=dt, use_scale="weight" in p,
                             use_bias="bias" in p, reduction_axes=axes, feature_axes=axes)
        return _apply(layer, {"params": _affine(p)}, x), {}

    return fn


def rms_norm(dt: Any, *, axis: int, eps: float) -> Fn:
    """``flax.linen.RMSNorm`` over ``axis..ndim-1``, then ``+ bias`` when one is given.

    Flax's RMSNorm (linen and nnx, 0.12.8) has ``use_scale`` but no bias parameter, so a
    bias is added to its output in the dtype under test: that case is composed.
    """
    from flax import linen as nn

    def fn(p: Mapping[str, jax.Array], s: Mapping[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
        x = p["x"]
        axes = tuple(range(_axis("axis", axis, x.ndim), x.ndim))
        layer = nn.RMSNorm(epsilon=eps, dtype=dt, param_dtype=dt, use_scale="weight" in p,
                           reduction_axes=axes, feature_axes=axes)
        scaled = {k: v for k, v in p.items() if k != "bias"}
        y = _apply(layer, {"params": _affine(scaled)}, x)
        return (y + p["bias"] if "bias" in p else y), {}

    return fn


def _rms_norm_composed(hyper: Mapping[str, Any], present: frozenset[str]) -> str | None:
    if "bias" not in present:
        return None
    return ("composed: flax.linen.RMSNorm has no bias (use_scale only), so the bias is "
            "added to its output in the dtype under test")


def instance_norm(dt: Any, *, eps: float, channel_axis: int = 1) -> Fn:
    """``flax.linen.InstanceNorm`` with ``feature_axes=channel_axis`` (batch axis 0)."""
    from flax import linen as nn

    def fn(p: Mapping[str, jax.Array], s: Mapping[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
        x = p["x"]
        c = _axis("channel_axis", channel_axis, x.ndim)
        layer = nn.InstanceNorm(epsilon=eps, dtype=dt, param_dtype=dt, use_scale="weight" in p,
                                use_bias="bias" in p, feature_axes=c)
        return _apply(layer, {"params": _affine(p)}, x), {}

    return fn


def group_norm(dt: Any, *, groups: int, eps: float, channel_axis: int = 1) -> Fn:
    """``flax.linen.GroupNorm(num_groups=groups)`` on x with the channel axis moved last."""
    import jax.numpy as jnp
    from flax import linen as nn

    def fn(p: Mapping[str, jax.Array], s: Mapping[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
        x = p["x"]
        c = _axis("channel_axis", channel_axis, x.ndim)
        # Flax GroupNorm takes channels last and, by default, reduces every axis but axis 0;
        # its groups are contiguous (the last axis is read as (groups, C/groups)), as the spec's.
        layer = nn.GroupNorm(num_groups=groups, group_size=None, epsilon=eps, dtype=dt,
                             param_dtype=dt, use_scale="weight" in p, use_bias="bias" in p)
        y = _apply(layer, {"params": _affine(p)}, jnp.moveaxis(x, c, -1))
        return jnp.moveaxis(y, -1, c), {}

    return fn


def flax_momentum(batch_stat_weight: object, num_batches_tracked: int) -> float:
    """Flax BatchNorm ``momentum`` (weight of the old value) for the spec's update factor.

    >>> flax_momentum(0.1, 0), flax_momentum("cumulative", 0), flax_momentum("cumulative", 3)
    (0.9, 0.0, 0.75)
    """
    if batch_stat_weight == "cumulative":
        # Flax has no cumulative mode; the cumulative average is the EMA whose new-value
        # weight is 1/(k+1) at step k, so the translation sets that momentum for this step.
        return num_batches_tracked / (num_batches_tracked + 1)
    if isinstance(batch_stat_weight, bool) or not isinstance(
            batch_stat_weight, (int, float, np.integer, np.floating)):
        raise TypeError(f"argument 'batch_stat_weight': got {batch_stat_weight!r}, expected a "
                        "number in [0, 1] or 'cumulative'")
    f = float(batch_stat_weight)
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"argument 'batch_stat_weight': got {f!r}, expected a number in [0, 1] "
                         "or 'cumulative'")
    return 1.0 - f


def _batch_norm_composed(hyper: Mapping[str, Any], state: frozenset[str]) -> str | None:
    if hyper.get("training") and "running_mean" in state and (
            hyper.get("running_var_estimator") == "unbiased"):
        return ("y from flax.linen.BatchNorm; the running-statistics update with "
                "running_var_estimator='unbiased' is composed from jnp.mean and "
                "jnp.var(ddof=1), because Flax always feeds the biased batch variance into "
                "batch_stats['var'] (never by rescaling Flax's value)")
    return None


def batch_norm(dt: Any, *, training: bool, eps: float, channel_axis: int = 1,
               num_batches_tracked: int = 0, batch_stat_weight: float | str | None = None,
               running_var_estimator: str | None = None) -> Fn:
    """``flax.linen.BatchNorm(axis=channel_axis)``; training mutates ``batch_stats``.

    * Eval: ``use_running_average=True`` on the given statistics.
    * Training, biased estimator: ``running_mean``/``running_var`` are Flax's own
      ``batch_stats['mean']``/``['var']`` after the step, with ``momentum = 1 - f``.
    * Training, ``running_var_estimator="unbiased"``: Flax cannot express it, so ``y`` still
      comes from Flax while the update is composed from jax.numpy in Flax's statistics dtype
      and Flax's update form ``momentum * old + (1 - momentum) * new``; such a case is
      labelled ``composed`` (:func:`_batch_norm_composed`).
    * ``num_batches_tracked`` is read (it sets the cumulative-average momentum) but not
      returned: Flax's BatchNorm keeps no step counter, and the runner does not require one.
    """
    import jax.numpy as jnp
    from flax import linen as nn
    from jax import lax

    if running_var_estimator not in (None, "biased", "unbiased"):
        raise ValueError(f"argument 'running_var_estimator': got {running_var_estimator!r}, "
                         "expected 'biased' or 'unbiased'")
    momentum = (None if batch_stat_weight is None
                else flax_momentum(batch_stat_weight, int(num_batches_tracked)))
    sdt = _reduction_dtype(dt)

    def fn(p: Mapping[str, jax.Array], s: Mapping[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
        x = p["x"]
        c = _axis("channel_axis", channel_axis, x.ndim)
        tracking = "running_mean" in s
        if tracking != ("running_var" in s):
            raise ValueError("argument 'running_mean': running_mean and running_var must be "
                             "given together or not at all")
        if not training and not tracking:
            raise ValueError("argument 'running_mean': got None with training=False, expected "
                             "the running statistics for evaluation")
        if training and tracking and momentum is None:
            raise ValueError("argument 'batch_stat_weight': got None while updating running "
                             "statistics, expected a number in [0, 1] or 'cumulative'")
        if tracking:
            stats = {"mean": s["running_mean"], "var": s["running_var"]}
        else:
            # Flax always keeps batch_stats; without tracking they are scratch, thrown away.
            stats = {"mean": jnp.zeros((x.shape[c],), sdt), "var": jnp.ones((x.shape[c],), sdt)}
        m = 0.0 if momentum is None else momentum
        layer = nn.BatchNorm(use_running_average=not training, axis=c, epsilon=eps,
                             momentum=m, dtype=dt, param_dtype=dt, use_scale="weight" in p,
                             use_bias="bias" in p)
        variables = {"params": _affine(p), "batch_stats": stats}
        if not training:
            return _apply(layer, variables, x), {}
        y: jax.Array
        y, updated = layer.apply(variables, x, mutable=["batch_stats"])
        if not tracking:
            return y, {}
        # Flax keeps no step counter: num_batches_tracked is not returned (not checked)
        if running_var_estimator != "unbiased":
            new = updated["batch_stats"]
            return y, {"running_mean": new["mean"], "running_var": new["var"]}
        xs = lax.stop_gradient(x).astype(sdt)
        axes = tuple(i for i in range(x.ndim) if i != c)
        mean, var = jnp.mean(xs, axis=axes), jnp.var(xs, axis=axes, ddof=1)
        return y, {"running_mean": m * s["running_mean"] + (1 - m) * mean,
                   "running_var": m * s["running_var"] + (1 - m) * var}

    return fn


def lp_norm(dt: Any, *, p: float, axis: int, eps: float) -> Fn:
    """Composed: ``x / max(||x||_p, eps)`` with ``jnp.linalg.norm`` (no Flax layer exists)."""
    import jax.numpy as jnp
    from jax import lax

    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)) or not (
            math.isfinite(p) and p >= 1):
        raise ValueError(f"argument 'p': got {p!r}, expected a finite number >= 1")
    order: float = int(p) if float(p).is_integer() else float(p)
    acc = _reduction_dtype(dt)

    def fn(prim: Mapping[str, jax.Array], s: Mapping[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
        x = prim["x"].astype(acc)
        a = _axis("axis", axis, x.ndim)
        norm = jnp.linalg.norm(x, ord=order, axis=a, keepdims=True)
        # The spec takes the unclamped branch when ||x|| == eps, so compare with <, not max().
        clamped = lax.stop_gradient(norm < eps)
        # A clamped row's norm is unused, but its derivative at x = 0 is inf and 0 * inf = NaN
        # would leak through where(); differentiate a harmless stand-in there instead.
        safe = jnp.linalg.norm(jnp.where(clamped, jnp.ones_like(x), x), ord=order, axis=a,
                               keepdims=True)
        y = x / jnp.where(clamped, jnp.asarray(eps, acc), safe)
        return y.astype(dt), {"norm": jnp.squeeze(norm, axis=a)}

    return fn


def local_response_norm(dt: Any, *, size: int, alpha: float, beta: float, k: float,
                        channel_axis: int = 1) -> Fn:
    """Composed: zero-padded window sum of squares with ``lax.reduce_window`` (divisor size)."""
    from jax import lax

    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"argument 'size': got {size!r}, expected an int >= 1")
    acc = _reduction_dtype(dt)

    def fn(prim: Mapping[str, jax.Array], s: Mapping[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
        x = prim["x"].astype(acc)
        c = _axis("channel_axis", channel_axis, x.ndim)
        window = [1] * x.ndim
        window[c] = int(size)
        # Window [c - floor(size/2), c + floor((size-1)/2)], zero padded: the divisor stays size.
        padding = [(0, 0)] * x.ndim
        padding[c] = (int(size) // 2, (int(size) - 1) // 2)
        # A concrete zero init makes JAX pick its differentiable reduce_window_sum primitive.
        total = lax.reduce_window(x * x, np.zeros((), acc), lax.add, tuple(window),
                                  (1,) * x.ndim, tuple(padding))
        scale = k + (alpha / size) * total
        return (x * scale ** -beta).astype(dt), {"scale": scale}

    return fn


TRANSLATIONS: Mapping[str, Translation] = {
    "batch_norm": Translation(
        "native", "flax.linen.BatchNorm (batch_stats mutable in training; momentum = "
        "1 - batch_stat_weight)", ("x", "weight", "bias"),
        batch_norm, state=("running_mean", "running_var"), composed_when=_batch_norm_composed),
    "layer_norm": Translation("native", "flax.linen.LayerNorm", ("x", "weight", "bias"),
                              layer_norm),
    "rms_norm": Translation("native", "flax.linen.RMSNorm (+ bias added after it: composed)",
                            ("x", "weight", "bias"), rms_norm, composed_when=_rms_norm_composed),
    "power_norm": Translation("composed", _power.API, ("x", "weight", "bias"),
                              _power.power_norm),
    "instance_norm": Translation("native", "flax.linen.InstanceNorm", ("x", "weight", "bias"),
                                 instance_norm),
    "group_norm": Translation("native", "flax.linen.GroupNorm (channels moved last)",
                              ("x", "weight", "bias"), group_norm),
    "lp_norm": Translation("composed", "jax.numpy composition: x / max(jnp.linalg.norm, eps)",
                           ("x",), lp_norm),
    "fix_norm": Translation("composed", _l2.FIX_NORM_API, ("x", "weight"), _l2.fix_norm),
    "scale_norm": Translation("composed", _l2.SCALE_NORM_API, ("x", "weight"),
                              _l2.scale_norm),
    "unit_norm": Translation("composed", _l2.UNIT_NORM_API, ("x",), _l2.unit_norm),
    "local_response_norm": Translation(
        "composed", "jax.numpy composition: lax.reduce_window sum of squares", ("x",),
        local_response_norm),
    "ghost_batch_norm": Translation("composed", _ghost.API, ("x", "weight", "bias"),
                                    _ghost.ghost_batch_norm, state=("running_mean", "running_var")),
    "batch_renorm": Translation("composed", _renorm.API, ("x", "weight", "bias"),
                                _renorm.batch_renorm, state=("running_mean", "running_var")),
    "sequence_batch_norm": Translation(
        "native", _seq.API, ("x", "weight", "bias"), _seq.sequence_batch_norm,
        state=("running_mean", "running_var"), composed_when=_seq.composed_when,
        constants=("mask",)),
    "adaptive_layer_norm": Translation("composed", _adaln.API,
                                       ("x", "cond", "weight", "bias"),
                                       _adaln.adaptive_layer_norm),
    "mixed_eval_batch_norm": Translation("composed", _mixed.API, ("x", "weight", "bias"),
                                         _mixed.mixed_eval_batch_norm,
                                         state=("running_mean", "running_var")),
    "batch_instance_norm": Translation("composed", _bin.API, ("x", "rho", "weight", "bias"),
                                       _bin.batch_instance_norm,
                                       state=("running_mean", "running_var")),
    "adaptive_instance_norm": Translation("composed", _adain.API, ("x", "style"),
                                          _adain.adaptive_instance_norm),
    "conditional_instance_norm": Translation("composed", _cin.API, ("x", "weight", "bias"),
                                             _cin.conditional_instance_norm,
                                             constants=("style",)),
    "standardize": Translation("composed", _standardize.API, ("x",),
                               _standardize.standardize, state=("mean", "var")),
    "global_response_norm": Translation("composed", _grn.API, ("x", "weight", "bias"),
                                        _grn.global_response_norm),
    "min_max_scale": Translation("composed", _minmax.API, ("x",),
                                 _minmax.min_max_scale,
                                 state=("data_min", "data_max")),
    "spectral_norm": Translation("composed", _spectral.API, ("x",), _spectral.spectral_norm,
                                 state=("u", "v")),
    "qk_norm": Translation("composed", _qk.API, ("x", "k", "q_weight", "k_weight", "gain"),
                           _qk.qk_norm),
    "gradnorm": Translation("composed", _gradnorm_mtl.API, ("x", "initial_losses"),
                            _gradnorm_mtl.gradnorm, state=("weights",)),
    "gradient_normalization": Translation("composed", _gradnorm.API, ("x",),
                                          _gradnorm.gradient_normalization),
    "weight_norm": Translation("native", _wn.API, ("x", "g"), _wn.weight_norm),
    "weight_standardization": Translation("composed", _ws.API, ("x",),
                                          _ws.weight_standardization),
}
"""Every method the adapter runs, keyed by the reference's method name."""
