"""Synchronized batch normalization: batch norm whose statistics span every worker's shard.

The batch axis 0 of ``x`` is split into ``W = len(shard_sizes)`` consecutive shards, one per
worker: shard ``i`` is rows ``[s_i, s_i + shard_sizes[i])`` with ``s_i = sum(shard_sizes[:i])``
(an entry may be 0: a worker with an empty shard). For a channel ``c``, worker ``i`` holds
``n_i = shard_sizes[i] * (x.size / (N * C))`` values and their moments::

    mean_i = (1/n_i) sum_(shard i) x          M2_i = sum_(shard i) (x - mean_i)^2

The workers' moments are merged weighted by count (:func:`merge_moments`; Chan, Golub and
LeVeque's parallel update folded over the workers in order, workers with ``n_i = 0`` skipped)::

    n = n_A + n_B,   delta = mean_B - mean_A
    mean = mean_A + delta * n_B / n
    M2   = M2_A + M2_B + delta^2 * n_A * n_B / n

which equals, in exact arithmetic, the closed form ``n = sum n_i``, ``mean = sum n_i mean_i / n``,
``M2 = sum (M2_i + n_i (mean_i - mean)^2)``. So the global statistics are those of the
concatenation of the shards, which is ``x`` itself::

    mean = (1/n) sum x[..., c, ...]          var = M2 / n          (biased)
    rstd = 1 / sqrt(var + eps),   y = (x - mean) * rstd * weight + bias

Every worker normalizes its shard with these global statistics and updates identical running
statistics, with the **global** count ``n`` in the unbiased correction::

    running_mean' = (1 - f) * running_mean + f * mean
    running_var'  = (1 - f) * running_var  + f * v,   v = var * n / (n - 1)  ("unbiased")

The invariant: W shards give the same output, gradients and running statistics as
:mod:`.batch_norm` on their concatenation, whatever the shard sizes; this module computes
through :mod:`.batch_norm` on ``x`` (its correctly rounded sums are the most accurate
evaluation of the merged statistics), and the tests prove :func:`merge_moments` equal to it.
``weight`` and ``bias`` are replicated on every worker; their gradients are the sums of the
workers' gradients (an all-reduce of sums, not a mean). ``channel_axis`` cannot be 0, the
sharded batch axis. Evaluation uses the running statistics and needs no communication.

>>> import numpy as np
>>> x = np.array([[1.0, 10.0], [3.0, 30.0], [5.0, 50.0]])
>>> out = forward(x, shard_sizes=[1, 0, 2], training=True, eps=0.0,
...               running_mean=np.zeros(2), running_var=np.ones(2), batch_stat_weight=0.5,
...               running_var_estimator="unbiased")
>>> out["mean"].tolist(), out["var"].tolist(), out["running_var"].tolist()
([3.0, 30.0], [2.6666666666666665, 266.6666666666667], [2.5, 200.5])
>>> merge_moments([1, 0, 2], np.array([[1.0], [np.nan], [4.0]]), np.array([[0.0], [0.0], [2.0]]))
(3, array([3.]), array([8.]))
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from . import batch_norm
from ._checks import FloatArray, _to_array, as_float64, check_axis, check_ndim
from ._layout import Layout
from ._standardize import moments

PRIMALS = batch_norm.PRIMALS
"""Differentiable inputs, in call order; ``weight`` and ``bias`` may be None."""
STATS = batch_norm.STATS
"""The global statistics and updated running state, as :data:`.batch_norm.STATS`."""
STATE = ("running_mean", "running_var")
"""Float state inputs, returned updated by :func:`forward` in training."""
CONSTANTS: dict[str, str] = {"shard_sizes": "int64"}
"""Non-differentiable integer inputs: the size of each worker's shard of the batch axis."""
NCHW_EXAMPLE: dict[str, int] = {"channel_axis": 1}
"""Hyperparameters of the canonical ``(N, C, H, W)`` example (the figure of the reduced set)."""

IntArray = npt.NDArray[np.int64]


def input_shapes(shape: tuple[int, ...], hyper: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Shapes of the inputs besides ``x``: parameters and running statistics are ``(C,)``.

    ``shard_sizes`` is left out: a catalog gives it as a literal list.

    >>> input_shapes((6, 3, 4), {"channel_axis": -1})["weight"]
    (4,)
    """
    c = int(hyper.get("channel_axis", 1)) % len(shape)
    channels = (shape[c],)
    return dict.fromkeys(("weight", "bias", "running_mean", "running_var"), channels)


def check_shard_sizes(shard_sizes: object, batch: int) -> IntArray:
    """``shard_sizes`` as a 1-d int64 array of entries >= 0 that sum to ``batch``."""
    arr = _to_array("shard_sizes", shard_sizes)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"argument 'shard_sizes': got shape {arr.shape}, expected a 1-d "
                         "array with one entry per worker (at least one worker)")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"argument 'shard_sizes': got dtype {arr.dtype}, expected integers "
                        "(one shard size per worker); floats and bools are rejected rather "
                        "than silently converted")
    sizes = arr.astype(np.int64)
    if bool(np.any(sizes < 0)):
        raise ValueError(f"argument 'shard_sizes': got {sizes.tolist()}, expected entries >= 0")
    total = int(sizes.sum())
    if total != batch:
        raise ValueError(f"argument 'shard_sizes': got {sizes.tolist()} (sum {total}), expected "
                         f"sizes that sum to the batch size x.shape[0] = {batch}")
    return sizes


def _check_call(x: object, shard_sizes: object, channel_axis: object) -> FloatArray:
    """Validate what batch_norm does not know about: the shards and the sharded batch axis."""
    xa = as_float64("x", x)
    check_ndim("x", xa, 2)
    if check_axis("channel_axis", channel_axis, xa.ndim) == 0:
        raise ValueError(f"argument 'channel_axis': got {channel_axis}, expected an axis other "
                         "than 0: axis 0 is the batch axis that is sharded across workers")
    check_shard_sizes(shard_sizes, xa.shape[0])
    return xa


def shards(x: object, *, shard_sizes: object) -> list[FloatArray]:
    """The workers' shards of ``x`` along axis 0, in worker order (empty ones included)."""
    xa = as_float64("x", x)
    check_ndim("x", xa, 1)
    sizes = check_shard_sizes(shard_sizes, xa.shape[0])
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [xa[int(a):int(b)] for a, b in itertools.pairwise(bounds.tolist())]


def shard_moments(x: object, *, shard_sizes: object, channel_axis: int = 1
                  ) -> tuple[IntArray, FloatArray, FloatArray]:
    """Each worker's ``(n_i, mean_i, M2_i)`` per channel: shapes ``(W,)``, ``(W, C)``, ``(W, C)``.

    A worker with an empty shard reports ``n_i = 0``, ``mean_i = 0`` and ``M2_i = 0`` (its
    mean is undefined; :func:`merge_moments` ignores it).
    """
    xa = _check_call(x, shard_sizes, channel_axis)
    c = check_axis("channel_axis", channel_axis, xa.ndim)
    channels = xa.shape[c]
    parts = shards(xa, shard_sizes=shard_sizes)
    counts = np.array([p.size // channels if channels else 0 for p in parts], dtype=np.int64)
    means = np.zeros((len(parts), channels))
    m2s = np.zeros((len(parts), channels))
    for i, part in enumerate(parts):
        if counts[i] == 0:
            continue
        rows = np.moveaxis(part, c, 0).reshape(channels, -1)
        m = moments(rows, 0.0, center=True)
        means[i], m2s[i] = m.mean, m.var * counts[i]
    return counts, means, m2s


def merge_moments(counts: object, means: object, m2s: object) -> tuple[int, FloatArray, FloatArray]:
    """Merge per-worker ``(n_i, mean_i, M2_i)`` into the moments of the concatenation.

    ``counts`` has shape ``(W,)`` (integers >= 0, at least one positive); ``means`` and ``m2s``
    have shape ``(W, *S)``. Returns ``(n, mean, M2)`` with ``mean`` and ``M2`` of shape ``S``:
    Chan et al.'s pairwise update folded over the workers in order, skipping workers with
    ``n_i = 0`` (their mean and M2 are never read, so they may be NaN). Where every value read
    is finite the merge is exact (rational arithmetic) and rounded once, so the result does not
    depend on the order of the workers. Otherwise NaN and Inf propagate through the closed form
    ``mean = sum n_i mean_i / n``, ``M2 = sum(M2_i + n_i (mean_i - mean)^2)`` in IEEE
    arithmetic, as through the sums over the concatenation: an infinite value gives an
    infinite mean and a NaN M2.
    """
    n = _to_array("counts", counts)
    if n.dtype.kind not in "iu" or n.ndim != 1:
        raise TypeError(f"argument 'counts': got dtype {n.dtype} and shape {n.shape}, expected "
                        "a 1-d integer array (one count per worker)")
    if bool(np.any(n < 0)) or not bool(np.any(n > 0)):
        raise ValueError(f"argument 'counts': got {n.tolist()}, expected counts >= 0 with at "
                         "least one worker holding values")
    mu, m2 = as_float64("means", means), as_float64("m2s", m2s)
    for name, arr in (("means", mu), ("m2s", m2)):
        if arr.shape[:1] != n.shape:
            raise ValueError(f"argument {name!r}: got shape {arr.shape}, expected a leading "
                             f"axis of {n.size} workers like 'counts'")
    if mu.shape != m2.shape:
        raise ValueError(f"argument 'm2s': got shape {m2.shape}, expected the shape of 'means' "
                         f"{mu.shape}")
    live = [i for i in range(n.size) if n[i] > 0]
    total = int(n[live].sum())
    flat_mu = mu.reshape(n.size, -1)
    flat_m2 = m2.reshape(n.size, -1)
    out_mean = np.empty(flat_mu.shape[1])
    out_m2 = np.empty(flat_mu.shape[1])
    for j in range(flat_mu.shape[1]):
        out_mean[j], out_m2[j] = _merge_column([int(n[i]) for i in live],
                                               [float(flat_mu[i, j]) for i in live],
                                               [float(flat_m2[i, j]) for i in live])
    return total, out_mean.reshape(mu.shape[1:]), out_m2.reshape(mu.shape[1:])


def _merge_column(counts: list[int], means: list[float], m2s: list[float]) -> tuple[float, float]:
    """One channel's merge: exact where finite, IEEE formulas where not (see merge_moments)."""
    if all(math.isfinite(v) for v in (*means, *m2s)):
        k, mean, m2 = 0, Fraction(0), Fraction(0)
        for nb, mb, m2b in zip(counts, means, m2s, strict=True):
            delta = Fraction(mb) - mean
            k, mean, m2 = (k + nb, mean + delta * Fraction(nb, k + nb),
                           m2 + Fraction(m2b) + delta * delta * Fraction(k * nb, k + nb))
        return _round(mean), _round(m2)
    # Non-finite moments: the closed form, so that an infinite value gives an infinite mean
    # (as the sum over the concatenation does) where the pairwise fold would give inf - inf.
    with np.errstate(all="ignore"):
        total = sum(counts)
        mean_f = float(np.sum(np.multiply(counts, means))) / total
        m2_f = float(np.sum(np.add(m2s, np.multiply(counts, np.square(np.subtract(means,
                                                                                  mean_f))))))
        return mean_f, m2_f


def _round(value: Fraction) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def layout(shape: tuple[int, ...], *, channel_axis: int = 1) -> Layout:
    """The reduction layout of the global statistics: batch_norm's on the whole batch."""
    if check_axis("channel_axis", channel_axis, len(shape)) == 0:
        raise ValueError(f"argument 'channel_axis': got {channel_axis}, expected an axis other "
                         "than the sharded batch axis 0")
    return batch_norm.layout(shape, channel_axis=channel_axis)


def forward(x: object, weight: object = None, bias: object = None, *, shard_sizes: object,
            training: bool, eps: float, channel_axis: int = 1, running_mean: object = None,
            running_var: object = None, num_batches_tracked: int = 0,
            batch_stat_weight: float | str | None = None,
            running_var_estimator: str | None = None) -> dict[str, FloatArray]:
    """``y`` (all shards, in order) and the global statistics; see the module docstring.

    The keys are :func:`.batch_norm.forward`'s. ``n`` in the unbiased correction is the
    global count, which is batch_norm's count on the concatenation.
    """
    xa = _check_call(x, shard_sizes, channel_axis)
    return batch_norm.forward(xa, weight, bias, training=training, eps=eps,
                              channel_axis=channel_axis, running_mean=running_mean,
                              running_var=running_var, num_batches_tracked=num_batches_tracked,
                              batch_stat_weight=batch_stat_weight,
                              running_var_estimator=running_var_estimator)


def vjp(x: object, weight: object = None, bias: object = None, *, cotangent: object,
        shard_sizes: object, training: bool, eps: float, channel_axis: int = 1,
        running_mean: object = None, running_var: object = None, num_batches_tracked: int = 0,
        batch_stat_weight: float | str | None = None,
        running_var_estimator: str | None = None) -> dict[str, FloatArray]:
    """Gradients of ``sum(cotangent * y)``: ``x`` in shard order, parameters summed over workers."""
    xa = _check_call(x, shard_sizes, channel_axis)
    return batch_norm.vjp(xa, weight, bias, cotangent=cotangent, training=training, eps=eps,
                          channel_axis=channel_axis, running_mean=running_mean,
                          running_var=running_var, num_batches_tracked=num_batches_tracked,
                          batch_stat_weight=batch_stat_weight,
                          running_var_estimator=running_var_estimator)


def jvp(x: object, weight: object = None, bias: object = None, *,
        tangent: Mapping[str, object], shard_sizes: object, training: bool, eps: float,
        channel_axis: int = 1, running_mean: object = None, running_var: object = None,
        num_batches_tracked: int = 0, batch_stat_weight: float | str | None = None,
        running_var_estimator: str | None = None) -> FloatArray:
    """Directional derivative of ``y`` (batch_norm's on the concatenation)."""
    xa = _check_call(x, shard_sizes, channel_axis)
    return batch_norm.jvp(xa, weight, bias, tangent=tangent, training=training, eps=eps,
                          channel_axis=channel_axis, running_mean=running_mean,
                          running_var=running_var, num_batches_tracked=num_batches_tracked,
                          batch_stat_weight=batch_stat_weight,
                          running_var_estimator=running_var_estimator)


def second_order(x: object, weight: object = None, bias: object = None, *, cotangent: object,
                 tangent: Mapping[str, object], shard_sizes: object, training: bool, eps: float,
                 channel_axis: int = 1, running_mean: object = None, running_var: object = None,
                 num_batches_tracked: int = 0, batch_stat_weight: float | str | None = None,
                 running_var_estimator: str | None = None) -> dict[str, FloatArray]:
    """Derivative of :func:`vjp` (``cotangent`` fixed) along ``tangent``."""
    xa = _check_call(x, shard_sizes, channel_axis)
    return batch_norm.second_order(xa, weight, bias, cotangent=cotangent, tangent=tangent,
                                   training=training, eps=eps, channel_axis=channel_axis,
                                   running_mean=running_mean, running_var=running_var,
                                   num_batches_tracked=num_batches_tracked,
                                   batch_stat_weight=batch_stat_weight,
                                   running_var_estimator=running_var_estimator)
