"""ghost_batch_norm in PyTorch, composed: PyTorch has no ghost batch norm operator.

One ``F.batch_norm`` call normalizes every ghost batch at once. With the channel axis moved to
1, ``x`` of shape ``(N, C, *S)`` is viewed as ``(G, B, C, L)`` (``B = ghost_batch_size``,
``L = prod(S)``, ghost index outer: contiguous ghost batches) and rearranged to
``(B, G*C, L)``: each (ghost, channel) pair becomes one channel of ``F.batch_norm``, whose
reduction over axes 0 and 2 is exactly that ghost batch's set. ``weight`` and ``bias`` enter
as ``weight.repeat(G)`` (row ``g*C + c`` holds ``weight[c]``), so autograd sums the parameter
gradients over the ghost batches; every value and derivative comes from PyTorch's batch-norm
kernels and autograd formulas.

Running statistics, updated once per call: ``F.batch_norm`` updates a ``(G*C,)`` copy,
``running.repeat(G)``, in place with ``momentum = f``, so entry ``(g, c)`` becomes
``(1 - f) running[c] + f stat[g, c]``. The update is affine in the statistic, so the average
over the ghost batches of those entries is ``(1 - f) running[c] + f mean_g(stat[g, c])``: the
spec's update. PyTorch's running variance is the unbiased one with ``n`` the count of that
(ghost, channel) set, which is the spec's ``n`` for ``running_var_estimator="unbiased"``. For
``"biased"``, which PyTorch cannot store, the running variance is composed from ``torch.var``
(``correction=0``) on the same view, never by rescaling PyTorch's unbiased value.
The running mean is F.batch_norm's own update in both cases (``torch.var_mean``'s mean would be
NaN for a set holding +-inf: it is a Welford pass). ``"cumulative"`` is
``momentum = 1 / (num_batches_tracked + 1)``, computed here because the
functional call keeps no counter; the counter returned is ``num_batches_tracked + 1``.

Evaluation is batch norm's (the batch is not split): the batch_norm translation runs it.
"""

from __future__ import annotations

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

API = ("composed: one torch.nn.functional.batch_norm on the (B, G*C, L) view of x (each "
       "ghost batch's channel is one batch-norm channel), weight/bias repeated G times; the "
       "running statistics are that call's per-ghost update averaged over the ghost batches "
       "(the biased running variance composed from torch.var); evaluation is F.batch_norm")
"""What the report shows for this method: PyTorch has no ghost batch norm operator."""


def _ghost_size(hyper: Mapping[str, Any]) -> int:
    size = _int(hyper, "ghost_batch_size")
    if size < 1:
        raise ValueError(f"argument 'hyper['ghost_batch_size']': got {size}, expected an "
                         "integer >= 1")
    return size


def ghost_batch_norm(t: Mapping[str, Tensor | None], hyper: Mapping[str, Any],
                     want_stats: bool) -> tuple[Tensor, dict[str, Tensor]]:
    """``(y, state)`` of ghost batch norm; see the module docstring."""
    # methods imports this module for its table; importing it back at call time breaks the cycle
    from .methods import _x, batch_norm, batch_stat_factor, running_var_estimator

    x = _x(t)
    c = _axis(hyper, "channel_axis", x.dim(), default=1)
    if c == 0:
        raise ValueError("argument 'hyper['channel_axis']': got the batch axis 0, expected "
                         "another axis (ghost batches split axis 0)")
    size = _ghost_size(hyper)
    training = _required(hyper, "training")
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"argument 'hyper['training']': got {training!r}, expected True or False")
    if not training:
        rest = {k: v for k, v in hyper.items() if k != "ghost_batch_size"}
        return batch_norm(t, rest, want_stats)
    xm = torch.movedim(x, c, 1)
    batch, channels = xm.shape[0], xm.shape[1]
    if batch % size:
        raise ValueError(f"argument 'hyper['ghost_batch_size']': got {size}, expected a divisor "
                         f"of the batch size {batch}")
    ghosts = batch // size
    view = xm.reshape(ghosts, size, channels, -1).transpose(0, 1).reshape(size, ghosts * channels,
                                                                          -1)
    w, b = t.get("weight"), t.get("bias")
    wr = None if w is None else w.repeat(ghosts)
    br = None if b is None else b.repeat(ghosts)
    eps = _float(hyper, "eps")
    rm, rv = t.get("running_mean"), t.get("running_var")
    if (rm is None) != (rv is None):
        raise ValueError("argument 'inputs': got only one of 'running_mean' and 'running_var', "
                         "expected both or neither")
    state: dict[str, Tensor] = {}
    if rm is None or rv is None:
        yv = F.batch_norm(view, None, None, wr, br, training=True, momentum=0.0, eps=eps)
    else:
        momentum = batch_stat_factor(hyper)
        tracked = _int(hyper, "num_batches_tracked", default=0)
        f = 1.0 / (tracked + 1) if momentum is None else momentum
        run_mean, run_var = rm.repeat(ghosts), rv.repeat(ghosts)
        yv = F.batch_norm(view, run_mean, run_var, wr, br, training=True, momentum=f, eps=eps)
        if running_var_estimator(hyper) == "biased":
            # only the variance is composed; the mean keeps F.batch_norm's own update
            var = torch.var(view.detach(), dim=(0, 2), correction=0)
            # the same form as PyTorch's own running-statistics kernels: f * new + (1 - f) * old
            run_var = f * var + (1.0 - f) * rv.repeat(ghosts)
        state = {"running_mean": run_mean.reshape(ghosts, channels).mean(dim=0),
                 "running_var": run_var.reshape(ghosts, channels).mean(dim=0),
                 "num_batches_tracked": torch.tensor(tracked + 1, dtype=torch.long)}
    y = yv.reshape(size, ghosts, channels, -1).transpose(0, 1).reshape(xm.shape)
    return torch.movedim(y, 1, c), state
