"""GradNorm, multitask loss balancing: one task-weight step (Chen et al., ICML 2018).

Not a normalization of activations: GradNorm learns the weights ``w_i`` of ``T`` task losses
(total loss ``sum_i w_i L_i``) so that the norms of the weighted task gradients on the shared
weights ``W`` track a common target. One step, from

- ``x`` of shape ``(2, T)``: ``x[0, i] = g_i = ||grad_W L_i(t)||``, the norm of the gradient of
  the UNWEIGHTED task loss, and ``x[1, i] = L_i(t) >= 0``, the current task loss (both change
  every step, hence one input);
- ``initial_losses`` ``L_i(0) > 0`` (fixed over training), the state ``weights`` ``w_i > 0``,
  the asymmetry ``alpha >= 0`` and the learning rate ``lr > 0`` of the weights::

    G_i = w_i g_i                      (= ||grad_W (w_i L_i)|| since w_i > 0)
    Gbar = mean_i G_i
    Ltilde_i = L_i(t) / L_i(0),   r_i = Ltilde_i / mean_j Ltilde_j
    c_i = Gbar * r_i**alpha            (the target, a constant for the update: the paper's rule)
    L_grad = sum_i |G_i - c_i|
    d_i = dL_grad/dw_i = sign(G_i - c_i) * g_i      (sign(0) = 0: a task at its target)
    v_i = w_i - lr * d_i               (plain gradient descent, the normative optimizer)
    w_i' = T * v_i / sum_j v_j         (renormalized: sum_i w_i' = T)

``forward`` returns ``y = w'`` (also as the state ``weights``) with the statistics ``L_grad``,
``G``, ``c`` and ``d``. In evaluation (``training=False``) nothing is updated: ``y = w``.

Derivatives are those of ``y`` with respect to ``x`` and ``initial_losses``, defined almost
everywhere (off the kinks ``G_i = c_i``, where ``sign`` is locally constant). The losses and the
initial losses enter only through the signs, so their derivative is 0; along the gradient norms,
with ``S = sum_j v_j`` and ``dv = -lr * s * t`` (``s_i = sign(G_i - c_i)``, ``t = t_x[0]``)::

    J t = (T / S) (dv - y * sum(dv) / T)
    J^T c_y = -lr * s * a,   a = (T / S) (c_y - (c_y . y) / T)
    (J^T c_y)' = -lr * s * (-(sum(dv) / S) a - (c_y . J t) / S)

Evaluation: all derivatives 0.

>>> import numpy as np
>>> x = np.array([[1.0, 2.0, 3.0], [0.5, 1.0, 1.5]])   # g_i, then L_i(t)
>>> out = forward(x, np.ones(3), training=True, weights=np.ones(3), alpha=1.0, lr=0.1)
>>> out["targets"].tolist(), out["weight_grad"].tolist(), float(out["y"].sum())
([1.0, 2.0, 3.0], [0.0, 0.0, 0.0], 3.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ._checks import (
    FloatArray,
    as_float64,
    check_real,
    check_shape,
    cotangent_like,
    directions,
    ieee,
)

PRIMALS = ("x", "initial_losses")
"""``x`` stacks the step's gradient norms and losses; ``initial_losses`` are ``L_i(0)``."""
STATS = ("weights", "grad_norm_loss", "weighted_norms", "targets", "weight_grad")
"""The updated weights (state), ``L_grad`` (0-d), ``G``, the targets ``c`` and ``dL_grad/dw``."""
STATE = ("weights",)
"""The task weights ``w``: taken by keyword, returned updated by a training step."""
NO_NCHW_EXAMPLE = ("GradNorm acts on one value per task (gradient norms, losses, weights), not on "
                   "an activation tensor: nothing is reduced over (N, C, H, W) axes")
"""Why the method has no layout figure."""


@dataclass(frozen=True)
class _Call:
    g: FloatArray
    losses: FloatArray
    initial: FloatArray
    w: FloatArray
    training: bool
    alpha: float
    lr: float


def _nonneg(name: str, arr: FloatArray, what: str, *, strict: bool = False) -> None:
    bad = ~np.isfinite(arr) | ((arr <= 0.0) if strict else (arr < 0.0))
    if np.any(bad):
        value = float(arr.reshape(-1)[int(np.argmax(bad.reshape(-1)))])
        relation = "> 0" if strict else ">= 0"
        raise ValueError(f"argument {name!r}: got {what} {value!r}, expected finite values "
                         f"{relation}")


def _setup(x: object, initial_losses: object, *, training: object, weights: object,
           alpha: object, lr: object) -> _Call:
    xa = as_float64("x", x)
    if xa.ndim != 2 or xa.shape[0] != 2 or xa.shape[1] < 1:
        raise ValueError(f"argument 'x': got shape {xa.shape}, expected (2, T) with T >= 1 "
                         "tasks: row 0 the gradient norms, row 1 the current losses")
    t = xa.shape[1]
    if initial_losses is None:
        raise ValueError("argument 'initial_losses': got None, expected the T initial task "
                         "losses L_i(0)")
    l0 = as_float64("initial_losses", initial_losses)
    check_shape("initial_losses", l0, (t,))
    if weights is None:
        raise ValueError("argument 'weights': got None, expected the T task weights")
    w = as_float64("weights", weights)
    check_shape("weights", w, (t,))
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"argument 'training': got {training!r}, expected True or False")
    _nonneg("x", xa[0], "a gradient norm")
    _nonneg("x", xa[1], "a loss")
    _nonneg("initial_losses", l0, "an initial loss", strict=True)
    _nonneg("weights", w, "a weight", strict=True)
    if not np.any(xa[1] > 0.0):
        raise ValueError("argument 'x': got every loss 0, expected at least one positive loss "
                         "(r_i divides by the mean loss ratio)")
    return _Call(g=xa[0].copy(), losses=xa[1].copy(), initial=l0, w=w,
                 training=bool(training),
                 alpha=check_real("alpha", alpha, minimum=0.0),
                 lr=check_real("lr", lr, minimum=0.0, exclusive=True))


def input_shapes(shape: tuple[int, ...], hyper: Mapping[str, object]
                 ) -> dict[str, tuple[int, ...]]:
    """One value per task: ``T = shape[1]``."""
    del hyper
    t = int(shape[1])
    return {"initial_losses": (t,), "weights": (t,)}


def output_shape(shape: tuple[int, ...], hyper: Mapping[str, object]) -> tuple[int, ...]:
    """``y`` (and so the cotangent) is one weight per task, ``(T,)``, not shaped like ``x``."""
    del hyper
    return (int(shape[1]),)


@dataclass(frozen=True)
class _Step:
    big_g: FloatArray
    target: FloatArray
    sign: FloatArray
    grad: FloatArray
    v: FloatArray
    total: float
    y: FloatArray
    loss: float


_WIDE = np.longdouble
"""The target and ``L_grad`` are computed in the platform's extended type (80-bit on x86-64
Linux) and rounded once: ``c_i`` takes several roundings that ``alpha`` amplifies, and ``L_grad``
subtracts it from ``G_i``. Where ``long double`` is ``double`` this is plain float64."""


def _step(call: _Call) -> _Step:
    t = call.g.size
    big_g = call.w * call.g
    wide_g = call.w.astype(_WIDE) * call.g.astype(_WIDE)
    ratio = call.losses.astype(_WIDE) / call.initial.astype(_WIDE)
    r = ratio * t / np.sum(ratio)
    # r**0 = 1 also at r = 0 (IEEE pow, as torch.pow and jnp.power)
    wide_c = (np.sum(wide_g) / t) * r ** _WIDE(call.alpha)
    diff = wide_g - wide_c
    sign = np.sign(diff).astype(np.float64)
    grad = sign * call.g
    v = call.w - call.lr * grad
    total = math.fsum(v.tolist())
    y = t * v / total
    return _Step(big_g=big_g, target=wide_c.astype(np.float64), sign=sign, grad=grad, v=v,
                 total=total, y=y, loss=float(np.sum(np.abs(diff))))


@ieee
def forward(x: object, initial_losses: object, *, training: bool, weights: object,
            alpha: float, lr: float) -> dict[str, FloatArray]:
    """``{"y", "weights", "grad_norm_loss", "weighted_norms", "targets", "weight_grad"}``;
    evaluation: ``y = weights`` and the statistics, no ``weights`` returned."""
    call = _setup(x, initial_losses, training=training, weights=weights, alpha=alpha, lr=lr)
    st = _step(call)
    stats = {"grad_norm_loss": np.asarray(st.loss),
             "weighted_norms": st.big_g, "targets": st.target, "weight_grad": st.grad}
    if not call.training:
        return {"y": call.w.copy(), **stats}
    return {"y": st.y, "weights": st.y.copy(), **stats}


def _zeros(call: _Call) -> dict[str, FloatArray]:
    return {"x": np.zeros((2, call.g.size)), "initial_losses": np.zeros(call.g.size)}


@ieee
def vjp(x: object, initial_losses: object, *, cotangent: object, training: bool,
        weights: object, alpha: float, lr: float) -> dict[str, FloatArray]:
    """``{"x", "initial_losses"}``: ``J^T c`` (see the module docstring)."""
    call = _setup(x, initial_losses, training=training, weights=weights, alpha=alpha, lr=lr)
    c = cotangent_like(cotangent, call.w.shape)
    out = _zeros(call)
    if call.training:
        st = _step(call)
        t = call.g.size
        a = (t / st.total) * (c - np.dot(c, st.y) / t)
        out["x"][0] = -call.lr * st.sign * a
    return out


def _tangent_norms(call: _Call, tangent: Mapping[str, object] | None) -> FloatArray:
    tx = directions("tangent", tangent, {"x": np.stack([call.g, call.losses]),
                                         "initial_losses": call.initial})["x"]
    assert tx is not None
    out: FloatArray = tx[0]
    return out


def _jvp(call: _Call, st: _Step, tg: FloatArray) -> tuple[FloatArray, FloatArray]:
    t = call.g.size
    dv = -call.lr * st.sign * tg
    return dv, (t / st.total) * (dv - st.y * np.sum(dv) / t)


@ieee
def jvp(x: object, initial_losses: object, *, tangent: Mapping[str, object], training: bool,
        weights: object, alpha: float, lr: float) -> FloatArray:
    """``J t`` (see the module docstring)."""
    call = _setup(x, initial_losses, training=training, weights=weights, alpha=alpha, lr=lr)
    tg = _tangent_norms(call, tangent)
    if not call.training:
        return np.zeros_like(call.w)
    return _jvp(call, _step(call), tg)[1]


@ieee
def second_order(x: object, initial_losses: object, *, cotangent: object,
                 tangent: Mapping[str, object], training: bool, weights: object,
                 alpha: float, lr: float) -> dict[str, FloatArray]:
    """Derivative of :func:`vjp` along ``tangent`` (``cotangent`` fixed)."""
    call = _setup(x, initial_losses, training=training, weights=weights, alpha=alpha, lr=lr)
    tg = _tangent_norms(call, tangent)
    c = cotangent_like(cotangent, call.w.shape)
    out = _zeros(call)
    if call.training:
        st = _step(call)
        t = call.g.size
        dv, dy = _jvp(call, st, tg)
        a = (t / st.total) * (c - np.dot(c, st.y) / t)
        da = -(np.sum(dv) / st.total) * a - np.dot(c, dy) / st.total
        out["x"][0] = -call.lr * st.sign * da
    return out
