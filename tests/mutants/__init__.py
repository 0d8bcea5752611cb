"""Deliberately wrong adapters for the mutation self-test, one real bug class per module.

Each mutant is the ``numpy`` adapter with exactly one of its numerical steps
(:class:`normspec.adapters.numpy_adapter.Numerics`) replaced; its module docstring names the
bug class and the catalog cases that should expose it. The conformance suite must fail every one
of them on at least one check while the ``numpy`` adapter passes.
"""

from __future__ import annotations

from normspec.adapters.protocol import Adapter

from . import (
    adain_biased_variance,
    adain_style_detached,
    adain_style_eps_outside,
    adaln_chunks_swapped,
    adaln_gate_missing,
    adaln_scale_not_one_plus,
    bin_clip_slope_open,
    bin_rho_not_clipped,
    channels_first_assumed,
    cin_first_row,
    cin_rows_by_sample,
    cin_scatter_overwrite,
    cumulative_fixed_momentum,
    eps_outside_sqrt,
    ghost_running_var_whole_batch,
    ghost_strided,
    ghost_update_per_ghost,
    ghost_whole_batch,
    gn_eps_added,
    gn_forward_normalized,
    gn_last_axis_only,
    gn_unnormalized,
    gradnorm_no_renormalization,
    gradnorm_ratio_without_mean,
    gradnorm_sign_one_at_target,
    gradnorm_target_not_detached,
    grn_channel_sum,
    grn_nan_at_zero_norm,
    grn_no_residual,
    grn_stats_constant,
    instance_batch_stats,
    interleaved_groups,
    inverted_momentum,
    l2_last_axis,
    l2_scale_detached,
    layer_norm_last_axis,
    low_precision_accumulation,
    lp_clamp_squared,
    lp_clamp_wrong_side,
    lp_eps_added,
    lrn_alpha_undivided,
    lrn_sliding_sum,
    lrn_window_onnx,
    minmax_first_tie,
    minmax_no_clip,
    minmax_zero_range_nan,
    mixed_alpha_on_running,
    mixed_mixture_of_variances,
    nan_on_constant,
    one_pass_variance,
    power_eps_outside_root,
    power_nan_at_zero,
    power_stats_constant,
    power_sum_not_mean,
    qk_scale_twice,
    qk_shared_weight,
    qk_wrong_axis,
    renorm_grad_through_r_d,
    renorm_updated_statistics,
    rms_bias_before_scale,
    rms_subtracts_mean,
    running_var_biased,
    running_var_swapped,
    running_var_unbiased,
    scale_norm_first_module,
    scaler_apply_refits,
    scaler_ddof_swapped,
    scaler_eps_placement_swapped,
    sequence_padded_counted,
    sequence_padded_gradient,
    sequence_unmasked_count,
    sn_eval_iterates,
    sn_frobenius,
    sn_grad_through_iteration,
    sn_order_swapped,
    sync_local_count,
    sync_local_mean,
    unbiased_normalization,
    vjp_stats_constant,
    weight_grad_wrong_axes,
    wn_eps_floor,
    wn_eps_outside_sqrt,
    wn_minus_one_whole,
    wn_norm_detached,
    ws_last_axis_kept,
)

_MODULES = (
    eps_outside_sqrt,
    unbiased_normalization,
    one_pass_variance,
    running_var_biased,
    running_var_unbiased,
    inverted_momentum,
    interleaved_groups,
    layer_norm_last_axis,
    instance_batch_stats,
    rms_subtracts_mean,
    lrn_alpha_undivided,
    lrn_window_onnx,
    lp_eps_added,
    vjp_stats_constant,
    weight_grad_wrong_axes,
    low_precision_accumulation,
    nan_on_constant,
    # coverage that bites (docs/coverage.md)
    running_var_swapped,
    cumulative_fixed_momentum,
    channels_first_assumed,
    lp_clamp_wrong_side,
    lp_clamp_squared,
    # mixed scales in one set
    lrn_sliding_sum,
    # ghost batch norm: the split, and the running update across the ghost batches of a step
    ghost_whole_batch,
    ghost_strided,
    ghost_update_per_ghost,
    ghost_running_var_whole_batch,
    # batch renorm: r and d constant in the gradient, and from the state before the update
    renorm_grad_through_r_d,
    renorm_updated_statistics,
    # sequence batch norm: padding in the statistics, in the gradient, in the count
    sequence_padded_counted,
    sequence_padded_gradient,
    sequence_unmasked_count,
    # sync batch norm: the global mean, the global count
    sync_local_mean,
    sync_local_count,
    # mixed-statistics evaluation: the variance rule, the side alpha weights
    mixed_mixture_of_variances,
    mixed_alpha_on_running,
    # batch-instance norm: the gate's clip and its slope at the clip's ends
    bin_rho_not_clipped,
    bin_clip_slope_open,
    # adaptive layer norm: the 1 + scale convention, the chunk order, the gate
    adaln_scale_not_one_plus,
    adaln_chunks_swapped,
    adaln_gate_missing,
    # adaptive instance norm: the estimator, eps on the style's std, gradients to the style
    adain_biased_variance,
    adain_style_eps_outside,
    adain_style_detached,
    # conditional instance norm: the row selection, the scatter-add
    cin_first_row,
    cin_rows_by_sample,
    cin_scatter_overwrite,
    # standardize: the variance divisor, the eps placement, apply reading the fitted state
    scaler_ddof_swapped,
    scaler_eps_placement_swapped,
    scaler_apply_refits,
    # global response norm: the channel mean, the residual, the norms in the gradient, the
    # norm's subgradient at a zero channel
    grn_channel_sum,
    grn_no_residual,
    grn_stats_constant,
    grn_nan_at_zero_norm,
    # min_max_scale: the zero-range rule, the clip, the tie subgradient
    minmax_zero_range_nan,
    minmax_no_clip,
    minmax_first_tie,
    # gradient normalization: the axes, the eps rule, the backward, the forward
    gn_last_axis_only,
    gn_eps_added,
    gn_unnormalized,
    gn_forward_normalized,
    # spectral_norm: the iteration's order, evaluation without iteration, u and v constant for
    # the derivatives, sigma_1 rather than the Frobenius norm
    sn_order_swapped,
    sn_eval_iterates,
    sn_grad_through_iteration,
    sn_frobenius,
    # rms_norm's bias: added after the scale
    rms_bias_before_scale,
    # power_norm: the statistic, where eps enters, |x|^p at zero, the divisor's derivative
    power_sum_not_mean,
    power_eps_outside_root,
    power_nan_at_zero,
    power_stats_constant,
    # qk_norm: the normalized axis, the logit scale, separate q and k weights
    qk_wrong_axis,
    qk_scale_twice,
    qk_shared_weight,
    # the L2 methods (fix_norm, scale_norm, unit_norm): the scalar's gradient, the axis
    l2_scale_detached,
    l2_last_axis,
    scale_norm_first_module,
    # weight_norm: PyTorch's dim=-1 convention, eps placement and floor, the norm detached
    wn_minus_one_whole,
    wn_eps_outside_sqrt,
    wn_eps_floor,
    wn_norm_detached,
    # gradnorm: the detached target, the renormalization, the rate's mean, sign(0)
    gradnorm_no_renormalization,
    gradnorm_ratio_without_mean,
    gradnorm_sign_one_at_target,
    gradnorm_target_not_detached,
    # weight_standardization: the kernel layout's output axis assumed
    ws_last_axis_kept,
)

MUTANTS: dict[str, Adapter] = {module.MUTANT.name: module.MUTANT for module in _MODULES}
"""Every mutant by name (``mutant-...``), in the order of the issue's list."""

MOMENTS = ("batch_norm", "layer_norm", "rms_norm", "instance_norm", "group_norm")
CENTERED = ("batch_norm", "layer_norm", "instance_norm", "group_norm")
CHANNELS = ("batch_norm", "instance_norm", "group_norm", "local_response_norm")

TARGETS: dict[str, tuple[str, ...]] = {
    "mutant-eps-outside-sqrt": (*MOMENTS, "weight_standardization"),
    "mutant-unbiased-variance": (*MOMENTS, "weight_standardization"),
    # rms_norm subtracts no mean: E[x^2] - 0^2 is its two-pass formula
    "mutant-one-pass-variance": (*CENTERED, "weight_standardization"),
    "mutant-running-var-biased": ("batch_norm",),
    "mutant-running-var-unbiased": ("batch_norm",),
    "mutant-inverted-momentum": ("batch_norm",),
    "mutant-interleaved-groups": ("group_norm",),
    # layer and rms norm share the trailing-axes geometry
    "mutant-layer-norm-last-axis-only": ("layer_norm", "rms_norm"),
    "mutant-instance-norm-batch-stats": ("instance_norm",),
    "mutant-rms-norm-subtracts-mean": ("rms_norm",),
    "mutant-lrn-alpha-not-divided": ("local_response_norm",),
    "mutant-lrn-window-onnx-even": ("local_response_norm",),
    "mutant-lp-norm-eps-added": ("lp_norm", "fix_norm", "scale_norm",
                                         "unit_norm"),
    "mutant-vjp-stats-constant": (*MOMENTS, "weight_standardization"),
    # layer and rms norm parameters span the trailing axes: no channel axis to confuse
    "mutant-weight-grad-channels-last-sum": ("batch_norm", "instance_norm", "group_norm"),
    "mutant-float16-accumulation": (*MOMENTS, "weight_standardization"),
    "mutant-nan-on-constant": (*MOMENTS, "weight_standardization"),
    "mutant-running-var-swapped": ("batch_norm",),
    "mutant-cumulative-fixed-momentum": ("batch_norm",),
    "mutant-channels-first-assumed": CHANNELS,
    "mutant-lp-norm-clamp-wrong-side": ("lp_norm", "fix_norm", "scale_norm",
                                                "unit_norm"),
    "mutant-lp-norm-clamp-squared": ("lp_norm", "fix_norm", "scale_norm",
                                             "unit_norm"),
    "mutant-lrn-sliding-window-sum": ("local_response_norm",),
    "mutant-ghost-whole-batch-stats": ("ghost_batch_norm",),
    "mutant-ghost-strided": ("ghost_batch_norm",),
    "mutant-ghost-update-per-ghost": ("ghost_batch_norm",),
    "mutant-ghost-running-var-whole-batch": ("ghost_batch_norm",),
    "mutant-renorm-grad-through-r-d": ("batch_renorm",),
    "mutant-renorm-updated-statistics": ("batch_renorm",),
    "mutant-sequence-padded-counted": ("sequence_batch_norm",),
    "mutant-sequence-padded-gradient": ("sequence_batch_norm",),
    "mutant-sequence-unmasked-count": ("sequence_batch_norm",),
    "mutant-sync-local-mean": ("sync_batch_norm",),
    "mutant-sync-local-count": ("sync_batch_norm",),
    "mutant-mixed-mixture-of-variances": ("mixed_eval_batch_norm",),
    "mutant-mixed-alpha-on-running": ("mixed_eval_batch_norm",),
    "mutant-bin-rho-not-clipped": ("batch_instance_norm",),
    "mutant-bin-clip-slope-open": ("batch_instance_norm",),
    "mutant-adaln-scale-not-one-plus": ("adaptive_layer_norm",),
    "mutant-adaln-chunks-swapped": ("adaptive_layer_norm",),
    "mutant-adaln-gate-missing": ("adaptive_layer_norm",),
    "mutant-adain-biased-variance": ("adaptive_instance_norm",),
    "mutant-adain-style-eps-outside": ("adaptive_instance_norm",),
    "mutant-adain-style-detached": ("adaptive_instance_norm",),
    "mutant-cin-first-row": ("conditional_instance_norm",),
    "mutant-cin-rows-by-sample": ("conditional_instance_norm",),
    "mutant-cin-scatter-overwrite": ("conditional_instance_norm",),
    "mutant-scaler-ddof-swapped": ("standardize",),
    "mutant-scaler-eps-placement-swapped": ("standardize",),
    "mutant-scaler-apply-refits": ("standardize", "min_max_scale"),
    "mutant-grn-channel-sum": ("global_response_norm",),
    "mutant-grn-no-residual": ("global_response_norm",),
    "mutant-grn-stats-constant": ("global_response_norm",),
    "mutant-grn-nan-at-zero-norm": ("global_response_norm",),
    "mutant-minmax-zero-range-nan": ("min_max_scale",),
    "mutant-minmax-no-clip": ("min_max_scale",),
    "mutant-minmax-first-tie": ("min_max_scale",),
    "mutant-sn-order-swapped": ("spectral_norm",),
    "mutant-sn-eval-iterates": ("spectral_norm",),
    "mutant-sn-grad-through-iteration": ("spectral_norm",),
    "mutant-sn-frobenius": ("spectral_norm",),
    "mutant-rms-bias-before-scale": ("rms_norm",),
    "mutant-power-sum-not-mean": ("power_norm",),
    "mutant-power-eps-outside-root": ("power_norm",),
    "mutant-power-nan-at-zero": ("power_norm",),
    "mutant-power-stats-constant": ("power_norm",),
    "mutant-qk-wrong-axis": ("qk_norm",),
    "mutant-qk-scale-twice": ("qk_norm",),
    "mutant-qk-shared-weight": ("qk_norm",),
    "mutant-gn-last-axis-only": ("gradient_normalization",),
    "mutant-gn-eps-added": ("gradient_normalization",),
    "mutant-gn-unnormalized": ("gradient_normalization",),
    "mutant-gn-forward-normalized": ("gradient_normalization",),
    "mutant-l2-scale-detached": ("fix_norm", "scale_norm"),
    "mutant-l2-last-axis": ("fix_norm", "unit_norm"),
    "mutant-scale-norm-first-module": ("scale_norm",),
    "mutant-wn-minus-one-whole": ("weight_norm",),
    "mutant-wn-eps-outside-sqrt": ("weight_norm",),
    "mutant-wn-eps-floor": ("weight_norm",),
    "mutant-wn-norm-detached": ("weight_norm",),
    "mutant-ws-last-axis-kept": ("weight_standardization",),
    "mutant-gradnorm-no-renormalization": ("gradnorm",),
    "mutant-gradnorm-ratio-without-mean": ("gradnorm",),
    "mutant-gradnorm-sign-one-at-target": ("gradnorm",),
    "mutant-gradnorm-target-not-detached": ("gradnorm",),
}
"""The methods each mutant's bug class lives in: it must be killed in every one of them, and
the mutation score per method (docs/coverage.md) counts it there."""

SPECS: dict[str, str] = {module.MUTANT.name: f"{module.__name__}:MUTANT" for module in _MODULES}
"""Each mutant as the ``module:attribute`` the runner loads in its worker process."""


def bug_class(name: str) -> str:
    """The first line of a mutant module's docstring, after its name."""
    module = next(m for m in _MODULES if m.MUTANT.name == name)
    first = (module.__doc__ or "").strip().splitlines()[0]
    return first.split(": ", 1)[-1]


__all__ = ["MUTANTS", "SPECS", "TARGETS", "bug_class"]
