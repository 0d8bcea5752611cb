"""batch_instance_norm in PyTorch, composed: PyTorch has no batch-instance normalization.

The paper's own PyTorch code (hyeonseobnam/Batch-Instance-Normalization,
``models/batchinstancenorm.py``) builds the layer from two batch-norm calls, and so does this
translation, from the adapter's own batch_norm and instance_norm translations::

    r = torch.clamp(rho, 0, 1)
    y = batch_norm(x, weight = r * w, bias)  +  instance_norm(x, weight = (1 - r) * w)

``w`` is ``weight`` (ones when absent). The batch branch is the batch_norm translation, so its
running statistics are ``nn.BatchNormNd``'s update (or the composed biased update) exactly as
for batch_norm; the instance branch is ``F.instance_norm`` on input statistics.

The clip: the paper keeps the gate in ``[0, 1]`` with ``gate.data.clamp_(0, 1)`` after every
optimizer step and does not clip in the forward; the spec clips in the forward with the slope
``clip'(rho) = 1`` on the closed interval, 0 outside. ``torch.clamp``'s backward and forward
AD give exactly that slope (1 at rho = 0 and rho = 1, checked on torch 2.13.0 in
tests/test_mixed_eval_and_bin_adapters.py), so ``torch.clamp`` is used as is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

API = ("composed: the batch_norm translation (F.batch_norm / nn.BatchNormNd with its running "
       "statistics) with weight clamp(rho, 0, 1) * weight and the bias, plus F.instance_norm "
       "with weight (1 - clamp(rho, 0, 1)) * weight; torch.clamp's slope is 1 on [0, 1]")
"""What the report shows for this method: PyTorch has no batch-instance normalization."""


def batch_instance_norm(t: Mapping[str, Tensor | None], hyper: Mapping[str, Any],
                        want_stats: bool) -> tuple[Tensor, dict[str, Tensor]]:
    """``(y, state)``: the batch branch's running state in training; see the docstring."""
    from .methods import _x, batch_norm, instance_norm

    x = _x(t)
    rho = t.get("rho")
    if rho is None:
        raise ValueError("argument 'inputs': got no 'rho', expected the gate of shape (C,)")
    r = torch.clamp(rho, 0.0, 1.0)
    w = t.get("weight")
    w_bn = r if w is None else r * w
    w_in = 1.0 - r if w is None else (1.0 - r) * w
    state = {k: t.get(k) for k in ("running_mean", "running_var")}
    y_bn, stats = batch_norm({"x": x, "weight": w_bn, "bias": t.get("bias"), **state}, hyper,
                             want_stats)
    inorm = {k: hyper[k] for k in ("eps", "channel_axis") if k in hyper}
    y_in, _ = instance_norm({"x": x, "weight": w_in, "bias": None}, inorm, False)
    return y_bn + y_in, stats
