"""One translation per method: the spec's canonical hyperparameters to PyTorch's own operator.

Each translation takes the call's tensors (differentiable primals and state, already in the dtype
under test on the device) and the canonical ``hyper`` mapping, calls the framework's operator with
every convention spelled out, and returns ``(y, stats)``. ``stats`` holds only what PyTorch itself
computes and exposes: running state from the ``nn`` modules, and ``mean``/``rstd`` from
``torch.native_layer_norm`` and ``torch.native_group_norm``, which are public operators of the
Core ATen IR (``torch.Tag.core``, the opset PyTorch documents as stable for backends).
Statistics PyTorch does not expose are left out rather than recomputed here.

Moving the channel axis to position 1 (``torch.movedim``) and flattening spatial axes are layout
glue: the framework's operator still computes every value, so the result stays ``native``.

Checked against torch 2.13.0 (CPU build); the facts each translation relies on are cited inline
and tested in tests/test_torch_adapter.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from .._hyper import axis as _axis
from .._hyper import integer as _int
from .._hyper import real as _float
from .._hyper import required as _required
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

Tensors = Mapping[str, Tensor | None]
Result = tuple[Tensor, dict[str, Tensor]]


@dataclass(frozen=True)
class Translation:
    """How one method maps onto PyTorch.

    ``primals`` are the differentiable inputs in the reference's order, ``state`` the extra
    non-differentiable inputs (running statistics), ``api`` the PyTorch API the result comes from.
    ``run(tensors, hyper, want_stats)`` returns ``(y, stats)``; ``want_stats=False`` lets the
    derivative paths skip the extra statistics call.
    """

    primals: tuple[str, ...]
    state: tuple[str, ...]
    api: str
    run: Callable[[Tensors, Mapping[str, Any], bool], Result]
    constants: tuple[str, ...] = ()
    """Integer and boolean inputs (a padding mask): tensors of their own dtype, never rounded."""
    forward_ad: bool = True
    """False: PyTorch's API has no forward-mode AD (spectral_norm's in-place ``out=``
    normalization), so the JVP and second order use reverse mode (double backward)."""


def _x(t: Tensors) -> Tensor:
    x = t.get("x")
    if x is None:
        raise ValueError("argument 'inputs': got no 'x', expected the input array under 'x'")
    return x


# --- the translations ---

def layer_norm(t: Tensors, hyper: Mapping[str, Any], want_stats: bool) -> Result:
    """``F.layer_norm`` with ``normalized_shape = x.shape[axis:]`` and eps passed explicitly."""
    x = _x(t)
    axis = _axis(hyper, "axis", x.dim())
    shape = list(x.shape[axis:])
    eps = _float(hyper, "eps")
    y = F.layer_norm(x, shape, t.get("weight"), t.get("bias"), eps)
    if not want_stats:
        return y, {}
    # The affine does not enter mean and rstd, so the statistics call leaves it out.
    _, mean, rstd = torch.native_layer_norm(x, shape, None, None, eps)
    lead = x.shape[:axis]
    return y, {"mean": mean.reshape(lead), "rstd": rstd.reshape(lead)}


def rms_norm(t: Tensors, hyper: Mapping[str, Any], want_stats: bool) -> Result:
    """``F.rms_norm`` with eps passed explicitly.

    PyTorch's ``eps=None`` means ``finfo(float32).eps`` for float32/float16/bfloat16 inputs (and
    float64's for float64), not the dtype's own epsilon; a framework default never reaches the
    spec, which always states eps. No public stable operator exposes the mean square or rrms.
    """
    x = _x(t)
    axis = _axis(hyper, "axis", x.dim())
    y = F.rms_norm(x, list(x.shape[axis:]), t.get("weight"), eps=_float(hyper, "eps"))
    # F.rms_norm and nn.RMSNorm have no bias (torch 2.13): it is added to their output in the
    # dtype under test, and such a case is labelled composed (TorchAdapter.case_support).
    bias = t.get("bias")
    return (y if bias is None else y + bias), {}


def instance_norm(t: Tensors, hyper: Mapping[str, Any], want_stats: bool) -> Result:
    """``F.instance_norm`` on input statistics, channels moved to axis 1.

    ``use_input_stats=True`` without running statistics is PyTorch's default
    (``track_running_stats=False``); momentum only matters for running statistics, which the
    spec's instance norm does not have. PyTorch exposes no instance statistics.
    """
    x = _x(t)
    c = _axis(hyper, "channel_axis", x.dim(), default=1)
    xm = torch.movedim(x, c, 1)
    y = F.instance_norm(xm, None, None, t.get("weight"), t.get("bias"), use_input_stats=True,
                        eps=_float(hyper, "eps"))
    return torch.movedim(y, 1, c), {}


def group_norm(t: Tensors, hyper: Mapping[str, Any], want_stats: bool) -> Result:
    """``F.group_norm``: PyTorch's groups are contiguous, like the spec's; channels to axis 1."""
    x = _x(t)
    c = _axis(hyper, "channel_axis", x.dim(), default=1)
    groups = _int(hyper, "groups")
    eps = _float(hyper, "eps")
    xm = torch.movedim(x, c, 1)
    y = F.group_norm(xm, groups, t.get("weight"), t.get("bias"), eps)
    stats: dict[str, Tensor] = {}
    if want_stats:
        n, channels = xm.shape[0], xm.shape[1]
        hw = math.prod(xm.shape[2:])
        # Called directly, the CPU kernel rejects some strided inputs that F.group_norm accepts
        # ("Expected X.is_contiguous(memory_format)", e.g. a moved 3-d channel axis), so the
        # statistics call gets the contiguous layout; the values are the same reductions.
        _, mean, rstd = torch.native_group_norm(xm.contiguous(), None, None, n, channels, hw,
                                                groups, eps)
        stats = {"mean": mean.reshape(n, groups), "rstd": rstd.reshape(n, groups)}
    return torch.movedim(y, 1, c), stats


_BATCH_NORM_MODULES: dict[int, type[nn.modules.batchnorm._BatchNorm]] = {
    2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}


def batch_stat_factor(hyper: Mapping[str, Any]) -> float | None:
    """PyTorch ``momentum`` for the spec's ``batch_stat_weight``: the same number, or None.

    The spec's ``f`` weights the *new* batch, exactly PyTorch's momentum; ``"cumulative"`` is
    PyTorch's ``momentum=None`` (``f = 1/(num_batches_tracked + 1)``, counted in the module).
    """
    value = _required(hyper, "batch_stat_weight")
    if value == "cumulative":
        return None
    f = _float(hyper, "batch_stat_weight")
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"argument 'hyper['batch_stat_weight']': got {value!r}, expected a "
                         "number in [0, 1] or 'cumulative'")
    return f


def running_var_estimator(hyper: Mapping[str, Any]) -> str:
    """The canonical ``running_var_estimator``, validated."""
    value = _required(hyper, "running_var_estimator")
    if value not in ("biased", "unbiased"):
        raise ValueError(f"argument 'hyper['running_var_estimator']': got {value!r}, expected "
                         "'biased' or 'unbiased'")
    return str(value)


def batch_norm(t: Tensors, hyper: Mapping[str, Any], want_stats: bool) -> Result:
    """Batch norm through ``nn.BatchNorm{1,2,3}d`` (tracking) or ``F.batch_norm`` (otherwise).

    * Eval and untracked training: ``F.batch_norm`` with ``training`` as given; momentum is
      unused there, so it is passed as 0.0.
    * Training with running statistics and ``running_var_estimator="unbiased"``: an
      ``nn.BatchNormNd`` module in training mode, its buffers set to the given state through
      ``torch.func.functional_call``, ``momentum = batch_stat_weight`` (or None for
      ``"cumulative"``). The module increments ``num_batches_tracked`` and derives the
      cumulative factor from it, so the whole update is PyTorch's.
    * ``running_var_estimator="biased"``: PyTorch always stores the unbiased batch variance in
      ``running_var`` and has no option for the biased one, so ``y`` comes from
      ``F.batch_norm`` and the state update is *composed* from ``torch.var_mean``
      (``correction=0``) in the dtype under test, and such a case is labelled ``composed``.
    """
    x = _x(t)
    c = _axis(hyper, "channel_axis", x.dim(), default=1)
    eps = _float(hyper, "eps")
    training = _required(hyper, "training")
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"argument 'hyper['training']': got {training!r}, expected True or False")
    xm = torch.movedim(x, c, 1)
    w, b = t.get("weight"), t.get("bias")
    rm, rv = t.get("running_mean"), t.get("running_var")
    if (rm is None) != (rv is None):
        raise ValueError("argument 'inputs': got only one of 'running_mean' and 'running_var', "
                         "expected both or neither")
    if not bool(training):
        if rm is None:
            raise ValueError("argument 'inputs': got no running statistics with training=False, "
                             "expected 'running_mean' and 'running_var'")
        y = F.batch_norm(xm, rm, rv, w, b, training=False, momentum=0.0, eps=eps)
        return torch.movedim(y, 1, c), {}
    if rm is None:
        y = F.batch_norm(xm, None, None, w, b, training=True, momentum=0.0, eps=eps)
        return torch.movedim(y, 1, c), {}
    assert rv is not None
    momentum = batch_stat_factor(hyper)
    tracked = _int(hyper, "num_batches_tracked", default=0)
    count = torch.tensor(tracked, dtype=torch.long, device=x.device)
    if running_var_estimator(hyper) == "unbiased":
        y = _batch_norm_module(xm, w, b, rm, rv, count, momentum, eps)
        state = {"running_mean": rm, "running_var": rv, "num_batches_tracked": count}
    else:
        y = F.batch_norm(xm, None, None, w, b, training=True, momentum=0.0, eps=eps)
        state = _biased_update(xm, rm, rv, count, momentum)
    return torch.movedim(y, 1, c), state


def _batch_norm_module(xm: Tensor, w: Tensor | None, b: Tensor | None, rm: Tensor, rv: Tensor,
                       count: Tensor, momentum: float | None, eps: float) -> Tensor:
    """Run ``nn.BatchNormNd`` in training mode on the given state (updates rm, rv, count)."""
    shape = xm.shape
    # Beyond 5-d no module exists; flattening the spatial axes keeps every per-channel set.
    xr = xm if xm.dim() <= 5 else xm.reshape(shape[0], shape[1], -1)
    # affine=False registers weight and bias as None; functional_call then supplies whichever
    # the case has, so weight-only and bias-only calls reach F.batch_norm exactly as given.
    module = _BATCH_NORM_MODULES[xr.dim()](
        shape[1], eps=eps, momentum=momentum, affine=False, track_running_stats=True,
        device=xm.device, dtype=xm.dtype)
    module.train()
    params = {"running_mean": rm, "running_var": rv, "num_batches_tracked": count}
    params.update({k: v for k, v in (("weight", w), ("bias", b)) if v is not None})
    y = functional_call(module, params, (xr,))
    assert isinstance(y, Tensor)
    return y.reshape(shape)


def _biased_update(xm: Tensor, rm: Tensor, rv: Tensor, count: Tensor, momentum: float | None
                   ) -> dict[str, Tensor]:
    """The spec's update with the biased batch variance, composed from torch primitives."""
    dims = tuple(i for i in range(xm.dim()) if i != 1)
    # torch.var_mean's (Welford) mean is NaN for a channel holding an infinity; torch.mean
    # gives the spec's +-inf (the variance is NaN there either way: inf - inf)
    var = torch.var(xm.detach(), dim=dims, correction=0)
    mean = torch.mean(xm.detach(), dim=dims)
    new_count = count + 1
    f = 1.0 / float(new_count.item()) if momentum is None else momentum
    # The same form as PyTorch's own running-statistics kernels: f * new + (1 - f) * old.
    return {"running_mean": f * mean + (1.0 - f) * rm, "running_var": f * var + (1.0 - f) * rv,
            "num_batches_tracked": new_count}


def lp_norm(t: Tensors, hyper: Mapping[str, Any], want_stats: bool) -> Result:
    """``F.normalize``: ``x / max(||x||_p, eps)``, the spec's clamp (not eps added to the norm).

    ``clamp_min`` passes the gradient at ``norm == eps``, the spec's unclamped branch. The norm
    itself is not exposed by ``F.normalize``.
    """
    x = _x(t)
    axis = _axis(hyper, "axis", x.dim())
    return F.normalize(x, p=_float(hyper, "p"), dim=axis, eps=_float(hyper, "eps")), {}


_HALF = (torch.float16, torch.bfloat16)


def lrn_needs_3d(x: Tensor) -> bool:
    """True where ``F.local_response_norm`` on >= 4-d input has no kernel.

    Its >= 4-d path uses ``avg_pool3d``, which torch 2.13's CPU build does not implement for
    float16 or bfloat16 ("avg_pool3d_out_frame" not implemented for 'Half'); the 3-d path
    (``avg_pool2d``) does. LRN only mixes channels, so the (N, C, prod(spatial)) view gives the
    same values through F.local_response_norm's own 3-d path.
    """
    return x.dim() >= 4 and x.device.type == "cpu" and x.dtype in _HALF


def local_response_norm(t: Tensors, hyper: Mapping[str, Any], want_stats: bool) -> Result:
    """``F.local_response_norm`` with ``alpha`` as given.

    PyTorch computes ``k + alpha * avg_pool(x^2)`` over a zero-padded window
    ``[c - size//2, c + (size-1)//2]`` with ``count_include_pad``: the divisor is always
    ``size``, exactly the spec's ``alpha/size`` rule and window. Its ``scale`` is not exposed.
    """
    x = _x(t)
    c = _axis(hyper, "channel_axis", x.dim(), default=1)
    xm = torch.movedim(x, c, 1)
    moved = xm.shape
    # F.local_response_norm needs >= 3-d input; a trailing unit axis leaves the windows unchanged.
    if xm.dim() == 2:
        xm = xm.unsqueeze(-1)
    elif lrn_needs_3d(xm):
        xm = xm.reshape(moved[0], moved[1], -1)
    y = F.local_response_norm(xm, _int(hyper, "size"), alpha=_float(hyper, "alpha"),
                              beta=_float(hyper, "beta"), k=_float(hyper, "k"))
    return torch.movedim(y.reshape(moved), 1, c), {}


TRANSLATIONS: dict[str, Translation] = {
    "batch_norm": Translation(("x", "weight", "bias"), ("running_mean", "running_var"),
                              "torch.nn.BatchNorm{1,2,3}d / torch.nn.functional.batch_norm",
                              batch_norm),
    "layer_norm": Translation(("x", "weight", "bias"), (), "torch.nn.functional.layer_norm",
                              layer_norm),
    "rms_norm": Translation(("x", "weight", "bias"), (), "torch.nn.functional.rms_norm",
                            rms_norm),
    "power_norm": Translation(("x", "weight", "bias"), (), _power.API, _power.power_norm),
    "instance_norm": Translation(("x", "weight", "bias"), (),
                                 "torch.nn.functional.instance_norm", instance_norm),
    "group_norm": Translation(("x", "weight", "bias"), (), "torch.nn.functional.group_norm",
                              group_norm),
    "lp_norm": Translation(("x",), (), "torch.nn.functional.normalize", lp_norm),
    "fix_norm": Translation(("x", "weight"), (), _l2.FIX_NORM_API, _l2.fix_norm),
    "scale_norm": Translation(("x", "weight"), (), _l2.SCALE_NORM_API, _l2.scale_norm),
    "unit_norm": Translation(("x",), (), _l2.UNIT_NORM_API, _l2.unit_norm),
    "local_response_norm": Translation(("x",), (), "torch.nn.functional.local_response_norm",
                                       local_response_norm),
    "ghost_batch_norm": Translation(("x", "weight", "bias"), ("running_mean", "running_var"),
                                    _ghost.API, _ghost.ghost_batch_norm),
    "batch_renorm": Translation(("x", "weight", "bias"), ("running_mean", "running_var"),
                                _renorm.API, _renorm.batch_renorm),
    "mixed_eval_batch_norm": Translation(("x", "weight", "bias"), ("running_mean", "running_var"),
                                         _mixed.API, _mixed.mixed_eval_batch_norm),
    "batch_instance_norm": Translation(("x", "rho", "weight", "bias"),
                                       ("running_mean", "running_var"), _bin.API,
                                       _bin.batch_instance_norm),
    "adaptive_instance_norm": Translation(("x", "style"), (), _adain.API,
                                          _adain.adaptive_instance_norm),
    "conditional_instance_norm": Translation(("x", "weight", "bias"), (), _cin.API,
                                             _cin.conditional_instance_norm, ("style",)),
    "adaptive_layer_norm": Translation(("x", "cond", "weight", "bias"), (), _adaln.API,
                                       _adaln.adaptive_layer_norm),
    "sequence_batch_norm": Translation(("x", "weight", "bias"), ("running_mean", "running_var"),
                                       _seq.API, _seq.sequence_batch_norm, ("mask",)),
    "standardize": Translation(("x",), (), _standardize.API, _standardize.standardize,
                               ("mean", "var")),
    "global_response_norm": Translation(("x", "weight", "bias"), (), _grn.API,
                                        _grn.global_response_norm),
    "min_max_scale": Translation(("x",), (), _minmax.API, _minmax.min_max_scale,
                                 ("data_min", "data_max")),
    "spectral_norm": Translation(("x",), ("u", "v"), _spectral.API, _spectral.spectral_norm,
                                 forward_ad=False),
    "qk_norm": Translation(("x", "k", "q_weight", "k_weight", "gain"), (), _qk.API, _qk.qk_norm),
    "gradnorm": Translation(("x", "initial_losses"), (), _gradnorm_mtl.API,
                            _gradnorm_mtl.gradnorm, ("weights",)),
    "gradient_normalization": Translation(("x",), (), _gradnorm.API,
                                          _gradnorm.gradient_normalization),
    # torch._weight_norm has no forward-AD formula (errata T17): derivatives by double backward,
    # the route of a user's create_graph=True (errata T21 says what it gives)
    "weight_norm": Translation(("x", "g"), (), _wn.API, _wn.weight_norm, forward_ad=False),
    "weight_standardization": Translation(("x",), (), _ws.API,
                                          _ws.weight_standardization),
}
"""Every method of :data:`normspec.reference.METHODS`, keyed by name."""
