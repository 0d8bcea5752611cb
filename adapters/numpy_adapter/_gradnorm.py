"""GradNorm's task-weight step (Chen et al. 2018), in the compute dtype.

``x = [g; L]`` (unweighted gradient norms, current losses), ``L0`` the initial losses, ``w`` the
weights (state)::

    G = w g,  Gbar = mean G,  q = L / L0,  r = q / mean q,  c = Gbar r**alpha (a constant)
    s = sign(G - c) (0 at the target),  d = s g,  v = w - lr d,  y = T v / sum v

Derivatives, a.e. (``s`` locally constant; the losses enter only through ``s``):
``dv = -lr s t_g``, ``J t = (T / S)(dv - y sum(dv) / T)``, ``J^T c_y = -lr s a`` with
``a = (T / S)(c_y - (c_y . y) / T)``, and along ``t``: ``-lr s (-(sum dv / S) a - c_y . J t / S)``.
The steps implementations get wrong are the methods of :class:`GradNormSteps`; a mutant
replaces one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._numerics import Numerics, hyper_value
from ._precision import Num, Precision

_METHOD = "gradnorm"


class GradNormSteps:
    """The numerical steps of GradNorm that implementations get wrong."""

    def gradnorm_rates(self, ratio: Num) -> Num:
        """Relative inverse training rates: the loss ratios over their mean."""
        out: Num = ratio / np.mean(ratio)
        return out

    def gradnorm_weight_grad(self, sign: Num, g: Num, rpow: Num) -> Num:
        """``dL_grad/dw`` with the target held constant: ``sign(G - c) g``."""
        del rpow
        out: Num = sign * g
        return out

    def gradnorm_sign(self, diff: Num) -> Num:
        """``sign(G - c)``, 0 at the target (the subgradient torch.abs and jnp.abs take)."""
        out: Num = np.sign(diff)
        return out

    def gradnorm_renormalize(self, v: Num) -> Num:
        """``T v / sum v``: the weights sum to the number of tasks."""
        out: Num = v.dtype.type(v.size) * v / np.sum(v)
        return out


_DEFAULT = GradNormSteps()


def _steps(nx: Numerics) -> GradNormSteps:
    return nx if isinstance(nx, GradNormSteps) else _DEFAULT


@dataclass(frozen=True)
class _Step:
    g: Num
    w: Num
    big_g: Num
    target: Num
    sign: Num
    grad: Num
    v: Num
    y: Num
    total: Any
    training: bool
    lr: Any


def _step(nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
          hyper: Mapping[str, Any]) -> _Step:
    x, l0, w = inputs["x"], inputs.get("initial_losses"), inputs.get("weights")
    if x is None or l0 is None or w is None:
        raise ValueError("argument 'inputs': got no 'x', 'initial_losses' or 'weights', "
                         "expected all three (gradnorm)")
    if x.ndim != 2 or x.shape[0] != 2 or l0.shape != (x.shape[1],) or w.shape != l0.shape:
        raise ValueError(f"argument 'inputs': got x {x.shape}, initial_losses {l0.shape}, "
                         f"weights {w.shape}, expected (2, T), (T,), (T,)")
    w = w.astype(x.dtype)
    steps = _steps(nx)
    alpha = prec.scalar(float(hyper_value(hyper, "alpha", _METHOD)))
    lr = prec.scalar(float(hyper_value(hyper, "lr", _METHOD)))
    g, losses = x[0], x[1]
    big_g = w * g
    rates = steps.gradnorm_rates(losses / l0)
    rpow = rates ** alpha
    target = np.mean(big_g) * rpow
    sign = steps.gradnorm_sign(big_g - target)
    grad = steps.gradnorm_weight_grad(sign, g, rpow)
    v = w - lr * grad
    return _Step(g=g, w=w, big_g=big_g, target=target, sign=sign, grad=grad, v=v,
                 y=steps.gradnorm_renormalize(v), total=np.sum(v),
                 training=bool(hyper_value(hyper, "training", _METHOD)), lr=lr)


@dataclass(frozen=True)
class GradNorm:
    """The gradnorm method (see the module docstring)."""

    primals: tuple[str, ...] = ("x", "initial_losses")
    state: tuple[str, ...] = ("weights",)

    def output_shape(self, inputs: Mapping[str, Num | None], hyper: Mapping[str, Any]
                     ) -> tuple[int, ...]:
        """``y`` is one weight per task, ``(T,)``, not shaped like ``x`` ``(2, T)``."""
        del hyper
        x = inputs["x"]
        assert x is not None
        return (x.shape[-1],)

    def forward(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                hyper: Mapping[str, Any]) -> dict[str, Num]:
        st = _step(nx, prec, inputs, hyper)
        stats = {"grad_norm_loss": np.sum(np.abs(st.big_g - st.target)),
                 "weighted_norms": st.big_g, "targets": st.target, "weight_grad": st.grad}
        if not st.training:
            return {"y": st.w, **stats}
        return {"y": st.y, "weights": st.y, **stats}

    def _zeros(self, st: _Step) -> dict[str, Num]:
        return {"x": np.zeros((2, st.g.size), st.g.dtype), "initial_losses": np.zeros_like(st.g)}

    def _a(self, st: _Step, c: Num) -> Num:
        n = st.g.dtype.type(st.g.size)
        out: Num = (n / st.total) * (c - np.dot(c, st.y) / n)
        return out

    def _jvp(self, st: _Step, tg: Num) -> tuple[Num, Num]:
        n = st.g.dtype.type(st.g.size)
        dv = -st.lr * st.sign * tg
        return dv, (n / st.total) * (dv - st.y * np.sum(dv) / n)

    def vjp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], g: Num) -> dict[str, Num]:
        st = _step(nx, prec, inputs, hyper)
        out = self._zeros(st)
        if st.training:
            out["x"][0] = -st.lr * st.sign * self._a(st, g)
        return out

    def jvp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], t: Mapping[str, Num]) -> Num:
        st = _step(nx, prec, inputs, hyper)
        if not st.training:
            return np.zeros_like(st.w)
        tx = t.get("x")
        return self._jvp(st, np.zeros_like(st.g) if tx is None else tx[0])[1]

    def second_order(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                     hyper: Mapping[str, Any], g: Num, t: Mapping[str, Num]) -> dict[str, Num]:
        st = _step(nx, prec, inputs, hyper)
        out = self._zeros(st)
        if st.training:
            tx = t.get("x")
            dv, dy = self._jvp(st, np.zeros_like(st.g) if tx is None else tx[0])
            da = -(np.sum(dv) / st.total) * self._a(st, g) - np.dot(g, dy) / st.total
            out["x"][0] = -st.lr * st.sign * da
        return out


GRADNORM = GradNorm()
