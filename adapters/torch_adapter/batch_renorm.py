"""batch_renorm composed from PyTorch operators: PyTorch has no batch renormalization.

No ``torch.nn`` module or functional implements Ioffe's batch renormalization (torch 2.13.0),
so the translation composes it the way Keras does (``_compose_transforms`` in tf_keras'
BatchNormalization): ``(z r + d) w + b = z (w r) + (w d + b)``, so ``y`` is
``F.batch_norm`` in training with weight ``w * r`` and bias ``w * d + b``. PyTorch's own kernel
normalizes and differentiates through the batch statistics; ``r`` and ``d`` come from
``torch.mean``/``torch.var`` and the running statistics passed in, and are ``detach()``-ed,
the spec's "constant in the gradient" (``detach`` also stops tangents under
``torch.func.jvp``).

Statistics, ``r``, ``d`` and the running-statistics update are computed in PyTorch's opmath
type (float32 for float16/bfloat16 inputs, as its batch-norm kernels accumulate), and the update
is the spec's ``(1 - f) running + f batch`` with the biased or unbiased batch variance.
Evaluation is ``F.batch_norm(training=False)`` on the running statistics, batch norm's own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .._hyper import axis as _axis
from .._hyper import integer as _int
from .._hyper import real as _float
from .._hyper import required as _required

Tensors = Mapping[str, Tensor | None]
Result = tuple[Tensor, dict[str, Tensor]]

API = ("composed from torch.nn.functional.batch_norm (training: weight * r, weight * d + bias; "
       "evaluation: the running statistics) with r and d from torch.mean/torch.var, detached")
REASON = ("PyTorch has no batch renormalization; " + API)


def _opmath(t: Tensor) -> torch.dtype:
    return torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else t.dtype


def _bound(hyper: Mapping[str, Any], key: str, minimum: float) -> float:
    value = _float(hyper, key)
    if not value >= minimum:  # also NaN
        raise ValueError(f"argument 'hyper[{key!r}]': got {value!r}, expected a number >= "
                         f"{minimum:g}")
    return value


def _view(v: Tensor, ndim: int) -> Tensor:
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def batch_renorm(t: Tensors, hyper: Mapping[str, Any], want_stats: bool) -> Result:
    """The translation (see the module docstring); ``(y, stats)`` in the channel layout given."""
    x = t.get("x")
    if x is None:
        raise ValueError("argument 'inputs': got no 'x', expected the input array under 'x'")
    c = _axis(hyper, "channel_axis", x.dim(), default=1)
    eps = _float(hyper, "eps")
    training = _required(hyper, "training")
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"argument 'hyper['training']': got {training!r}, expected True or False")
    xm = torch.movedim(x, c, 1)
    w, b = t.get("weight"), t.get("bias")
    rm, rv = t.get("running_mean"), t.get("running_var")
    if rm is None or rv is None:
        raise ValueError("argument 'inputs': got no running statistics, expected "
                         "'running_mean' and 'running_var' (evaluation normalizes with them; "
                         "training computes r and d from them)")
    if not bool(training):
        y = F.batch_norm(xm, rm, rv, w, b, training=False, momentum=0.0, eps=eps)
        return torch.movedim(y, 1, c), {}
    rmax, dmax = _bound(hyper, "rmax", 1.0), _bound(hyper, "dmax", 0.0)
    acc = _opmath(x)
    dims = tuple(i for i in range(xm.dim()) if i != 1)
    # Everything r and d are made of is detached: no gradient, and no tangent under
    # torch.func.jvp either (forward-mode AD ignores no_grad, but not detach).
    xs = xm.detach().to(acc)
    # torch.mean, not torch.var_mean: var_mean's Welford mean is NaN for a channel holding
    # +-inf (inf - inf), where the spec's mean (a sum) is +-inf (torch 2.13.0)
    mean, var = torch.mean(xs, dim=dims), torch.var(xs, dim=dims, correction=0)
    rm_, rv_ = rm.detach().to(acc), rv.detach().to(acc)
    sigma_running = torch.sqrt(rv_ + eps)
    r = torch.clamp(torch.sqrt(var + eps) / sigma_running, 1.0 / rmax, rmax)
    d = torch.clamp((mean - rm_) / sigma_running, -dmax, dmax)
    # (z r + d) w + b = z (w r) + (w d + b); w and b keep their gradient, r and d have none
    w_ = r if w is None else w.to(acc) * r
    b_ = d if w is None else w.to(acc) * d
    if b is not None:
        b_ = b_ + b.to(acc)
    y = torch.movedim(F.batch_norm(xm, None, None, w_, b_, training=True, momentum=0.0,
                                   eps=eps), 1, c)
    if not want_stats:
        return y, {}
    return y, {"mean": mean, "var": var, "rstd": torch.rsqrt(var + eps), "r": r, "d": d,
               **_update(hyper, xm, mean, var, rm_, rv_)}


def _update(hyper: Mapping[str, Any], xm: Tensor, mean: Tensor, var: Tensor, rm: Tensor,
            rv: Tensor) -> dict[str, Tensor]:
    """The spec's running-statistics update, from the running statistics passed in."""
    # methods.py imports this module to register it: its validators are imported on use
    from .methods import batch_stat_factor, running_var_estimator

    tracked = _int(hyper, "num_batches_tracked", default=0)
    momentum = batch_stat_factor(hyper)
    f = 1.0 / (tracked + 1) if momentum is None else momentum
    n = math.prod(xm.shape) // xm.shape[1]
    unbiased = running_var_estimator(hyper) == "unbiased"
    if unbiased and n < 2:
        raise ValueError(f"argument 'inputs['x']': got {n} value per channel, expected n >= 2 "
                         "for running_var_estimator='unbiased' (var * n / (n - 1))")
    sample = var * (n / (n - 1)) if unbiased else var
    # PyTorch's own running-statistics form: f * new + (1 - f) * old
    return {"running_mean": f * mean + (1.0 - f) * rm,
            "running_var": f * sample + (1.0 - f) * rv,
            "num_batches_tracked": torch.tensor(tracked + 1, dtype=torch.long)}
