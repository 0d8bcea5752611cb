"""Ghost batch normalization: batch norm on equal, contiguous slices of the batch.

Axis 0 is the batch axis (``N`` samples) and ``channel_axis`` (default 1; never 0) the channel
axis; every other axis is spatial. In training the batch is split into ``G = N / B`` ghost
batches of ``B = ghost_batch_size`` consecutive samples: ghost batch ``g`` holds samples
``[g*B, (g+1)*B)`` (axis 0 read as ``(G, B)``, ghost index outer). ``B`` must divide ``N``.
For each ghost batch ``g`` and channel ``c``, over its ``n = B * prod(spatial sizes)`` values::

    mean[g, c] = (1/n) sum x[gB:(g+1)B, c, ...]
    var[g, c]  = (1/n) sum (x[gB:(g+1)B, c, ...] - mean[g, c])^2          (biased)
    rstd[g, c] = 1 / sqrt(var[g, c] + eps)
    y[i, c, ...] = (x[i, c, ...] - mean[i // B, c]) * rstd[i // B, c] * weight[c] + bias[c]

so ``y[gB:(g+1)B]`` is :func:`~.batch_norm.forward` of that slice alone, with the shared
``weight`` and ``bias``, and so are its derivatives: no gradient crosses between ghost
batches. ``B = N`` (one ghost batch) is batch norm exactly.

When ``running_mean`` and ``running_var`` are given in training, they are updated **once per
call** (one training step), from the averages of the ghost batches' statistics::

    m[c] = (1/G) sum_g mean[g, c]          (equal sizes: the whole batch's mean)
    v[c] = (1/G) sum_g var[g, c]           (the mean within-ghost variance, not the
                                            variance of the whole batch)
    v'   = v * n / (n - 1)   if running_var_estimator == "unbiased"   else   v' = v
    running_mean' = (1 - f) * running_mean + f * m
    running_var'  = (1 - f) * running_var  + f * v'
    num_batches_tracked' = num_batches_tracked + 1

with ``n`` the ghost batch's count ``B * prod(spatial)`` (not the whole batch's) and ``f`` as in
batch norm: ``batch_stat_weight``, or ``1 / (num_batches_tracked + 1)`` for ``"cumulative"``.
This is Keras' ``virtual_batch_size`` update (tf-keras averages the ghost batches' means and
biased variances and assigns the moving averages once per step).

**Evaluation** (``training=False``) is :func:`~.batch_norm.forward` in evaluation: the running
statistics normalize every sample; the batch is not split, so its size need not be a multiple
of ``ghost_batch_size`` (which is still checked to be an integer >= 1).

>>> import numpy as np
>>> x = np.array([[1.0], [3.0], [10.0], [30.0]])       # N=4, C=1, ghost batches of 2
>>> out = forward(x, training=True, eps=0.0, ghost_batch_size=2, running_mean=np.zeros(1),
...               running_var=np.zeros(1), batch_stat_weight=1.0, running_var_estimator="biased")
>>> out["y"].ravel().tolist(), out["mean"].tolist(), out["var"].tolist()
([-1.0, 1.0, -1.0, 1.0], [[2.0], [20.0]], [[1.0], [100.0]])
>>> out["running_mean"].tolist(), out["running_var"].tolist()   # (2+20)/2 and (1+100)/2
([11.0], [50.5])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from . import batch_norm as _bn
from ._checks import (
    FloatArray,
    as_float64,
    check_axis,
    check_int,
    check_ndim,
    cotangent_like,
    directions,
)
from ._layout import Layout, row_mean
from ._standardize import AffineNorm

PRIMALS = ("x", "weight", "bias")
"""Differentiable inputs, in call order; ``weight`` and ``bias`` may be None."""
STATS = ("mean", "var", "rstd", "running_mean", "running_var", "num_batches_tracked")
"""Statistics :func:`forward` may return beside ``y``: the ghost batches' ``mean``, ``var``,
``rstd`` (training, shape ``(G, C)``, row ``g`` for ghost batch ``g``) and the updated running
state (training with running statistics, shape ``(C,)``; ``num_batches_tracked`` 0-d)."""
STATE = ("running_mean", "running_var")
"""Float state inputs, passed by keyword and returned updated under the same names."""
NCHW_EXAMPLE: dict[str, int] = {"ghost_batch_size": 2, "channel_axis": 1}
"""Hyperparameters of the canonical ``(N, C, H, W)`` example: the docs draw
``layout((N, C, H, W), **NCHW_EXAMPLE)`` as the figure of the reduced set."""


def input_shapes(shape: tuple[int, ...], hyper: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Shapes of every input but ``x``: all per channel, ``(C,)``."""
    channels = shape[check_axis("channel_axis", hyper.get("channel_axis", 1), len(shape))]
    return dict.fromkeys(("weight", "bias", "running_mean", "running_var"), (channels,))


@dataclass(frozen=True)
class GhostLayout(Layout):
    """A :class:`~._layout.Layout` of ``x`` whose batch axis is read as ``(ghosts, N/ghosts)``.

    ``perm`` orders the axes of that ghost view, shape ``(ghosts, N/ghosts, *x.shape[1:])``;
    ``param_axes`` are axes of ``x`` itself. Rows are ``(ghost, channel)`` pairs, ghost outer.
    """

    ghosts: int = 1

    @property
    def view(self) -> Layout:
        """The plain layout of the ghost view (the parameter axis shifted by the split)."""
        split = (self.ghosts, self.shape[0] // self.ghosts, *self.shape[1:])
        return Layout(shape=split, perm=self.perm, stat_shape=self.stat_shape, n=self.n,
                      param_axes=tuple(a + 1 for a in self.param_axes))

    def to_rows(self, a: FloatArray) -> FloatArray:
        view = self.view
        return view.to_rows(a.reshape(view.shape))

    def from_rows(self, a: FloatArray) -> FloatArray:
        return self.view.from_rows(a).reshape(self.shape)


@dataclass(frozen=True)
class _Call:
    """A validated call: batch norm's validation plus the ghost split (training only)."""

    bn: _bn._Call
    norm: AffineNorm | None
    """The per-ghost normalization; None in evaluation (batch norm's evaluation applies)."""


def _setup(x: object, weight: object, bias: object, *, training: object, eps: object,
           ghost_batch_size: object, channel_axis: object, running_mean: object,
           running_var: object, num_batches_tracked: object, batch_stat_weight: object,
           running_var_estimator: object) -> _Call:
    xa = as_float64("x", x)
    check_ndim("x", xa, 2)
    c = check_axis("channel_axis", channel_axis, xa.ndim)
    if c == 0:
        raise ValueError(
            f"argument 'channel_axis': got {channel_axis}, expected an axis other than the "
            f"batch axis 0 (in [1, {xa.ndim - 1}] or [{-xa.ndim + 1}, -1]): ghost batches "
            "split axis 0")
    size = check_int("ghost_batch_size", ghost_batch_size, minimum=1)
    call = _bn._setup(xa, weight, bias, training=training, eps=eps, channel_axis=c,
                      running_mean=running_mean, running_var=running_var,
                      num_batches_tracked=num_batches_tracked,
                      batch_stat_weight=batch_stat_weight,
                      running_var_estimator=running_var_estimator)
    if not call.training:
        return _Call(bn=call, norm=None)
    batch = xa.shape[0]
    if batch % size:
        raise ValueError(
            f"argument 'ghost_batch_size': got {size}, expected a divisor of the batch size "
            f"{batch} (x.shape[0]) in training")
    spatial = tuple(i for i in range(1, xa.ndim) if i != c)
    n = size * math.prod(xa.shape[i] for i in spatial)
    if call.factor is not None and call.unbiased and n == 1:
        raise ValueError(
            f"argument 'ghost_batch_size': got {size} for x of shape {xa.shape}, which leaves "
            "one value per channel in each ghost batch (n=1); expected n >= 2 for "
            "running_var_estimator='unbiased' (var * n / (n - 1) is undefined)")
    ghosts = batch // size
    # View axes: 0 ghost, 1 sample within the ghost, then x's axes 1.. shifted by one. Rows
    # ordered (ghost, channel) put ghost g's channel c in row g * C + c: stat_shape (G, C).
    layout = GhostLayout(shape=xa.shape, perm=(0, c + 1, 1, *(i + 1 for i in spatial)),
                         stat_shape=(ghosts, xa.shape[c]), n=n, param_axes=(c,), ghosts=ghosts)
    return _Call(bn=call, norm=AffineNorm(layout=layout, eps=call.norm.eps, center=True))


def _eval_kwargs(call: _Call) -> dict[str, Any]:
    """Batch norm's evaluation arguments for a validated evaluation call."""
    c = call.bn
    return {"training": False, "eps": c.norm.eps, "channel_axis": c.norm.layout.perm[0],
            "running_mean": c.running_mean, "running_var": c.running_var}


def layout(shape: tuple[int, ...], *, ghost_batch_size: int, channel_axis: int = 1) -> Layout:
    """The reduction layout of the training statistics (no computation).

    >>> from normspec.reference._layout import reduction_sets
    >>> reduction_sets(layout((4, 2), ghost_batch_size=2)).tolist()   # rows g * C + c
    [[0, 1], [0, 1], [2, 3], [2, 3]]
    """
    norm = _setup(np.zeros(shape), None, None, training=True, eps=0.0,
                  ghost_batch_size=ghost_batch_size, channel_axis=channel_axis,
                  running_mean=None, running_var=None, num_batches_tracked=0,
                  batch_stat_weight=None, running_var_estimator=None).norm
    assert norm is not None
    return norm.layout


def forward(x: object, weight: object = None, bias: object = None, *, training: bool,
            eps: float, ghost_batch_size: int, channel_axis: int = 1,
            running_mean: object = None, running_var: object = None,
            num_batches_tracked: int = 0, batch_stat_weight: float | str | None = None,
            running_var_estimator: str | None = None) -> dict[str, FloatArray]:
    """Return ``y`` and the statistics; see the module docstring for the definition.

    Training returns the ghost batches' ``mean``, ``var`` and ``rstd`` (shape ``(G, C)``), plus
    ``running_mean``, ``running_var`` and ``num_batches_tracked`` when running statistics are
    given. Evaluation returns ``y`` only.
    """
    call = _setup(x, weight, bias, training=training, eps=eps,
                  ghost_batch_size=ghost_batch_size, channel_axis=channel_axis,
                  running_mean=running_mean, running_var=running_var,
                  num_batches_tracked=num_batches_tracked, batch_stat_weight=batch_stat_weight,
                  running_var_estimator=running_var_estimator)
    c = call.bn
    if call.norm is None:
        return _bn.forward(c.x, c.weight, c.bias, **_eval_kwargs(call))
    out = call.norm.outputs(c.x, c.weight, c.bias)
    if c.factor is None:
        return out
    assert c.running_mean is not None
    assert c.running_var is not None
    n = call.norm.layout.n
    scale = Fraction(n, n - 1) if c.unbiased else Fraction(1)
    with np.errstate(all="ignore"):  # NaN and Inf propagate as IEEE says
        # (C, G) rows: the correctly rounded average over the ghost batches of each channel
        mean, var = row_mean(out["mean"].T), row_mean(out["var"].T)
    out["running_mean"] = _bn._blend(c.running_mean, mean, c.factor, Fraction(1))
    out["running_var"] = _bn._blend(c.running_var, var, c.factor, scale)
    out["num_batches_tracked"] = np.array(float(c.num_batches_tracked + 1))
    return out


def vjp(x: object, weight: object = None, bias: object = None, *, cotangent: object,
        training: bool, eps: float, ghost_batch_size: int, channel_axis: int = 1,
        running_mean: object = None, running_var: object = None, num_batches_tracked: int = 0,
        batch_stat_weight: float | str | None = None,
        running_var_estimator: str | None = None) -> dict[str, FloatArray]:
    """Gradients of ``sum(cotangent * y)`` for each primal that is not None.

    Training: batch norm's VJP within each ghost batch (the moment core's Jacobian per row);
    ``dweight`` and ``dbias`` sum over every ghost batch. Evaluation: batch norm's.
    """
    call = _setup(x, weight, bias, training=training, eps=eps,
                  ghost_batch_size=ghost_batch_size, channel_axis=channel_axis,
                  running_mean=running_mean, running_var=running_var,
                  num_batches_tracked=num_batches_tracked, batch_stat_weight=batch_stat_weight,
                  running_var_estimator=running_var_estimator)
    c = call.bn
    if call.norm is None:
        return _bn.vjp(c.x, c.weight, c.bias, cotangent=cotangent, **_eval_kwargs(call))
    return call.norm.vjp(c.x, c.weight, c.bias, cotangent_like(cotangent, c.x.shape))


def jvp(x: object, weight: object = None, bias: object = None, *,
        tangent: Mapping[str, object], training: bool, eps: float, ghost_batch_size: int,
        channel_axis: int = 1, running_mean: object = None, running_var: object = None,
        num_batches_tracked: int = 0, batch_stat_weight: float | str | None = None,
        running_var_estimator: str | None = None) -> FloatArray:
    """Directional derivative of ``y``; missing tangent keys are zero."""
    call = _setup(x, weight, bias, training=training, eps=eps,
                  ghost_batch_size=ghost_batch_size, channel_axis=channel_axis,
                  running_mean=running_mean, running_var=running_var,
                  num_batches_tracked=num_batches_tracked, batch_stat_weight=batch_stat_weight,
                  running_var_estimator=running_var_estimator)
    c = call.bn
    if call.norm is None:
        return _bn.jvp(c.x, c.weight, c.bias, tangent=tangent, **_eval_kwargs(call))
    t = directions("tangent", tangent, {"x": c.x, "weight": c.weight, "bias": c.bias})
    return call.norm.jvp(c.x, c.weight, c.bias, t)


def second_order(x: object, weight: object = None, bias: object = None, *, cotangent: object,
                 tangent: Mapping[str, object], training: bool, eps: float,
                 ghost_batch_size: int, channel_axis: int = 1, running_mean: object = None,
                 running_var: object = None, num_batches_tracked: int = 0,
                 batch_stat_weight: float | str | None = None,
                 running_var_estimator: str | None = None) -> dict[str, FloatArray]:
    """Derivative of :func:`vjp` (``cotangent`` held fixed) along ``tangent``."""
    call = _setup(x, weight, bias, training=training, eps=eps,
                  ghost_batch_size=ghost_batch_size, channel_axis=channel_axis,
                  running_mean=running_mean, running_var=running_var,
                  num_batches_tracked=num_batches_tracked, batch_stat_weight=batch_stat_weight,
                  running_var_estimator=running_var_estimator)
    c = call.bn
    if call.norm is None:
        return _bn.second_order(c.x, c.weight, c.bias, cotangent=cotangent, tangent=tangent,
                                **_eval_kwargs(call))
    g = cotangent_like(cotangent, c.x.shape)
    t = directions("tangent", tangent, {"x": c.x, "weight": c.weight, "bias": c.bias})
    return call.norm.second_order(c.x, c.weight, c.bias, g, t)
