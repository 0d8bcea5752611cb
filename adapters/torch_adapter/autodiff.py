"""Derivatives of ``y``, generic over methods: VJP, JVP and second order with PyTorch's autodiff.

* VJP: reverse mode, ``torch.autograd.grad(y, primals, cotangent)``.
* JVP: forward mode, ``torch.func.jvp`` (every method's operator has a forward-AD formula in
  torch 2.13, so no double-backward emulation is needed).
* Second order: forward over reverse, ``torch.func.jvp`` of ``torch.func.vjp`` with the
  cotangent fixed: literally the derivative of the VJP along ``tangent``, with no appeal to the
  symmetry of the Hessian (which needs y twice continuously differentiable). Double backward
  (``torch.autograd.grad`` with ``create_graph=True``) was the alternative; in torch 2.13 it
  raises for batch/instance/layer norm given a bias but no weight (the bias gradient's
  double-backward node needs the weight), while forward over reverse fails only where the first
  order already does. The tests cross-check the two wherever both run.

Only ``y`` is differentiated: state inputs (running statistics) are constants, cloned into each
evaluation so an in-place running-statistics update never leaks between calls.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from .methods import Translation

Fn = Callable[..., Tensor]


def bind(translation: Translation, names: Sequence[str], constants: Mapping[str, Tensor | None],
         hyper: Mapping[str, Any]) -> Fn:
    """``y`` as a function of the live primals ``names`` (positional), everything else fixed."""

    def fn(*primals: Tensor) -> Tensor:
        tensors: dict[str, Tensor | None] = dict.fromkeys(translation.primals)
        tensors.update(zip(names, primals, strict=True))
        tensors.update({k: None if v is None else v.clone() for k, v in constants.items()})
        return translation.run(tensors, hyper, False)[0]

    return fn


def vjp(fn: Fn, primals: Sequence[Tensor], cotangent: Tensor) -> list[Tensor]:
    """Gradient of ``sum(cotangent * fn(*primals))`` for each primal."""
    with torch.enable_grad():
        leaves = [p.detach().requires_grad_(True) for p in primals]
        y = fn(*leaves)
        grads = torch.autograd.grad(y, leaves, grad_outputs=cotangent, allow_unused=True,
                                    materialize_grads=True)
    return [g.detach() for g in grads]


@contextmanager
def _quiet_jvp_setup() -> Iterator[None]:
    # The first forward-AD call imports torch._decomp.decompositions_for_jvp, which calls the
    # deprecated torch.jit.script internally and warns (torch 2.13). Nothing the caller did is
    # deprecated, so only that one message is silenced, and only around the call.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is ",
                                category=DeprecationWarning)
        yield


def jvp(fn: Fn, primals: Sequence[Tensor], tangents: Sequence[Tensor]) -> Tensor:
    """Directional derivative of ``fn`` at ``primals`` along ``tangents`` (forward mode)."""
    with _quiet_jvp_setup():
        out = torch.func.jvp(fn, tuple(p.detach() for p in primals),
                             tuple(t.detach() for t in tangents))[1]
    assert isinstance(out, Tensor)
    return out.detach()


def second_order(fn: Fn, primals: Sequence[Tensor], cotangent: Tensor,
                 tangents: Sequence[Tensor]) -> list[Tensor]:
    """Derivative of the VJP (``cotangent`` fixed) along ``tangents``: forward over reverse."""
    cot = cotangent.detach()

    def pulled(*p: Tensor) -> tuple[Tensor, ...]:
        pull = torch.func.vjp(fn, *p)[1]
        grads: tuple[Tensor, ...] = pull(cot)
        return grads

    with _quiet_jvp_setup():
        out = torch.func.jvp(pulled, tuple(p.detach() for p in primals),
                             tuple(t.detach() for t in tangents))[1]
    return [o.detach() for o in out]


def jvp_reverse(fn: Fn, primals: Sequence[Tensor], tangents: Sequence[Tensor]) -> Tensor:
    """The JVP in reverse mode, for a translation without forward AD: ``J t`` is the gradient,
    with respect to a dummy cotangent ``w``, of ``<J^T w, t>`` (``J^T w`` is linear in ``w``)."""
    with torch.enable_grad():
        leaves = [p.detach().requires_grad_(True) for p in primals]
        y = fn(*leaves)
        dummy = torch.zeros_like(y, requires_grad=True)
        grads = torch.autograd.grad(y, leaves, grad_outputs=dummy, create_graph=True,
                                    allow_unused=True, materialize_grads=True)
        inner = sum((g * t.detach()).sum() for g, t in zip(grads, tangents, strict=True))
        assert isinstance(inner, Tensor)
        (out,) = torch.autograd.grad(inner, dummy, allow_unused=True, materialize_grads=True)
    return out.detach()


def second_order_reverse(fn: Fn, primals: Sequence[Tensor], cotangent: Tensor,
                         tangents: Sequence[Tensor]) -> list[Tensor]:
    """The second order by double backward: the gradient of ``<vjp(primals), t>``, i.e.
    ``H t`` with ``H`` the (symmetric) Hessian of ``sum(cotangent * y)``."""
    with torch.enable_grad():
        leaves = [p.detach().requires_grad_(True) for p in primals]
        y = fn(*leaves)
        grads = torch.autograd.grad(y, leaves, grad_outputs=cotangent.detach(),
                                    create_graph=True, allow_unused=True, materialize_grads=True)
        inner = sum((g * t.detach()).sum() for g, t in zip(grads, tangents, strict=True))
        assert isinstance(inner, Tensor)
        out = torch.autograd.grad(inner, leaves, allow_unused=True, materialize_grads=True)
    return [o.detach() for o in out]
