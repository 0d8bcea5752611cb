"""gradnorm in PyTorch, composed from the paper: PyTorch has no GradNorm.

Written from Chen et al. (2018), Algorithm 1, on the inputs the spec gives (the norms
``g_i = ||grad_W L_i||`` of the unweighted task gradients and the losses, stacked in ``x``): ``G =
w g``, ``r = (L / L0) / mean(L / L0)``, the target ``mean(G) r**alpha`` detached (the paper holds
it constant), ``L_grad = sum |G - target|``, its gradient with respect to the weights from
``torch.func.grad`` (torch.abs's derivative is ``sign``, 0 at 0: the spec's subgradient), one
plain gradient-descent step ``w - lr grad`` and the renormalization ``T v / sum v``. In float32
for 16-bit inputs; the weights are returned in float32, as a training loop keeps them. The
derivatives of ``y`` with respect to ``x`` and the initial losses are autograd's through that
composition (``torch.func.grad`` composes with reverse and forward mode).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .._hyper import real as _float
from .._hyper import required as _required

API = ("composed from the paper (Chen et al. 2018, Algorithm 1): G = w g, loss ratios over "
       "their mean, the target mean(G) r**alpha detached, L_grad = sum |G - target|, its "
       "gradient in w by torch.func.grad, one SGD step, renormalized to sum T")
"""What the report shows for this method: PyTorch has no GradNorm."""


def gradnorm(t: Mapping[str, Tensor | None], hyper: Mapping[str, Any],
             want_stats: bool) -> tuple[Tensor, dict[str, Tensor]]:
    """``(y, statistics)``; see the module docstring."""
    from .methods import _x

    x, l0, w0 = _x(t), t.get("initial_losses"), t.get("weights")
    if l0 is None or w0 is None:
        raise ValueError("argument 'inputs': got no 'initial_losses' or 'weights', expected "
                         "both (gradnorm)")
    compute = torch.promote_types(x.dtype, torch.float32)
    xc, init = x.to(compute), l0.to(compute)
    w = w0.to(compute).detach()
    g, losses = xc[0], xc[1]
    alpha, lr = _float(hyper, "alpha"), _float(hyper, "lr")
    n = g.numel()
    ratio = losses / init
    rate = ratio / ratio.mean()

    def grad_norm_loss(weights: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        big = weights * g
        target = (big.mean() * rate.pow(alpha)).detach()
        return (big - target).abs().sum(), (big, target)

    grad, (big, target) = torch.func.grad(grad_norm_loss, has_aux=True)(w)
    stats: dict[str, Tensor] = {}
    if want_stats:
        stats = {"grad_norm_loss": (big - target).abs().sum(), "weighted_norms": big,
                 "targets": target, "weight_grad": grad}
    if not bool(_required(hyper, "training")):
        # y = w does not depend on the primals in evaluation; the zero term ties it to them so
        # that autograd returns zero derivatives instead of raising (the inputs are finite)
        return (w + 0.0 * xc.sum() + 0.0 * init.sum()).to(x.dtype), stats
    v = w - lr * grad
    y = n * v / v.sum()
    if want_stats:
        stats["weights"] = y
    return y.to(x.dtype), stats
