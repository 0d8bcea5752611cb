"""ghost_batch_norm: properties, running statistics, NaN/Inf propagation and bad input.

Expected running statistics are written from the update formula on the spec page with plain
NumPy (np.mean / np.var per ghost slice), never taken from the reference itself; the structural
properties compare with batch_norm, which has its own proofs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from normspec.reference import batch_norm as bn
from normspec.reference import ghost_batch_norm as gbn
from normspec.reference._layout import reduction_sets

EPS = 1e-5
TRACK: dict[str, Any] = {"batch_stat_weight": 0.1, "running_var_estimator": "unbiased"}


def _other_axes(ndim: int, channel_axis: int) -> tuple[int, ...]:
    return tuple(i for i in range(ndim) if i != channel_axis % ndim)


def _state(channels: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"running_mean": rng.normal(0.0, 1.0, channels),
            "running_var": rng.uniform(0.5, 2.0, channels)}


def _all_checks(mod: Any, x: np.ndarray, w: np.ndarray | None, b: np.ndarray | None,
                seed: int, **kw: Any) -> dict[str, Any]:
    """forward, vjp, jvp and second order of ``mod`` at one point, with fixed directions."""
    rng = np.random.default_rng(seed)
    g = rng.standard_normal(x.shape)
    t = {"x": rng.standard_normal(x.shape)}
    if w is not None:
        t["weight"] = rng.standard_normal(w.shape)
    if b is not None:
        t["bias"] = rng.standard_normal(b.shape)
    return {"forward": mod.forward(x, w, b, **kw), "vjp": mod.vjp(x, w, b, cotangent=g, **kw),
            "jvp": mod.jvp(x, w, b, tangent=t, **kw),
            "second_order": mod.second_order(x, w, b, cotangent=g, tangent=t, **kw)}


# --- one ghost batch is batch norm, bit for bit ---------------------------------------------

_SHAPES = st.sampled_from([((5, 3), 1), ((2, 3, 4), 1), ((3, 2, 2, 3), 1), ((2, 4, 3), -1),
                           ((4, 2, 3, 2), 2), ((1, 3), 1), ((1, 2, 5), 1)])


@settings(max_examples=40, deadline=None)
@given(layout=_SHAPES, seed=st.integers(0, 2**32 - 1), affine=st.integers(0, 3),
       mode=st.sampled_from(["train", "biased", "unbiased", "cumulative", "eval"]))
def test_one_ghost_batch_equals_batch_norm_exactly(layout: tuple[tuple[int, ...], int],
                                                   seed: int, affine: int, mode: str) -> None:
    shape, c_axis = layout
    rng = np.random.default_rng(seed)
    x = rng.normal(rng.normal(0.0, 5.0), rng.uniform(0.1, 3.0), shape)
    channels = shape[c_axis]
    w = rng.normal(1.0, 0.5, channels) if affine & 1 else None
    b = rng.normal(0.0, 0.5, channels) if affine & 2 else None
    n = x.size // channels
    kw: dict[str, Any] = {"training": mode != "eval", "eps": EPS, "channel_axis": c_axis}
    if mode != "train":
        kw.update(_state(channels, seed))
    if mode in ("biased", "unbiased", "cumulative"):
        estimator = "biased" if mode == "biased" or n == 1 else "unbiased"
        kw.update(batch_stat_weight="cumulative" if mode == "cumulative" else 0.25,
                  running_var_estimator=estimator, num_batches_tracked=3)
    got = _all_checks(gbn, x, w, b, seed, ghost_batch_size=shape[0], **kw)
    want = _all_checks(bn, x, w, b, seed, **kw)
    for key, value in want["forward"].items():
        # the ghost statistics have shape (G, C) = (1, C), batch norm's (C,)
        np.testing.assert_array_equal(np.reshape(got["forward"][key], np.shape(value)), value,
                                      err_msg=key)
    assert set(got["forward"]) == set(want["forward"])
    for check in ("vjp", "second_order"):
        assert set(got[check]) == set(want[check])
        for key, value in want[check].items():
            np.testing.assert_array_equal(got[check][key], value, err_msg=f"{check}/{key}")
    np.testing.assert_array_equal(got["jvp"], want["jvp"])


# --- each ghost batch is batch norm on its own slice -----------------------------------------


@pytest.mark.parametrize(("shape", "c_axis", "size"), [
    ((6, 3), 1, 2), ((6, 3), 1, 3), ((8, 2, 5), 1, 4), ((6, 2, 2, 3), 1, 2),
    ((4, 3, 2, 2), -1, 2), ((6, 3, 2), 1, 1)], ids=str)
def test_each_ghost_batch_is_batch_norm_on_its_slice(shape: tuple[int, ...], c_axis: int,
                                                     size: int) -> None:
    rng = np.random.default_rng(11)
    # every ghost batch at its own level and spread, so a mixed-up split cannot pass
    x = rng.standard_normal(shape) * rng.uniform(0.5, 3.0, (shape[0],) + (1,) * (len(shape) - 1))
    x = x + np.repeat(rng.normal(0.0, 20.0, shape[0] // size), size).reshape(
        (-1,) + (1,) * (len(shape) - 1))
    channels = shape[c_axis]
    w, b = rng.normal(1.0, 0.5, channels), rng.normal(0.0, 0.5, channels)
    kw = {"training": True, "eps": EPS, "channel_axis": c_axis}
    got = _all_checks(gbn, x, w, b, 5, ghost_batch_size=size, **kw)
    rng = np.random.default_rng(5)
    g = rng.standard_normal(x.shape)
    t = {"x": rng.standard_normal(x.shape), "weight": rng.standard_normal(channels),
         "bias": rng.standard_normal(channels)}
    sums: dict[str, dict[str, np.ndarray]] = {"vjp": {}, "second_order": {}}
    for k in range(shape[0] // size):
        part = slice(k * size, (k + 1) * size)
        fwd = bn.forward(x[part], w, b, **kw)
        np.testing.assert_allclose(got["forward"]["y"][part], fwd["y"], rtol=1e-13, atol=1e-13)
        for stat in ("mean", "var", "rstd"):
            np.testing.assert_allclose(got["forward"][stat][k], fwd[stat], rtol=1e-13)
        tk = {"x": t["x"][part], "weight": t["weight"], "bias": t["bias"]}
        np.testing.assert_allclose(got["jvp"][part], bn.jvp(x[part], w, b, tangent=tk, **kw),
                                   rtol=1e-12, atol=1e-12)
        for check, out in (("vjp", bn.vjp(x[part], w, b, cotangent=g[part], **kw)),
                           ("second_order", bn.second_order(x[part], w, b, cotangent=g[part],
                                                            tangent=tk, **kw))):
            np.testing.assert_allclose(got[check]["x"][part], out["x"], rtol=1e-12, atol=1e-12)
            for key in ("weight", "bias"):
                sums[check][key] = sums[check].get(key, 0.0) + out[key]
    for check, parts in sums.items():
        for key, total in parts.items():  # the shared parameters collect every ghost batch
            np.testing.assert_allclose(got[check][key], total, rtol=1e-12, atol=1e-12,
                                       err_msg=f"{check}/{key}")


def test_no_gradient_crosses_between_ghost_batches() -> None:
    x = np.random.default_rng(3).standard_normal((6, 2, 3))
    g = np.zeros_like(x)
    g[:3] = np.random.default_rng(4).standard_normal((3, 2, 3))  # cotangent on ghost 0 only
    dx = gbn.vjp(x, cotangent=g, training=True, eps=EPS, ghost_batch_size=3)["x"]
    assert np.any(dx[:3] != 0.0)
    np.testing.assert_array_equal(dx[3:], 0.0)


def test_ghost_batches_are_contiguous_not_strided() -> None:
    # samples 0, 1 at level 0 and samples 2, 3 at level 100: contiguous ghosts of 2 see a
    # spread of 1 each; strided ghosts (0, 2) and (1, 3) would see a spread of about 50
    x = np.array([[-1.0], [1.0], [99.0], [101.0]])
    out = gbn.forward(x, training=True, eps=0.0, ghost_batch_size=2)
    assert out["mean"].tolist() == [[0.0], [100.0]]
    assert out["var"].tolist() == [[1.0], [1.0]]
    assert out["y"].ravel().tolist() == [-1.0, 1.0, -1.0, 1.0]


# --- ghost batches of one sample ----------------------------------------------------------


def test_one_sample_per_ghost_batch_with_spatial_axes_normalizes_each_sample() -> None:
    x = np.random.default_rng(9).normal(3.0, 2.0, (3, 2, 5))
    out = gbn.forward(x, training=True, eps=EPS, ghost_batch_size=1)
    mu, var = x.mean(axis=2), x.var(axis=2)  # per (sample, channel), as instance norm
    np.testing.assert_allclose(out["mean"], mu, rtol=1e-14)
    np.testing.assert_allclose(out["var"], var, rtol=1e-13)
    np.testing.assert_allclose(out["y"], (x - mu[..., None]) / np.sqrt(var[..., None] + EPS),
                               rtol=1e-12, atol=1e-13)


def test_one_value_per_ghost_batch_gives_bias_and_is_allowed_biased() -> None:
    x = np.array([[1.0, -2.0], [3.0, 4.0], [5.0, 6.0]])
    bias = np.array([0.25, -0.5])
    out = gbn.forward(x, np.array([2.0, 3.0]), bias, training=True, eps=EPS,
                      ghost_batch_size=1, running_mean=np.zeros(2), running_var=np.ones(2),
                      batch_stat_weight=0.5, running_var_estimator="biased")
    np.testing.assert_array_equal(out["y"], np.broadcast_to(bias, x.shape))  # var = 0
    np.testing.assert_array_equal(out["var"], np.zeros((3, 2)))
    np.testing.assert_allclose(out["running_mean"], 0.5 * x.mean(axis=0), rtol=1e-15)
    np.testing.assert_array_equal(out["running_var"], np.full(2, 0.5))  # 0.5 * 1 + 0.5 * 0


def test_one_value_per_ghost_batch_rejects_the_unbiased_estimator() -> None:
    with pytest.raises(ValueError, match=r"argument 'ghost_batch_size': got 1 for x of shape "
                                         r"\(4, 3\).*n=1.*running_var_estimator='unbiased'"):
        gbn.forward(np.ones((4, 3)), training=True, eps=EPS, ghost_batch_size=1,
                    **_state(3), **TRACK)
    # the whole batch has n = 4 >= 2 per channel, so batch norm itself would accept it
    bn.forward(np.ones((4, 3)), training=True, eps=EPS, **_state(3), **TRACK)


# --- running statistics -------------------------------------------------------------------


def _ghost_moments(x: np.ndarray, size: int, c_axis: int) -> tuple[np.ndarray, np.ndarray]:
    """(G, C) means and biased variances, one np.mean/np.var per slice."""
    slices = [x[k * size:(k + 1) * size] for k in range(x.shape[0] // size)]
    axes = _other_axes(x.ndim, c_axis)
    return (np.array([s.mean(axis=axes) for s in slices]),
            np.array([s.var(axis=axes) for s in slices]))


@pytest.mark.parametrize("channel_axis", [1, -1], ids=["channels-first", "channels-last"])
@pytest.mark.parametrize(("factor", "estimator"), [
    (0.1, "unbiased"), (1 - 0.99, "biased"), ("cumulative", "unbiased"),
    ("cumulative", "biased")])
def test_five_step_trajectory_matches_hand_recursion(channel_axis: int, factor: float | str,
                                                     estimator: str) -> None:
    rng = np.random.default_rng(21)
    shape, size = (8, 3, 2, 3), 2
    channels = shape[channel_axis]
    hand_mean, hand_var = np.full(channels, 0.5), np.full(channels, 2.0)
    state: dict[str, Any] = {"running_mean": hand_mean.copy(), "running_var": hand_var.copy(),
                             "num_batches_tracked": 0}
    for step in range(5):
        x = rng.normal(2.0 * step, 1.0 + step, shape)
        mu, var = _ghost_moments(x, size, channel_axis)
        n = x.size // channels // (shape[0] // size)  # one ghost batch's count per channel
        stored = var.mean(axis=0) * (n / (n - 1) if estimator == "unbiased" else 1.0)
        f = 1 / (step + 1) if factor == "cumulative" else float(factor)
        hand_mean = (1 - f) * hand_mean + f * mu.mean(axis=0)
        hand_var = (1 - f) * hand_var + f * stored
        out = gbn.forward(x, training=True, eps=EPS, channel_axis=channel_axis,
                          ghost_batch_size=size, batch_stat_weight=factor,
                          running_var_estimator=estimator, **state)
        state = {"running_mean": out["running_mean"], "running_var": out["running_var"],
                 "num_batches_tracked": int(out["num_batches_tracked"])}
        np.testing.assert_allclose(out["mean"], mu, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(out["var"], var, rtol=1e-13)
        np.testing.assert_allclose(state["running_mean"], hand_mean, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(state["running_var"], hand_var, rtol=1e-13)
    assert state["num_batches_tracked"] == 5  # once per step, not once per ghost batch

    x = rng.normal(1.0, 2.0, (5, *shape[1:]))  # evaluation: any batch size, no split
    got = gbn.forward(x, training=False, eps=EPS, channel_axis=channel_axis,
                      ghost_batch_size=size, running_mean=state["running_mean"],
                      running_var=state["running_var"])
    view = [1] * x.ndim
    view[channel_axis] = channels
    want = (x - hand_mean.reshape(view)) / np.sqrt(hand_var.reshape(view) + EPS)
    assert set(got) == {"y"}
    np.testing.assert_allclose(got["y"], want, rtol=1e-12, atol=1e-13)


def test_running_var_is_the_mean_within_ghost_variance_not_the_batch_variance() -> None:
    rng = np.random.default_rng(8)
    x = rng.standard_normal((6, 2)) + np.repeat([[-10.0], [0.0], [10.0]], 2, axis=0)
    out = gbn.forward(x, training=True, eps=EPS, ghost_batch_size=2, running_mean=np.zeros(2),
                      running_var=np.zeros(2), batch_stat_weight=1.0,
                      running_var_estimator="biased")
    _, var = _ghost_moments(x, 2, 1)
    np.testing.assert_allclose(out["running_var"], var.mean(axis=0), rtol=1e-14)
    assert np.all(out["running_var"] < x.var(axis=0) / 10)  # the levels' spread is left out
    # equal ghost sizes: the average of the ghost means is the whole batch's mean
    np.testing.assert_allclose(out["running_mean"], x.mean(axis=0), rtol=1e-14)


def test_unbiased_correction_uses_the_ghost_count() -> None:
    x = np.random.default_rng(6).normal(0.0, 3.0, (8, 3, 2))
    common: dict[str, Any] = {"training": True, "eps": EPS, "ghost_batch_size": 4,
                              "running_mean": np.zeros(3), "running_var": np.ones(3),
                              "batch_stat_weight": 1.0}
    unbiased = gbn.forward(x, running_var_estimator="unbiased", **common)["running_var"]
    biased = gbn.forward(x, running_var_estimator="biased", **common)["running_var"]
    n = 4 * 2  # one ghost batch: 4 samples x 2 positions per channel (the batch has 16)
    np.testing.assert_allclose(unbiased, biased * n / (n - 1), rtol=1e-15)
    _, var = _ghost_moments(x, 4, 1)
    np.testing.assert_allclose(biased, var.mean(axis=0), rtol=1e-14)


def test_batch_stat_weight_zero_and_one() -> None:
    x = np.random.default_rng(2).standard_normal((4, 3))
    state = _state(3, 4)
    still = gbn.forward(x, training=True, eps=EPS, ghost_batch_size=2, batch_stat_weight=0.0,
                        running_var_estimator="unbiased", **state)
    np.testing.assert_array_equal(still["running_mean"], state["running_mean"])
    np.testing.assert_array_equal(still["running_var"], state["running_var"])
    moved = gbn.forward(x, training=True, eps=EPS, ghost_batch_size=2, batch_stat_weight=1.0,
                        running_var_estimator="biased", **state)
    mu, var = _ghost_moments(x, 2, 1)
    np.testing.assert_allclose(moved["running_mean"], mu.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(moved["running_var"], var.mean(axis=0), rtol=1e-14)


def test_training_without_running_stats_returns_ghost_stats_only() -> None:
    out = gbn.forward(np.random.default_rng(1).standard_normal((6, 4, 2)), training=True,
                      eps=EPS, ghost_batch_size=3)
    assert set(out) == {"y", "mean", "var", "rstd"}
    assert out["mean"].shape == (2, 4)
    np.testing.assert_allclose(out["rstd"], 1 / np.sqrt(out["var"] + EPS), rtol=1e-15)


def test_evaluation_is_batch_norm_evaluation_for_any_batch_size() -> None:
    rng = np.random.default_rng(12)
    x, w, b = rng.standard_normal((5, 3, 2)), rng.normal(1.0, 0.5, 3), rng.normal(0.0, 0.5, 3)
    kw = {"training": False, "eps": EPS, **_state(3, 7)}
    got = _all_checks(gbn, x, w, b, 1, ghost_batch_size=2, **kw)  # 2 does not divide 5
    want = _all_checks(bn, x, w, b, 1, **kw)
    np.testing.assert_array_equal(got["forward"]["y"], want["forward"]["y"])
    np.testing.assert_array_equal(got["jvp"], want["jvp"])
    for check in ("vjp", "second_order"):
        for key, value in want[check].items():
            np.testing.assert_array_equal(got[check][key], value)


# --- the Keras translation ------------------------------------------------------------------


def test_keras_strided_ghost_batches_are_a_permutation_of_the_spec() -> None:
    """tf-keras reshapes x to (virtual_batch_size, G, ...) and keeps axis 1: its ghost batch
    g holds samples g, g + G, g + 2G, ... The spec's contiguous ghost batches reproduce it on
    the batch reordered so that those samples are consecutive (the spec page's mapping)."""
    rng = np.random.default_rng(30)
    size, ghosts = 3, 4
    x = rng.standard_normal((size * ghosts, 2, 5)) * 3 + np.arange(size * ghosts)[:, None, None]
    # Keras' computation, written out: statistics over axis 0 (size) and the spatial axis
    view = x.reshape(size, ghosts, 2, 5)
    mean, var = view.mean(axis=(0, 3), keepdims=True), view.var(axis=(0, 3), keepdims=True)
    keras_y = ((view - mean) / np.sqrt(var + 1e-3)).reshape(x.shape)
    perm = np.arange(size * ghosts).reshape(size, ghosts).T.ravel()  # [0, G, 2G, ..., 1, ...]
    y = gbn.forward(x[perm], training=True, eps=1e-3, ghost_batch_size=size)["y"]
    out = np.empty_like(y)
    out[perm] = y
    np.testing.assert_allclose(out, keras_y, rtol=1e-12, atol=1e-12)


# --- NaN and Inf --------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_input_poisons_its_ghost_batch_channel_only(bad: float) -> None:
    clean = np.random.default_rng(19).standard_normal((6, 3, 2))
    x = clean.copy()
    x[4, 1, 0] = bad  # ghost batch 2 (samples 4, 5), channel 1
    kw: dict[str, Any] = {"training": True, "eps": EPS, "ghost_batch_size": 2, **_state(3),
                          **TRACK}
    got, ref = gbn.forward(x, **kw), gbn.forward(clean, **kw)
    assert np.isnan(got["y"][4:, 1]).all()
    assert np.isnan(got["var"][2, 1])
    assert np.isnan(got["rstd"][2, 1])
    np.testing.assert_array_equal(got["mean"][2, 1], np.nan if np.isnan(bad) else bad)
    keep = np.ones(x.shape, dtype=bool)
    keep[4:, 1] = False
    np.testing.assert_array_equal(got["y"][keep], ref["y"][keep])
    stat_keep = np.ones((3, 3), dtype=bool)
    stat_keep[2, 1] = False
    for key in ("mean", "var", "rstd"):
        np.testing.assert_array_equal(got[key][stat_keep], ref[key][stat_keep])
    # the running statistics average every ghost batch: channel 1 is poisoned, 0 and 2 are not
    assert np.isnan(got["running_var"][1])
    np.testing.assert_array_equal(got["running_mean"][1], np.nan if np.isnan(bad) else bad)
    for key in ("running_mean", "running_var"):
        np.testing.assert_array_equal(got[key][[0, 2]], ref[key][[0, 2]])


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "error", "match"), [
    (4, ValueError, r"argument 'ghost_batch_size': got 4, expected a divisor of the batch "
                    r"size 6 \(x.shape\[0\]\) in training"),
    (12, ValueError, r"argument 'ghost_batch_size': got 12, expected a divisor"),
    (0, ValueError, r"argument 'ghost_batch_size': got 0, expected an integer >= 1"),
    (-2, ValueError, r"argument 'ghost_batch_size': got -2, expected an integer >= 1"),
    (2.0, TypeError, r"argument 'ghost_batch_size': got 2.0, expected an integer >= 1"),
    (True, TypeError, r"argument 'ghost_batch_size': got True, expected an integer >= 1"),
    (None, TypeError, r"argument 'ghost_batch_size': got None, expected an integer >= 1"),
])
def test_bad_ghost_batch_size_is_rejected(size: object, error: type[Exception],
                                          match: str) -> None:
    x = np.zeros((6, 3))
    with pytest.raises(error, match=match):
        gbn.forward(x, training=True, eps=EPS, ghost_batch_size=size)


def test_an_integer_ghost_batch_size_is_required_in_evaluation_too() -> None:
    with pytest.raises(ValueError, match=r"argument 'ghost_batch_size': got 0"):
        gbn.forward(np.zeros((5, 3)), training=False, eps=EPS, ghost_batch_size=0, **_state(3))


@pytest.mark.parametrize("axis", [0, -3])
def test_channel_axis_cannot_be_the_batch_axis(axis: int) -> None:
    with pytest.raises(ValueError, match=rf"argument 'channel_axis': got {axis}, expected an "
                                         r"axis other than the batch axis 0"):
        gbn.forward(np.zeros((4, 3, 2)), training=True, eps=EPS, ghost_batch_size=2,
                    channel_axis=axis)


def test_batch_norm_arguments_are_validated_as_in_batch_norm() -> None:
    x = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"argument 'eps'"):
        gbn.forward(x, training=True, eps=-1.0, ghost_batch_size=2)
    with pytest.raises(ValueError, match=r"argument 'weight': got shape \(2,\)"):
        gbn.forward(x, np.ones(2), training=True, eps=EPS, ghost_batch_size=2)
    with pytest.raises(ValueError, match=r"argument 'batch_stat_weight': got None while"):
        gbn.forward(x, training=True, eps=EPS, ghost_batch_size=2, **_state(3),
                    running_var_estimator="biased")
    with pytest.raises(ValueError, match=r"argument 'running_mean': got None with "
                                         r"training=False"):
        gbn.forward(x, training=False, eps=EPS, ghost_batch_size=2)


# --- layout -------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "c_axis", "size"), [
    ((4, 6, 3, 3), 1, 2), ((6, 2, 3), -1, 3), ((4, 3), 1, 1), ((4, 2, 3, 2), 2, 4)], ids=str)
def test_layout_labels_one_set_per_ghost_and_channel(shape: tuple[int, ...], c_axis: int,
                                                     size: int) -> None:
    labels = reduction_sets(gbn.layout(shape, ghost_batch_size=size, channel_axis=c_axis))
    channels = shape[c_axis]
    for idx in np.ndindex(*shape):
        assert labels[idx] == (idx[0] // size) * channels + idx[c_axis % len(shape)]
