"""batch_norm: running-statistics semantics, NaN/Inf propagation, bad input, properties.

The expected values here are written from the update formula on the spec page with plain
NumPy (np.mean / np.var), never taken from the reference itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from normspec.reference import batch_norm as bn
from normspec.reference import layer_norm as ln

EPS = 1e-5


def _batches(seed: int, count: int, shape: tuple[int, ...] = (4, 3, 2, 5)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(2.0 * k, 1.0 + k, shape) for k in range(count)]


def _other_axes(ndim: int, channel_axis: int) -> tuple[int, ...]:
    return tuple(i for i in range(ndim) if i != channel_axis % ndim)


# --- running statistics -------------------------------------------------------------------


@pytest.mark.parametrize("channel_axis", [1, -1], ids=["channels-first", "channels-last"])
@pytest.mark.parametrize(("factor", "estimator"), [(0.1, "unbiased"), (1 - 0.99, "biased")],
                         ids=["torch-momentum-0.1", "keras-momentum-0.99"])
def test_three_step_trajectory_matches_hand_recursion(channel_axis: int, factor: float,
                                                      estimator: str) -> None:
    batches = _batches(7, 3)
    channels = batches[0].shape[channel_axis]
    hand_mean, hand_var = np.full(channels, 0.5), np.full(channels, 2.0)
    state: dict[str, Any] = {"running_mean": hand_mean.copy(), "running_var": hand_var.copy(),
                             "num_batches_tracked": 0}
    for x in batches:
        axes = _other_axes(x.ndim, channel_axis)
        n = x.size // channels
        mu, var = x.mean(axis=axes), x.var(axis=axes)
        stored = var * n / (n - 1) if estimator == "unbiased" else var
        hand_mean = (1 - factor) * hand_mean + factor * mu
        hand_var = (1 - factor) * hand_var + factor * stored
        out = bn.forward(x, training=True, eps=EPS, channel_axis=channel_axis,
                         batch_stat_weight=factor, running_var_estimator=estimator, **state)
        state = {"running_mean": out["running_mean"], "running_var": out["running_var"],
                 "num_batches_tracked": int(out["num_batches_tracked"])}
        np.testing.assert_allclose(out["mean"], mu, rtol=1e-13)
        np.testing.assert_allclose(out["var"], var, rtol=1e-13)
    np.testing.assert_allclose(state["running_mean"], hand_mean, rtol=1e-13)
    np.testing.assert_allclose(state["running_var"], hand_var, rtol=1e-13)
    assert state["num_batches_tracked"] == 3

    x = batches[-1]
    view = [1] * x.ndim
    view[channel_axis] = channels
    want = (x - hand_mean.reshape(view)) / np.sqrt(hand_var.reshape(view) + EPS)
    got = bn.forward(x, training=False, eps=EPS, channel_axis=channel_axis,
                     running_mean=state["running_mean"], running_var=state["running_var"])
    assert set(got) == {"y"}, "evaluation returns y only"
    np.testing.assert_allclose(got["y"], want, rtol=1e-12, atol=1e-13)


def test_keras_momentum_translates_to_one_minus_m() -> None:
    x = _batches(3, 1)[0]
    m = 0.99
    r_mean, r_var = np.array([1.0, -2.0, 3.0]), np.array([0.5, 1.5, 4.0])
    out = bn.forward(x, training=True, eps=EPS, running_mean=r_mean, running_var=r_var,
                     batch_stat_weight=1 - m, running_var_estimator="biased")
    axes = (0, 2, 3)
    np.testing.assert_allclose(out["running_mean"], m * r_mean + (1 - m) * x.mean(axis=axes),
                               rtol=1e-13)
    np.testing.assert_allclose(out["running_var"], m * r_var + (1 - m) * x.var(axis=axes),
                               rtol=1e-13)


def test_cumulative_first_batch_replaces_initial_stats() -> None:
    x = _batches(11, 1)[0]
    out = bn.forward(x, training=True, eps=EPS, running_mean=np.full(3, 100.0),
                     running_var=np.full(3, 50.0), num_batches_tracked=0,
                     batch_stat_weight="cumulative", running_var_estimator="biased")
    # f = 1/(0 + 1) = 1: nothing of the initial statistics survives
    np.testing.assert_array_equal(out["running_mean"], out["mean"])
    np.testing.assert_array_equal(out["running_var"], out["var"])
    np.testing.assert_allclose(out["running_mean"], x.mean(axis=(0, 2, 3)), rtol=1e-14)
    assert float(out["num_batches_tracked"]) == 1.0


def test_cumulative_mode_is_the_plain_average_of_batch_stats() -> None:
    batches = _batches(5, 3)
    state: dict[str, Any] = {"running_mean": np.zeros(3), "running_var": np.ones(3),
                             "num_batches_tracked": 0}
    for x in batches:
        out = bn.forward(x, training=True, eps=EPS, batch_stat_weight="cumulative",
                         running_var_estimator="unbiased", **state)
        state = {"running_mean": out["running_mean"], "running_var": out["running_var"],
                 "num_batches_tracked": int(out["num_batches_tracked"])}
    axes = (0, 2, 3)
    want_mean = np.mean([x.mean(axis=axes) for x in batches], axis=0)
    want_var = np.mean([x.var(axis=axes, ddof=1) for x in batches], axis=0)
    np.testing.assert_allclose(state["running_mean"], want_mean, rtol=1e-13)
    np.testing.assert_allclose(state["running_var"], want_var, rtol=1e-13)


def test_cumulative_factor_uses_num_batches_tracked() -> None:
    x = _batches(13, 1)[0]
    r_mean, r_var = np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0])
    out = bn.forward(x, training=True, eps=EPS, running_mean=r_mean, running_var=r_var,
                     num_batches_tracked=4, batch_stat_weight="cumulative",
                     running_var_estimator="biased")
    axes = (0, 2, 3)
    np.testing.assert_allclose(out["running_mean"], 0.8 * r_mean + 0.2 * x.mean(axis=axes),
                               rtol=1e-14)
    np.testing.assert_allclose(out["running_var"], 0.8 * r_var + 0.2 * x.var(axis=axes),
                               rtol=1e-14)
    assert float(out["num_batches_tracked"]) == 5.0


@pytest.mark.parametrize("shape", [(2, 3), (1, 3, 2, 2), (5, 3, 7)], ids=str)
def test_unbiased_running_var_is_biased_times_n_over_n_minus_1(shape: tuple[int, ...]) -> None:
    x = np.random.default_rng(17).normal(0.0, 3.0, shape)
    common: dict[str, Any] = {"training": True, "eps": EPS, "running_mean": np.zeros(3),
                              "running_var": np.ones(3), "batch_stat_weight": 1.0}
    unbiased = bn.forward(x, running_var_estimator="unbiased", **common)["running_var"]
    biased = bn.forward(x, running_var_estimator="biased", **common)["running_var"]
    n = x.size // 3
    axes = _other_axes(x.ndim, 1)
    np.testing.assert_allclose(biased, x.var(axis=axes), rtol=1e-14)
    np.testing.assert_allclose(unbiased, biased * n / (n - 1), rtol=1e-15)
    np.testing.assert_allclose(unbiased, x.var(axis=axes, ddof=1), rtol=1e-14)


def test_num_batches_tracked_increments_with_fixed_factor() -> None:
    out = bn.forward(_batches(2, 1)[0], training=True, eps=EPS, running_mean=np.zeros(3),
                     running_var=np.ones(3), num_batches_tracked=41, batch_stat_weight=0.1,
                     running_var_estimator="biased")
    assert out["num_batches_tracked"].dtype == np.float64
    assert out["num_batches_tracked"].shape == ()
    assert float(out["num_batches_tracked"]) == 42.0


def test_training_without_running_stats_returns_batch_stats_only() -> None:
    out = bn.forward(_batches(2, 1)[0], training=True, eps=EPS)
    assert set(out) == {"y", "mean", "var", "rstd"}
    np.testing.assert_allclose(out["rstd"], 1 / np.sqrt(out["var"] + EPS), rtol=1e-15)


def test_single_value_per_channel_is_allowed_with_the_biased_estimator() -> None:
    x = np.array([[1.0, -2.0, 3.0]])
    bias = np.array([0.25, 0.5, 0.75])
    out = bn.forward(x, np.array([2.0, 3.0, 4.0]), bias, training=True, eps=EPS,
                     running_mean=np.zeros(3), running_var=np.ones(3), batch_stat_weight=0.5,
                     running_var_estimator="biased")
    np.testing.assert_array_equal(out["y"], bias[None, :])  # var = 0, so y = bias
    np.testing.assert_array_equal(out["running_var"], np.full(3, 0.5))


# --- NaN and Inf --------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_input_poisons_its_channel_only_in_training(bad: float) -> None:
    clean = _batches(19, 1)[0]
    x = clean.copy()
    x[2, 1, 0, 3] = bad
    kw: dict[str, Any] = {"training": True, "eps": EPS, "running_mean": np.zeros(3),
                          "running_var": np.ones(3), "batch_stat_weight": 0.1,
                          "running_var_estimator": "unbiased"}
    got, ref = bn.forward(x, **kw), bn.forward(clean, **kw)
    assert np.isnan(got["y"][:, 1]).all()
    for key in ("var", "rstd", "running_var"):
        assert np.isnan(got[key][1]), key
    want_mean = np.nan if np.isnan(bad) else bad
    np.testing.assert_array_equal(got["mean"][1], want_mean)
    np.testing.assert_array_equal(got["running_mean"][1], want_mean)
    keep = [0, 2]
    np.testing.assert_array_equal(got["y"][:, keep], ref["y"][:, keep])
    for key in ("mean", "var", "rstd", "running_mean", "running_var"):
        np.testing.assert_array_equal(got[key][keep], ref[key][keep])


@pytest.mark.parametrize(("bad", "want"), [(np.nan, np.nan), (np.inf, -np.inf)],
                         ids=["nan", "inf"])
def test_non_finite_input_poisons_its_element_only_in_eval(bad: float, want: float) -> None:
    x = _batches(23, 1)[0]
    x[1, 2, 1, 1] = bad
    y = bn.forward(x, np.array([1.0, 2.0, -3.0]), training=False, eps=EPS,
                   running_mean=np.array([0.5, -1.0, 2.0]),
                   running_var=np.array([1.0, 2.0, 3.0]))["y"]
    np.testing.assert_array_equal(y[1, 2, 1, 1], want)  # weight[2] < 0 flips the infinity
    mask = np.ones(x.shape, dtype=bool)
    mask[1, 2, 1, 1] = False
    assert np.isfinite(y[mask]).all()


@pytest.mark.parametrize("function", ["vjp", "jvp", "second_order"])
def test_derivatives_propagate_nan_to_its_channel_without_warnings(function: str) -> None:
    x = _batches(31, 1)[0]
    x[0, 1, 1, 2] = np.nan
    rng = np.random.default_rng(37)
    kw: dict[str, Any] = {"cotangent": rng.standard_normal(x.shape),
                          "tangent": {"x": rng.standard_normal(x.shape)}}
    if function == "jvp":
        del kw["cotangent"]
    if function == "vjp":
        del kw["tangent"]
    out = getattr(bn, function)(x, training=True, eps=EPS, **kw)
    dx = out if function == "jvp" else out["x"]
    assert np.isnan(dx[:, 1]).all()
    assert np.isfinite(dx[:, [0, 2]]).all()


def test_eval_derivatives_divide_by_zero_as_ieee_says() -> None:
    x = _batches(41, 1)[0]
    g = np.ones_like(x)
    kw: dict[str, Any] = {"training": False, "eps": 0.0, "running_mean": np.zeros(3),
                          "running_var": np.array([1.0, 0.0, 1.0])}
    grads = bn.vjp(x, np.ones(3), cotangent=g, **kw)
    assert np.isinf(grads["x"][:, 1]).all()
    assert np.isfinite(grads["x"][:, [0, 2]]).all()
    assert np.isinf(bn.jvp(x, tangent={"x": g}, **kw)[:, 1]).all()
    assert np.isinf(bn.second_order(x, np.ones(3), cotangent=g, tangent={"x": g}, **kw)
                    ["weight"][1])


def test_nan_running_stat_poisons_its_channel_in_eval() -> None:
    x = _batches(29, 1)[0]
    y = bn.forward(x, training=False, eps=EPS, running_mean=np.array([0.0, np.nan, 0.0]),
                   running_var=np.ones(3))["y"]
    assert np.isnan(y[:, 1]).all()
    assert np.isfinite(y[:, [0, 2]]).all()


def test_zero_variance_with_zero_eps_gives_nan_as_ieee_says() -> None:
    x = np.ones((4, 2))
    out = bn.forward(x, training=True, eps=0.0)
    assert np.isnan(out["y"]).all()  # 0 * (1 / sqrt(0)) = 0 * inf
    assert np.isinf(out["rstd"]).all()


# --- bad input ----------------------------------------------------------------------------

X = np.arange(12.0).reshape(4, 3)
TRACK: dict[str, Any] = {"running_mean": np.zeros(3), "running_var": np.ones(3),
                         "batch_stat_weight": 0.1, "running_var_estimator": "biased"}

BAD_INPUT: list[tuple[str, dict[str, Any], type[Exception], tuple[str, ...]]] = [
    ("running_mean-without-running_var", {"running_mean": np.zeros(3)}, ValueError,
     ("'running_var'", "None")),
    ("running_var-without-running_mean", {"running_var": np.ones(3)}, ValueError,
     ("'running_mean'", "None")),
    ("running_mean-shape", {**TRACK, "running_mean": np.zeros(4)}, ValueError,
     ("'running_mean'", "(4,)", "(3,)")),
    ("running_var-shape", {**TRACK, "running_var": np.ones((3, 1))}, ValueError,
     ("'running_var'", "(3, 1)", "(3,)")),
    ("running_var-negative", {**TRACK, "running_var": np.array([1.0, -2.0, 1.0])}, ValueError,
     ("'running_var'", "-2.0")),
    ("running_mean-int", {**TRACK, "running_mean": np.zeros(3, dtype=np.int32)}, TypeError,
     ("'running_mean'", "int32")),
    ("weight-shape", {"weight": np.ones(2)}, ValueError, ("'weight'", "(2,)", "(3,)")),
    ("bias-shape", {"bias": np.ones((1, 3))}, ValueError, ("'bias'", "(1, 3)", "(3,)")),
    ("weight-int", {"weight": np.ones(3, dtype=np.int64)}, TypeError, ("'weight'", "int64")),
    ("eval-without-running-stats", {"training": False}, ValueError,
     ("'running_mean'", "None", "training=False")),
    ("batch_stat_weight-above-1", {**TRACK, "batch_stat_weight": 1.5}, ValueError,
     ("'batch_stat_weight'", "1.5", "[0, 1]")),
    ("batch_stat_weight-negative", {**TRACK, "batch_stat_weight": -0.1}, ValueError,
     ("'batch_stat_weight'", "-0.1")),
    ("batch_stat_weight-nan", {**TRACK, "batch_stat_weight": float("nan")}, ValueError,
     ("'batch_stat_weight'", "nan")),
    ("batch_stat_weight-unknown-string", {**TRACK, "batch_stat_weight": "momentum"},
     ValueError, ("'batch_stat_weight'", "'momentum'", "'cumulative'")),
    ("batch_stat_weight-bool", {**TRACK, "batch_stat_weight": True}, TypeError,
     ("'batch_stat_weight'", "True")),
    ("batch_stat_weight-missing", {**TRACK, "batch_stat_weight": None}, ValueError,
     ("'batch_stat_weight'", "None")),
    ("running_var_estimator-missing", {**TRACK, "running_var_estimator": None}, ValueError,
     ("'running_var_estimator'", "None", "unbiased")),
    ("running_var_estimator-unknown", {**TRACK, "running_var_estimator": "bessel"},
     ValueError, ("'running_var_estimator'", "'bessel'", "unbiased")),
    ("unbiased-with-one-value-per-channel",
     {**TRACK, "x": np.ones((1, 3)), "running_var_estimator": "unbiased"}, ValueError,
     ("'x'", "(1, 3)", "n=1")),
    ("unbiased-with-one-value-per-channel-2d",
     {**TRACK, "x": np.ones((1, 3, 1, 1)), "running_var_estimator": "unbiased"}, ValueError,
     ("'x'", "(1, 3, 1, 1)", "n=1")),
    ("eps-negative", {"eps": -1.0}, ValueError, ("'eps'", "-1.0")),
    ("eps-inf", {"eps": float("inf")}, ValueError, ("'eps'", "inf")),
    ("eps-nan", {"eps": float("nan")}, ValueError, ("'eps'", "nan")),
    ("channel_axis-too-large", {"channel_axis": 2}, ValueError,
     ("'channel_axis'", "2", "[-2, 1]")),
    ("channel_axis-too-small", {"channel_axis": -3}, ValueError, ("'channel_axis'", "-3")),
    ("x-1d", {"x": np.ones(5)}, ValueError, ("'x'", "(5,)", "at least 2")),
    ("x-int", {"x": np.ones((4, 3), dtype=np.int64)}, TypeError, ("'x'", "int64")),
    ("x-complex", {"x": np.ones((4, 3), dtype=np.complex128)}, TypeError, ("'x'", "complex128")),
    ("x-bool", {"x": np.ones((4, 3), dtype=bool)}, TypeError, ("'x'", "bool")),
    ("empty-reduction", {"x": np.ones((0, 3))}, ValueError, ("'x'", "(0, 3)", "non-empty")),
    ("num_batches_tracked-negative", {**TRACK, "num_batches_tracked": -1}, ValueError,
     ("'num_batches_tracked'", "-1")),
    ("num_batches_tracked-float", {**TRACK, "num_batches_tracked": 1.5}, TypeError,
     ("'num_batches_tracked'", "1.5")),
    ("training-not-bool", {"training": "yes"}, TypeError, ("'training'", "'yes'")),
]


@pytest.mark.parametrize(("overrides", "error", "fragments"),
                         [case[1:] for case in BAD_INPUT], ids=[case[0] for case in BAD_INPUT])
def test_bad_input_names_argument_and_value(overrides: dict[str, Any], error: type[Exception],
                                            fragments: tuple[str, ...]) -> None:
    kw: dict[str, Any] = {"x": X, "training": True, "eps": EPS, **overrides}
    with pytest.raises(error) as info:
        bn.forward(**kw)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from: {message}"


@pytest.mark.parametrize("function", ["vjp", "jvp", "second_order"])
def test_derivatives_validate_like_forward(function: str) -> None:
    extra: dict[str, Any] = {"cotangent": np.ones_like(X), "tangent": {"x": np.ones_like(X)}}
    if function == "jvp":
        del extra["cotangent"]
    if function == "vjp":
        del extra["tangent"]
    with pytest.raises(ValueError, match="'running_mean'"):
        getattr(bn, function)(X, training=False, eps=EPS, **extra)


def test_eval_accepts_an_empty_batch() -> None:
    y = bn.forward(np.ones((0, 3)), training=False, eps=EPS, running_mean=np.zeros(3),
                   running_var=np.ones(3))["y"]
    assert y.shape == (0, 3)


# --- properties ---------------------------------------------------------------------------

PROPERTY = settings(max_examples=50, deadline=None)
VALUES = st.floats(-100.0, 100.0, allow_nan=False, allow_infinity=False, width=64)


@st.composite
def layouts(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    """An input of 2 to 4 dimensions (each 1 to 4 long) and its channel axis (1 or -1)."""
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=2, max_size=4)))
    channel_axis = draw(st.sampled_from([1, -1]))
    return draw(arrays(np.float64, shape, elements=VALUES)), channel_axis


def _param_view(p: np.ndarray, ndim: int, channel_axis: int) -> np.ndarray:
    view = [1] * ndim
    view[channel_axis] = p.size
    return p.reshape(view)


@PROPERTY
@given(layouts(), st.data())
def test_y_is_invariant_to_a_per_channel_shift(layout: tuple[np.ndarray, int],
                                               data: st.DataObject) -> None:
    x, ca = layout
    shift = data.draw(arrays(np.float64, (x.shape[ca],), elements=VALUES))
    y = bn.forward(x, training=True, eps=1e-3, channel_axis=ca)["y"]
    y_shifted = bn.forward(x + _param_view(shift, x.ndim, ca), training=True, eps=1e-3,
                           channel_axis=ca)["y"]
    np.testing.assert_allclose(y_shifted, y, rtol=1e-9, atol=1e-9)


@PROPERTY
@given(layouts(), st.floats(1e-3, 1e3))
def test_y_is_invariant_to_a_positive_scale_with_scaled_eps(layout: tuple[np.ndarray, int],
                                                           scale: float) -> None:
    x, ca = layout
    eps = 1e-3
    y = bn.forward(x, training=True, eps=eps, channel_axis=ca)["y"]
    y_scaled = bn.forward(scale * x, training=True, eps=eps * scale**2, channel_axis=ca)["y"]
    np.testing.assert_allclose(y_scaled, y, rtol=1e-10, atol=1e-10)


@PROPERTY
@given(layouts(), st.data())
def test_permuting_a_non_channel_axis_permutes_y_and_keeps_stats(
        layout: tuple[np.ndarray, int], data: st.DataObject) -> None:
    x, ca = layout
    axis = data.draw(st.sampled_from(_other_axes(x.ndim, ca)), label="permuted axis")
    perm = np.array(data.draw(st.permutations(range(x.shape[axis]))), dtype=np.intp)
    kw: dict[str, Any] = {"training": True, "eps": 1e-3, "channel_axis": ca,
                          "running_mean": np.zeros(x.shape[ca]),
                          "running_var": np.ones(x.shape[ca]),
                          "batch_stat_weight": 0.1, "running_var_estimator": "biased"}
    out = bn.forward(x, **kw)
    out_p = bn.forward(np.take(x, perm, axis=axis), **kw)
    # correctly rounded sums do not depend on order, so equivariance is exact
    np.testing.assert_array_equal(out_p["y"], np.take(out["y"], perm, axis=axis))
    for key in ("mean", "var", "rstd", "running_mean", "running_var"):
        np.testing.assert_array_equal(out_p[key], out[key], err_msg=key)


@PROPERTY
# eps > 0: layer_norm is not the method under test here, and with eps = 0 a size-1 or
# constant reduction makes it divide by zero
@given(layouts(), st.sampled_from([1e-5, 0.5]))
def test_batch_norm_equals_layer_norm_on_the_transposed_input(
        layout: tuple[np.ndarray, int], eps: float) -> None:
    x, ca = layout
    moved = np.moveaxis(x, ca, 0)
    flat = moved.reshape(moved.shape[0], -1)
    want = ln.forward(flat, axis=1, eps=eps)
    got = bn.forward(x, training=True, eps=eps, channel_axis=ca)
    for key in ("mean", "var", "rstd"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-14, atol=0, err_msg=key)
    y_back = np.moveaxis(want["y"].reshape(moved.shape), 0, ca)
    np.testing.assert_allclose(got["y"], y_back, rtol=1e-14, atol=1e-14)
