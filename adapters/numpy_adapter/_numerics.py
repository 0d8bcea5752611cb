"""The numerical steps the methods are built from, each one overridable.

:class:`Numerics` gathers the steps where implementations differ or go wrong: how a statistic is
accumulated, how the variance is formed, where eps goes, which values form a group, how the
running variance is estimated. The adapter calls them and nothing else for those steps, so a
mutation test (tests/mutants/) can replace exactly one of them and nothing more.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from . import _geometry
from ._geometry import Geometry
from ._precision import Num, Precision, reduce_mean, reduce_sum


@dataclass(frozen=True)
class Normalized:
    """One moment normalization in view space: keep-dims statistics and ``z = (x-mean)*rstd``."""

    z: Num
    mean: Num
    var: Num
    rstd: Num


def jacobian(nrm: Normalized, v: Num, axes: tuple[int, ...], center: bool) -> Num:
    """``J v`` with ``J = rstd (I - [center] 11^T/n - z z^T/n)``, the Jacobian of ``z``.

    ``J`` is symmetric, so this is the JVP and the VJP of the normalization alike.
    """
    inner = v - nrm.z * reduce_mean(nrm.z * v, axes)
    if center:
        inner = inner - reduce_mean(v, axes)
    out: Num = nrm.rstd * inner
    return out


def hyper_value(hyper: Mapping[str, Any], key: str, method: str,
                default: object = Ellipsis) -> Any:
    """``hyper[key]``, or ``default``; a missing required key is a ValueError naming it."""
    if key in hyper:
        return hyper[key]
    if default is Ellipsis:
        raise ValueError(
            f"argument 'hyper': got keys {sorted(hyper)}, expected {key!r} (required by {method})"
        )
    return default


class Numerics:
    """The straightforward, careful choice for every step (see the module docstring)."""

    def stat_mean(self, a: Num, axes: tuple[int, ...], prec: Precision) -> Num:
        """Mean used for the statistics, accumulated in the compute dtype."""
        return reduce_mean(a, axes)

    def variance(self, x: Num, mean: Num, axes: tuple[int, ...], prec: Precision) -> Num:
        """Two-pass biased variance ``mean((x - mean)^2)`` (the mean square when mean is 0)."""
        d = x - mean
        return self.stat_mean(d * d, axes, prec)

    def rstd(self, var: Num, eps: Any) -> Num:
        """``1 / sqrt(var + eps)``: eps inside the square root."""
        out: Num = var.dtype.type(1) / np.sqrt(var + eps)
        return out

    def vjp_x(self, nrm: Normalized, gw: Num, axes: tuple[int, ...], center: bool) -> Num:
        """Input gradient of a moment normalization through its statistics: ``J (g*w)``."""
        return jacobian(nrm, gw, axes, center)

    def param_sum(self, a: Num, geom: Geometry) -> Num:
        """Reduce a view-shaped array to the parameter shape (weight and bias gradients)."""
        axes = tuple(i for i, size in enumerate(geom.param_view) if size == 1)
        return reduce_sum(a, axes).reshape(geom.param_shape)

    def rms_centered(self) -> bool:
        """RMS normalization subtracts no mean."""
        return False

    def layer_geometry(self, shape: tuple[int, ...], axis: object) -> Geometry:
        return _geometry.trailing(shape, axis)

    def instance_geometry(self, shape: tuple[int, ...], channel_axis: object) -> Geometry:
        return _geometry.per_instance(shape, channel_axis)

    def group_geometry(self, shape: tuple[int, ...], groups: object, channel_axis: object
                       ) -> Geometry:
        return _geometry.contiguous_groups(shape, groups, channel_axis)

    def batch_geometry(self, shape: tuple[int, ...], channel_axis: object) -> Geometry:
        return _geometry.per_channel(shape, channel_axis)

    def ghost_geometry(self, shape: tuple[int, ...], ghost_batch_size: object,
                       channel_axis: object) -> Geometry:
        return _geometry.ghost_batches(shape, ghost_batch_size, channel_axis)

    def ghost_running_update(self, running_mean: Num, running_var: Num, mean: Num, var: Num,
                             f: Any, prec: Precision) -> tuple[Num, Num]:
        """One update per step from the ghost batches' ``(G, C)`` means and (estimator-
        corrected) variances: ``(1-f) running + f * average over the ghost batches``."""
        keep = prec.scalar(1.0) - f
        return (keep * running_mean + f * reduce_mean(mean, (0,)).reshape(running_mean.shape),
                keep * running_var + f * reduce_mean(var, (0,)).reshape(running_var.shape))

    def batch_stat_factor(self, batch_stat_weight: float | str, num_batches_tracked: int
                          ) -> float:
        """The weight ``f`` of the *new* batch statistic: ``running' = (1-f) running + f stat``.

        ``"cumulative"`` gives ``1 / (num_batches_tracked + 1)``, an equal-weight average.
        """
        if batch_stat_weight == "cumulative":
            return 1.0 / (num_batches_tracked + 1)
        return float(batch_stat_weight)

    def running_var_sample(self, var: Num, n: int, estimator: str) -> Num:
        """The batch variance fed to the running average: unbiased ``var * n/(n-1)`` or biased."""
        if estimator == "unbiased":
            unbiased: Num = var * (var.dtype.type(n) / var.dtype.type(n - 1))
            return unbiased
        return var

    def sequence_stat_mask(self, mask: Num) -> Num:
        """sequence_batch_norm: the positions that enter the statistics, the valid frames."""
        return mask

    def sequence_count(self, stat_mask: Num, axes: tuple[int, ...]) -> Num:
        """sequence_batch_norm: values per statistic, the counted positions (keep-dims)."""
        count: Num = np.sum(stat_mask, axis=axes, keepdims=True)
        return count

    def sequence_grad_mask(self, mask: Num) -> Num:
        """sequence_batch_norm: where gradients flow, the valid frames (padding gets 0)."""
        return mask

    def merge_moments(self, counts: Sequence[int], means: Sequence[Num], m2s: Sequence[Num]
                      ) -> tuple[Num, Num]:
        """sync_batch_norm: the workers' ``(n_i, mean_i, M2_i)`` merged into the global
        ``(mean, M2)``: the pairwise update folded over the workers in order, weighted by
        count, empty workers skipped (their mean is never read)."""
        mean, m2, n = np.zeros_like(means[0]), np.zeros_like(m2s[0]), 0
        for nb, mb, m2b in zip(counts, means, m2s, strict=True):
            if nb == 0:
                continue
            total = n + nb
            delta = mb - mean
            # the mean as the count-weighted average: mean + delta * nb/total would turn an
            # infinite mean into inf - inf = NaN where the sum over the batch gives inf
            mean = mean * mean.dtype.type(n / total) + mb * mean.dtype.type(nb / total)
            m2 = m2 + m2b + delta * delta * mean.dtype.type(n * nb / total)
            n = total
        return mean, m2

    def worker_mean(self, global_mean: Num, local_mean: Num) -> Num:
        """sync_batch_norm: the mean a worker centers its shard with, the merged one."""
        return global_mean

    def sync_count(self, counts: Sequence[int], worker: int) -> int:
        """sync_batch_norm: ``n`` in worker ``worker``'s unbiased correction, the global count."""
        return sum(counts)

    def lrn_coefficient(self, alpha: float, size: int) -> float:
        """The factor of the window's sum of squares: ``alpha / size``."""
        return alpha / size

    def lrn_window(self, size: int) -> tuple[int, int]:
        """Channels before and after ``c`` in its window: floor(size/2) and floor((size-1)/2)."""
        return size // 2, (size - 1) // 2

    def lp_denominator(self, norm: Num, eps: Any) -> tuple[Num, Num]:
        """``max(norm, eps)`` and where the clamp is active (the norm's gradient is cut there)."""
        return np.maximum(norm, eps), norm < eps

    def renorm_running_statistics(self, before: tuple[Num, Num], after: tuple[Num, Num]
                                  ) -> tuple[Num, Num]:
        """The running (mean, var) batch renorm's r and d come from: those passed in, from
        before this step's update."""
        return before

    def renorm_jacobian(self, nrm: Normalized, v: Num, axes: tuple[int, ...], r: Num,
                        inv_sigma_running: Num, r_free: Num, d_free: Num) -> Num:
        """``r J v``: batch renorm's derivative of ``z r + d``, r and d held constant.

        The last three arguments (``1/sigma_running`` and where r and d are not clipped)
        are what a derivative *through* r and d would need; the spec's derivative ignores them.
        """
        out: Num = r * jacobian(nrm, v, axes, True)
        return out

    def mixed_statistics(self, batch_mean: Num, batch_var: Num, running_mean: Num,
                         running_var: Num, alpha: Any) -> tuple[Num, Num]:
        """mixed_eval_batch_norm: ``alpha`` weights the batch. The mean of the mixture, and its
        variance (not the mixture of the variances): ``alpha vb + (1 - alpha) rv
        + alpha (1 - alpha) (mb - rm)^2``, three terms >= 0."""
        keep = alpha.dtype.type(1) - alpha
        gap = batch_mean - running_mean
        mean: Num = alpha * batch_mean + keep * running_mean
        var: Num = alpha * batch_var + keep * running_var + (alpha * keep) * (gap * gap)
        return mean, var

    def gate_clip(self, rho: Num) -> tuple[Num, Num]:
        """batch_instance_norm: ``clip(rho, 0, 1)`` and its slope, 1 on the closed interval
        ``[0, 1]`` (PyTorch's clamp) and 0 outside."""
        inside = (rho >= 0) & (rho <= 1)
        return np.clip(rho, 0, 1), np.where(np.isnan(rho), rho, inside.astype(rho.dtype))

    def grn_norm(self, x: Num, axes: tuple[int, ...]) -> Num:
        """global_response_norm: the L2 norm over the spatial ``axes``, keep-dims."""
        out: Num = np.sqrt(reduce_sum(x * x, axes))
        return out

    def grn_unit(self, x: Num, gx: Num) -> Num:
        """global_response_norm: ``d gx / d x = x / gx``, 0 where ``gx == 0`` (torch.norm's
        subgradient at a zero vector)."""
        zero = x.dtype.type(0)
        out: Num = np.where(gx > zero, x / np.where(gx > zero, gx, x.dtype.type(1)), zero)
        return out

    def grn_denominator(self, gx: Num, channel_axes: tuple[int, ...], eps: Any) -> Num:
        """global_response_norm: the mean of the norms over the channels, plus eps."""
        out: Num = reduce_mean(gx, channel_axes) + eps
        return out

    def grn_residual(self) -> bool:
        """global_response_norm: whether ``y`` includes the layer's own residual ``+ x``."""
        return True

    def grn_stats_differentiated(self) -> bool:
        """global_response_norm: whether gradients flow through ``nx`` (they do)."""
        return True


    def scaler_variance(self, var_b: Num, n: int, ddof: int) -> Num:
        """standardize: the fitted variance, the biased one times ``n / (n - ddof)``."""
        out: Num = var_b * var_b.dtype.type(n / (n - ddof))
        return out

    def scaler_denominator(self, var: Num, eps: Any, inside: bool) -> Num:
        """standardize: ``sqrt(var + eps)`` (inside) or ``sqrt(var) + eps`` (outside, ONNX)."""
        out: Num = np.sqrt(var + eps) if inside else np.sqrt(var) + eps
        return out

    def scaler_apply_statistics(self, fitted: tuple[Num, Num],
                                refit: Callable[[], tuple[Num, Num]]) -> tuple[Num, Num]:
        """standardize/min_max_scale apply mode: the given fitted statistics (``refit`` would
        compute them from the data being transformed, which apply never does)."""
        return fitted

class MethodImpl(Protocol):
    """One method, computed in ``prec.compute`` on arrays already loaded in that dtype."""

    @property
    def primals(self) -> tuple[str, ...]:
        """Differentiable inputs, in the reference's order."""

    @property
    def state(self) -> tuple[str, ...]:
        """State inputs that are not differentiated (running statistics)."""

    def forward(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                hyper: Mapping[str, Any]) -> dict[str, Num]: ...

    def vjp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], g: Num) -> dict[str, Num]: ...

    def jvp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], t: Mapping[str, Num]) -> Num: ...

    def second_order(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                     hyper: Mapping[str, Any], g: Num, t: Mapping[str, Num]
                     ) -> dict[str, Num]: ...
