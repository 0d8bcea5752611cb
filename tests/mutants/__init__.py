"""Deliberately wrong adapters for the mutation self-test, one real bug class per module.

Each mutant is the ``numpy`` adapter with exactly one of its numerical steps
(:class:`normspec.adapters.numpy_adapter.Numerics`) replaced; its module docstring names the
bug class and the catalog cases that should expose it. The conformance suite must fail every one
of them on at least one check while the ``numpy`` adapter passes.
"""

from __future__ import annotations

from normspec.adapters.protocol import Adapter

from . import (
    eps_outside_sqrt,
    instance_batch_stats,
    interleaved_groups,
    inverted_momentum,
    layer_norm_last_axis,
    low_precision_accumulation,
    lp_eps_added,
    lrn_alpha_undivided,
    lrn_window_onnx,
    nan_on_constant,
    one_pass_variance,
    rms_subtracts_mean,
    running_var_biased,
    running_var_unbiased,
    unbiased_normalization,
    vjp_stats_constant,
    weight_grad_wrong_axes,
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
)

MUTANTS: dict[str, Adapter] = {module.MUTANT.name: module.MUTANT for module in _MODULES}
"""Every mutant by name (``mutant-...``), in the order of the issue's list."""

__all__ = ["MUTANTS"]
