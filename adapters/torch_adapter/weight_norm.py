"""weight_norm in PyTorch: both of its APIs, and a composition for the eps PyTorch lacks.

PyTorch has two weight-norm APIs, and both compute ``torch._weight_norm(v, g, dim)``:

* the parametrization ``torch.nn.utils.parametrizations.weight_norm(module, name, dim=0)``
  (``g``, ``v`` are ``parametrizations.<name>.original0`` and ``original1``), used by
  :func:`weight_norm` and so by the registered ``torch`` adapter;
* the deprecated forward pre-hook ``torch.nn.utils.weight_norm(module, name, dim=0)``
  (``<name>_g``, ``<name>_v``; a FutureWarning), used by :func:`weight_norm_hook` and the
  adapter variant :data:`HOOK_ADAPTER` (``normspec run --adapter
  normspec.adapters.torch_adapter.weight_norm:HOOK_ADAPTER --method weight_norm``), reported
  under its own name ``torch-weight-norm-hook`` against the same vectors.

Each call builds a one-parameter module whose forward returns the reparametrized weight, wraps
it with the API and evaluates it with ``torch.func.functional_call`` on ``{g, v}``, so autograd
and forward AD see ``g`` and ``v`` as the inputs. ``dim`` is the canonical ``kept_axis`` made
non-negative (``k % ndim``): PyTorch reads ``dim=-1`` as "no kept axis", the whole tensor (checked
on torch 2.13: ``norm_except_dim(v, 2, -1)`` is 0-d, ``norm_except_dim(v, 2, -2)`` keeps axis
ndim - 2), so the canonical last axis must be passed as ``ndim - 1``; ``kept_axis="none"`` is
``dim=None``, which both APIs map to -1.

PyTorch has no eps (a zero slice gives NaN, as the spec's ``eps = 0``). A case with ``eps > 0``
is composed from torch primitives as Flax writes it, ``x * rsqrt(sum(x^2) + eps) * g``, in
float32 for 16-bit inputs, and labelled ``composed`` (:func:`case_support`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from .._hyper import real as _float
from ..protocol import Array, Support
from .adapter import TorchAdapter
from .adapter import _Call as _AdapterCall

API = ("torch.nn.utils.parametrizations.weight_norm (torch._weight_norm) with dim = kept_axis "
       "% ndim or None for 'none'; eps = 0 only: a case with eps > 0 is composed (PyTorch has no "
       "eps); the deprecated hook torch.nn.utils.weight_norm runs against the same vectors as "
       "the adapter torch-weight-norm-hook; see adapters/torch_adapter/weight_norm.py")
"""What the report shows for this method."""
HOOK_API = ("torch.nn.utils.weight_norm, the deprecated forward pre-hook (torch._weight_norm) "
            "with dim = kept_axis % ndim or None for 'none'; eps = 0 only: a case with eps > 0 "
            "is composed; see adapters/torch_adapter/weight_norm.py")
COMPOSED = ("composed (PyTorch's weight_norm has no eps): x * rsqrt(sum(x^2) + eps) * g over "
            "the normalized axes, as flax.linen.WeightNorm writes it; float32 for 16-bit inputs; "
            "see adapters/torch_adapter/weight_norm.py")


def _dim(kept_axis: object, ndim: int) -> int | None:
    if isinstance(kept_axis, str):
        if kept_axis != "none":
            raise ValueError(f"argument 'kept_axis': got {kept_axis!r}, expected an integer "
                             "axis or 'none'")
        return None
    if isinstance(kept_axis, bool) or not isinstance(kept_axis, int) or not (
            -ndim <= kept_axis < ndim):
        raise ValueError(f"argument 'kept_axis': got {kept_axis!r}, expected an axis in "
                         f"[{-ndim}, {ndim - 1}]")
    # never -1: PyTorch reads it as the whole tensor
    return kept_axis % ndim


class _Weight(nn.Module):  # type: ignore[misc, unused-ignore]
    """A module holding only the weight; its forward returns the (reparametrized) weight."""

    def __init__(self, like: Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty_like(like))

    def forward(self) -> Tensor:
        out: Tensor = self.weight
        return out


_MODULES: dict[tuple[Any, ...], nn.Module] = {}
"""Wrapped modules by (API, shape, dtype, device, dim). A parametrization cannot be registered
inside a torch.func transform (it calls requires_grad_), so the modules are built before the
derivative calls (:func:`prepare`, from the adapter's per-case support) and reused: they hold
no values of their own, functional_call supplies g and v."""


def _module(api: str, x: Tensor, dim: int | None) -> nn.Module:
    key = (api, tuple(x.shape), x.dtype, x.device, dim)
    module = _MODULES.get(key)
    if module is None:
        base = _Weight(torch.empty(x.shape, dtype=x.dtype, device=x.device))
        if api == "parametrization":
            # dim=None is documented (the whole tensor); the stubs say int
            module = nn.utils.parametrizations.weight_norm(base, "weight",
                                                           dim=dim)  # type: ignore[arg-type, unused-ignore]
        else:
            with warnings.catch_warnings():
                # the API under test is the deprecated one on purpose
                warnings.simplefilter("ignore", FutureWarning)
                module = nn.utils.weight_norm(base, "weight", dim=dim)  # type: ignore[arg-type, unused-ignore]
        _MODULES[key] = module
    return module


def prepare(shape: tuple[int, ...], hyper: Mapping[str, Any], dtype: torch.dtype,
            device: torch.device) -> None:
    """Build both APIs' modules for a case, outside any torch.func transform."""
    if float(hyper.get("eps", 0.0)) != 0.0:
        return
    like = torch.empty(shape, dtype=dtype, device=device)
    dim = _dim(hyper["kept_axis"], len(shape))
    for api in ("parametrization", "hook"):
        _module(api, like, dim)


def _parametrization(x: Tensor, g: Tensor, dim: int | None) -> Tensor:
    module = _module("parametrization", x, dim)
    return functional_call(module, {"parametrizations.weight.original0": g,  # type: ignore[no-any-return, unused-ignore]
                                    "parametrizations.weight.original1": x}, ())


def _hook(x: Tensor, g: Tensor, dim: int | None) -> Tensor:
    module = _module("hook", x, dim)
    return functional_call(module, {"weight_g": g, "weight_v": x}, ())  # type: ignore[no-any-return, unused-ignore]


def _composed(x: Tensor, g: Tensor, kept_axis: object, eps: float) -> Tensor:
    dim = _dim(kept_axis, x.dim())
    axes = [i for i in range(x.dim()) if i != dim]
    out_dtype = x.dtype
    if x.dtype in (torch.float16, torch.bfloat16):
        # the spec's precision contract: 16-bit inputs computed in float32, w rounded once
        x, g = x.float(), g.float()
    w = x * torch.rsqrt((x * x).sum(dim=axes, keepdim=True) + eps) * g
    return w.to(out_dtype)


def _run(native: Any, t: Mapping[str, Tensor | None], hyper: Mapping[str, Any]) -> Tensor:
    x, g = t.get("x"), t.get("g")
    if x is None or g is None:
        raise ValueError("argument 'inputs': weight_norm needs 'x' (the direction) and 'g'")
    eps = _float(hyper, "eps")
    if eps != 0.0:
        return _composed(x, g, hyper["kept_axis"], eps)
    out: Tensor = native(x, g, _dim(hyper["kept_axis"], x.dim()))
    return out


def weight_norm(t: Mapping[str, Tensor | None], hyper: Mapping[str, Any],
                want_stats: bool) -> tuple[Tensor, dict[str, Tensor]]:
    """``(w, {})`` through the parametrization; PyTorch exposes no norm."""
    return _run(_parametrization, t, hyper), {}


def weight_norm_hook(t: Mapping[str, Tensor | None], hyper: Mapping[str, Any],
                     want_stats: bool) -> tuple[Tensor, dict[str, Tensor]]:
    """``(w, {})`` through the deprecated hook."""
    return _run(_hook, t, hyper), {}


def case_support(base: Support, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
                 dtype: str, device: str) -> Support:
    """A case with ``eps > 0`` is composed; ``eps = 0`` is the native API. Builds the case's
    modules (:func:`prepare`): the runner asks this before any derivative call of the case."""
    if not base.supported:
        return base
    x = inputs.get("x")
    if x is not None:
        prepare(tuple(x.shape), hyper, getattr(torch, dtype), torch.device(device))
    if float(hyper.get("eps", 0.0)) != 0.0:
        return Support(True, "composed", COMPOSED)
    return base


class HookAdapter(TorchAdapter):
    """The torch adapter with weight_norm through the deprecated hook (and only weight_norm)."""

    name = "torch-weight-norm-hook"

    def support(self, method: str, dtype: str, device: str) -> Support:
        if method != "weight_norm":
            return Support(False, reason="this variant runs weight_norm only (the deprecated "
                                         "hook torch.nn.utils.weight_norm)")
        base = super().support(method, dtype, device)
        return replace(base, reason=HOOK_API) if base.supported else base

    def _prepare(self, method: str, inputs: Mapping[str, Array | None],
                 hyper: Mapping[str, Any], dtype: str, device: str) -> _AdapterCall:
        call = super()._prepare(method, inputs, hyper, dtype, device)
        return replace(call, translation=replace(call.translation, api=HOOK_API,
                                                 run=weight_norm_hook))


HOOK_ADAPTER = HookAdapter()
