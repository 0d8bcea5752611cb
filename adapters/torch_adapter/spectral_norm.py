"""spectral_norm in PyTorch: both of its APIs for power iteration, a composition for exact mode.

* ``mode="power_iteration"``: the API is chosen by ``update_order``, the one thing in which the
  two differ (checked in torch 2.13's sources, torch/nn/utils/spectral_norm.py and
  torch/nn/utils/parametrizations.py ``_SpectralNorm``):

  - ``"v_first"``: the deprecated hook ``torch.nn.utils.spectral_norm`` (a forward pre-hook;
    ``weight_orig``, buffers ``weight_u``, ``weight_v``; each iteration ``v = normalize(W^T u)``
    then ``u = normalize(W v)``);
  - ``"u_first"``: the parametrization ``torch.nn.utils.parametrizations.spectral_norm``
    (``parametrizations.weight.original``, buffers ``_u``, ``_v``; each iteration
    ``u = normalize(W v)`` then ``v = normalize(W^H u)``).

  An evaluation call without ``update_order`` (it does not iterate, so the order does not
  matter) uses the parametrization, the current API. Both run their iteration under
  ``torch.no_grad`` with ``F.normalize(eps=eps)`` (``x / max(||x||, eps)``), write the state in
  place and clone ``u`` and ``v`` before ``sigma = u . (W v)``; neither iterates in
  ``eval()``. Both initialize ``u`` and ``v`` randomly (the parametrization then runs 15
  iterations): the adapter overwrites the buffers with the given state through
  ``torch.func.functional_call``, which also makes ``W`` a plain input for autodiff. The
  buffers are in the weight's dtype, so 16-bit state and arithmetic stay 16-bit, as in a
  16-bit model. ``sigma`` is internal to both APIs and is not reported.
* ``mode="exact"``: composed (PyTorch has no exact spectral normalization of a weight):
  ``torch.linalg.matrix_norm(M, ord=2)`` (the largest singular value, differentiated through
  ``torch.linalg.svd``), in float32 for 16-bit weights (no half-precision SVD on CPU).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.utils import parametrizations
from torch.nn.utils import spectral_norm as hook_spectral_norm

from .._hyper import integer as _int
from .._hyper import real as _float
from .._hyper import required as _required

API = ("torch.nn.utils.spectral_norm (the hook; update_order v_first) or "
       "torch.nn.utils.parametrizations.spectral_norm (update_order u_first, and evaluation), "
       "the state written into their buffers; exact mode composed from "
       "torch.linalg.matrix_norm(ord=2)")
"""What the report shows for this method."""

Tensors = Mapping[str, Tensor | None]


class _Weight(nn.Module):  # type: ignore[misc, unused-ignore]
    """A module holding one parameter named ``weight``; calling it returns ``self.weight``
    (the spectrally normalized one once an API is applied)."""

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())

    def forward(self) -> Tensor:
        out: Tensor = self.weight
        return out


def _matrix(w: Tensor, dim: int) -> Tensor:
    return torch.movedim(w, dim, 0).flatten(1)


def _exact(w: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    compute = torch.promote_types(w.dtype, torch.float32)
    wc = w.to(compute)
    sigma = torch.linalg.matrix_norm(_matrix(wc, dim), ord=2)
    return (wc / sigma).to(w.dtype), sigma


def _power(w: Tensor, u: Tensor, v: Tensor, hyper: Mapping[str, Any], dim: int
           ) -> tuple[Tensor, Tensor, Tensor]:
    """``(y, u, v)`` from the API ``update_order`` selects, its buffers set to ``u``, ``v``."""
    training = bool(_required(hyper, "training"))
    order = hyper.get("update_order")
    iterations = _int(hyper, "n_power_iterations") if training else 1
    eps = _float(hyper, "eps") if training else 1e-12  # unused without iterations
    holder = _Weight(w)
    u_state, v_state = u.clone(), v.clone()     # written in place by the API
    if order == "v_first":
        hook_spectral_norm(holder, name="weight", n_power_iterations=iterations, eps=eps,
                           dim=dim)
        names = {"weight_orig": w, "weight_u": u_state, "weight_v": v_state}
    elif order in ("u_first", None) and (order is not None or not training):
        parametrizations.spectral_norm(holder, name="weight", n_power_iterations=iterations,
                                       eps=eps, dim=dim)
        names = {"parametrizations.weight.original": w,
                 "parametrizations.weight.0._u": u_state,
                 "parametrizations.weight.0._v": v_state}
    else:
        raise ValueError(f"argument 'hyper['update_order']': got {order!r}, expected "
                         "'v_first' or 'u_first'")
    holder.train(training)
    y = functional_call(holder, names, ())
    # the parametrization rebinds its buffers to the normalized tensors (out= keeps the
    # storage, so u_state and v_state hold them too); read them back from the call's tensors
    return y, u_state, v_state


def spectral_norm(t: Tensors, hyper: Mapping[str, Any], want_stats: bool
                  ) -> tuple[Tensor, dict[str, Tensor]]:
    """``(y, statistics)``; see the module docstring."""
    from .methods import _x

    w = _x(t)
    dim = _int(hyper, "dim")
    if not -w.dim() <= dim < w.dim():
        raise ValueError(f"argument 'hyper['dim']': got {dim}, expected an axis of a "
                         f"{w.dim()}-d weight")
    dim %= w.dim()
    mode = _required(hyper, "mode")
    if mode == "exact":
        y, sigma = _exact(w, dim)
        return y, ({"sigma": sigma} if want_stats else {})
    if mode != "power_iteration":
        raise ValueError(f"argument 'hyper['mode']': got {mode!r}, expected 'exact' or "
                         "'power_iteration'")
    u, v = t.get("u"), t.get("v")
    if u is None or v is None:
        raise ValueError("argument 'inputs': got no 'u'/'v', expected both state vectors in "
                         "mode='power_iteration'")
    y, u_new, v_new = _power(w, u, v, hyper, dim)
    if want_stats and bool(hyper.get("training")):
        return y, {"u": u_new, "v": v_new}
    return y, {}
