"""batch_instance_norm: its two limits, the clip of rho and its slope, state, bad input.

The limits compare the reference with batch_norm and instance_norm (independently proven);
the clip's slope is checked against one-sided finite differences of the forward.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from normspec.reference import batch_instance_norm as bin_
from normspec.reference import batch_norm as bn
from normspec.reference import instance_norm as inorm

EPS = 1e-5
TRACK = {"batch_stat_weight": 0.1, "running_var_estimator": "unbiased", "num_batches_tracked": 2}


def _case(seed: int, shape: tuple[int, ...] = (3, 4, 2, 5), channel_axis: int = 1,
          training: bool = True, track: bool = False
          ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    """x, weight and bias, and the keywords: running statistics in evaluation or tracking."""
    rng = np.random.default_rng(seed)
    channels = shape[channel_axis]
    x = rng.normal(0.5, 2.0, shape)
    params = {"weight": rng.normal(1.0, 0.3, channels), "bias": rng.normal(0.0, 0.5, channels)}
    state = {"running_mean": rng.normal(0.0, 1.0, channels),
             "running_var": rng.uniform(0.5, 2.0, channels)}
    kw: dict[str, Any] = {"eps": EPS, "channel_axis": channel_axis, "training": training}
    if not training:
        kw.update(state)
    elif track:
        kw.update(state, **TRACK)
    return x, params, kw


def _checks(mod: Any, x: np.ndarray, primals: dict[str, np.ndarray], kw: dict[str, Any],
            seed: int, drop: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """y, jvp, vjp and second order; rho's tangent is drawn last, so the others' draws do not
    depend on whether the method has a rho."""
    rng = np.random.default_rng(seed)
    g = rng.standard_normal(x.shape)
    order = ("weight", "bias", "rho")
    t = {"x": rng.standard_normal(x.shape),
         **{k: rng.standard_normal(primals[k].shape) for k in order if k in primals}}
    t = {k: v for k, v in t.items() if k not in drop}
    out = {"y": mod.forward(x, **primals, **kw)["y"], "jvp": mod.jvp(x, **primals, tangent=t,
                                                                      **kw)}
    out.update({f"vjp/{k}": v for k, v in mod.vjp(x, **primals, cotangent=g, **kw).items()})
    out.update({f"so/{k}": v for k, v in mod.second_order(x, **primals, cotangent=g, tangent=t,
                                                          **kw).items()})
    return out


def _ordered(params: dict[str, np.ndarray], rho: np.ndarray) -> dict[str, np.ndarray]:
    return {"rho": rho, **params}


# --- the two limits -------------------------------------------------------------------------


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("channel_axis", [1, -1], ids=["channels-first", "channels-last"])
def test_rho_one_is_batch_norm(training: bool, channel_axis: int) -> None:
    x, params, kw = _case(1, channel_axis=channel_axis, training=training, track=True)
    channels = params["weight"].shape[0]
    # rho's tangent is dropped: at rho = 1 it moves y off batch_norm (a separate test)
    got = _checks(bin_, x, _ordered(params, np.ones(channels)), kw, 5, drop=("rho",))
    want = _checks(bn, x, params, kw, 5, drop=("rho",))
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-12, atol=1e-12, err_msg=key)
    if training:
        out = bin_.forward(x, np.ones(channels), **params, **kw)
        ref = bn.forward(x, **params, **kw)
        for key in ("mean", "var", "rstd", "running_mean", "running_var", "num_batches_tracked"):
            np.testing.assert_array_equal(out[key], ref[key], err_msg=key)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("channel_axis", [1, -1], ids=["channels-first", "channels-last"])
def test_rho_zero_is_instance_norm(training: bool, channel_axis: int) -> None:
    x, params, kw = _case(2, channel_axis=channel_axis, training=training)
    channels = params["weight"].shape[0]
    got = _checks(bin_, x, _ordered(params, np.zeros(channels)), kw, 6, drop=("rho",))
    want = _checks(inorm, x, params, {"eps": EPS, "channel_axis": channel_axis}, 6,
                   drop=("rho",))
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-12, atol=1e-12, err_msg=key)
    out = bin_.forward(x, np.zeros(channels), **params, **kw)
    ins = inorm.forward(x, **params, eps=EPS, channel_axis=channel_axis)
    for key in ("mean", "var", "rstd"):
        np.testing.assert_array_equal(out[f"instance_{key}"], ins[key])


def test_y_is_affine_in_the_clipped_gate() -> None:
    x, params, kw = _case(3, track=True)
    r = np.array([0.2, 0.5, 0.9, 0.35])
    blend = bin_.forward(x, r, **params, **kw)["y"]
    view = r.reshape(1, 4, 1, 1)
    ones, zeros = bin_.forward(x, np.ones(4), **params, **kw), bin_.forward(x, np.zeros(4),
                                                                           **params, **kw)
    np.testing.assert_allclose(blend, view * ones["y"] + (1 - view) * zeros["y"], rtol=1e-13,
                               atol=1e-13)


def test_batch_of_one_in_training_does_not_depend_on_rho() -> None:
    """With N = 1 the batch and the instance are the same set: z_bn == z_in."""
    x, params, kw = _case(4, shape=(1, 3, 7))
    a = bin_.forward(x, np.array([0.0, 0.3, 1.0]), **params, **kw)["y"]
    b = bin_.forward(x, np.array([1.0, 0.8, 0.0]), **params, **kw)["y"]
    np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)


# --- the clip and its slope -----------------------------------------------------------------


def test_rho_outside_the_interval_is_clipped_in_the_forward() -> None:
    x, params, kw = _case(5)
    outside = bin_.forward(x, np.array([-0.5, 1.5, -3.0, 7.0]), **params, **kw)["y"]
    ends = bin_.forward(x, np.array([0.0, 1.0, 0.0, 1.0]), **params, **kw)["y"]
    np.testing.assert_array_equal(outside, ends)


def _drho_one_sided(x: np.ndarray, rho: np.ndarray, params: dict[str, np.ndarray],
                    kw: dict[str, Any], g: np.ndarray, c: int, side: float) -> float:
    """Derivative of sum(g y) in rho[c] from one side, by a second-order one-sided difference."""
    h = 1e-4

    def f(s: float) -> float:
        r = rho.copy()
        r[c] += side * s
        return float(np.sum(g * bin_.forward(x, r, **params, **kw)["y"]))

    base = f(0.0)  # differences first: a flat side then gives exactly 0
    return side * (4 * (f(h) - base) - (f(2 * h) - base)) / (2 * h)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_clip_slope_is_one_on_the_closed_interval_and_zero_outside(training: bool) -> None:
    x, params, kw = _case(6, training=training)
    g = np.random.default_rng(16).standard_normal(x.shape)
    rho = np.array([0.0, 1.0, -0.25, 1.25])
    got = bin_.vjp(x, rho, **params, cotangent=g, **kw)["rho"]
    # at an end the gradient is the derivative from inside the interval (the unclipped one)
    inside_0 = _drho_one_sided(x, rho, params, kw, g, 0, +1.0)
    inside_1 = _drho_one_sided(x, rho, params, kw, g, 1, -1.0)
    np.testing.assert_allclose(got[:2], [inside_0, inside_1], rtol=1e-6)
    assert abs(inside_0) > 1e-3, "the end 0 must have a real gradient"
    assert abs(inside_1) > 1e-3, "the end 1 must have a real gradient"
    # from outside the clip is flat
    assert _drho_one_sided(x, rho, params, kw, g, 0, -1.0) == 0.0
    assert _drho_one_sided(x, rho, params, kw, g, 1, +1.0) == 0.0
    np.testing.assert_array_equal(got[2:], [0.0, 0.0])


def test_clip_slope_enters_jvp_and_second_order_alike() -> None:
    x, params, kw = _case(7)
    rng = np.random.default_rng(17)
    g = rng.standard_normal(x.shape)
    t = {"x": np.zeros_like(x), "rho": rng.standard_normal(4)}
    rho = np.array([0.0, 1.0, -0.25, 1.25])
    jv = bin_.jvp(x, rho, **params, tangent=t, **kw)
    grads = bin_.vjp(x, rho, **params, cotangent=g, **kw)
    # only rho moves: <g, jvp> = <drho, t_rho>, and the clipped channels contribute nothing
    assert abs(float(np.sum(g * jv)) - float(grads["rho"] @ t["rho"])) < 1e-11
    assert np.all(jv[:, 2:] == 0.0)
    so = bin_.second_order(x, rho, **params, cotangent=g, tangent=t, **kw)
    np.testing.assert_array_equal(so["rho"], np.zeros(4))   # y is linear in the clipped rho
    np.testing.assert_array_equal(so["weight"][2:], [0.0, 0.0])


def test_nan_rho_propagates_to_its_channel() -> None:
    x, params, kw = _case(8)
    rho = np.array([np.nan, 0.5, 0.5, 0.5])
    with np.errstate(all="raise"):
        out = bin_.forward(x, rho, **params, **kw)
        grads = bin_.vjp(x, rho, **params, cotangent=np.ones_like(x), **kw)
    assert np.isnan(out["y"][:, 0]).all()
    assert np.isfinite(out["y"][:, 1:]).all()
    assert np.isnan(grads["rho"][0])
    assert np.isfinite(grads["rho"][1:]).all()


# --- state ----------------------------------------------------------------------------------


def test_five_step_trajectory_then_eval_matches_batch_norm_state() -> None:
    rng = np.random.default_rng(9)
    batches = [rng.normal(k, 1.0 + k, (3, 2, 4)) for k in range(5)]
    rho = np.array([0.3, 0.8])
    state: dict[str, Any] = {"running_mean": np.zeros(2), "running_var": np.ones(2),
                             "num_batches_tracked": 0}
    hand_mean, hand_var = np.zeros(2), np.ones(2)
    for x in batches:
        out = bin_.forward(x, rho, training=True, eps=EPS, batch_stat_weight="cumulative",
                           running_var_estimator="biased", **state)
        state = {"running_mean": out["running_mean"], "running_var": out["running_var"],
                 "num_batches_tracked": int(out["num_batches_tracked"])}
        k = state["num_batches_tracked"]
        hand_mean = hand_mean + (x.mean(axis=(0, 2)) - hand_mean) / k
        hand_var = hand_var + (x.var(axis=(0, 2)) - hand_var) / k
    np.testing.assert_allclose(state["running_mean"], hand_mean, rtol=1e-13)
    np.testing.assert_allclose(state["running_var"], hand_var, rtol=1e-13)
    x = rng.normal(2.0, 1.5, (2, 2, 4))
    z_bn = (x - hand_mean.reshape(1, 2, 1)) / np.sqrt(hand_var.reshape(1, 2, 1) + EPS)
    z_in = (x - x.mean(axis=2, keepdims=True)) / np.sqrt(x.var(axis=2, keepdims=True) + EPS)
    r = rho.reshape(1, 2, 1)
    got = bin_.forward(x, rho, training=False, eps=EPS, running_mean=state["running_mean"],
                       running_var=state["running_var"])
    np.testing.assert_allclose(got["y"], r * z_bn + (1 - r) * z_in, rtol=1e-12, atol=1e-13)
    assert "running_mean" not in got


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "overrides", "error", "match"), [
    ((2, 3, 4), {"rho": None}, ValueError, r"argument 'rho': got None"),
    ((2, 3, 4), {"rho": np.ones(2)}, ValueError, r"argument 'rho': got shape \(2,\), expected "
                                                 r"shape \(3,\)"),
    ((2, 3, 4), {"rho": np.ones(3, dtype=int)}, TypeError, r"argument 'rho': got dtype int"),
    ((2, 3), {"rho": np.ones(3)}, ValueError, r"argument 'x': got an array of shape \(2, 3\)"),
    ((2, 3, 4), {"channel_axis": 0, "rho": np.ones(2)}, ValueError, r"argument 'channel_axis'"),
    ((2, 3, 4), {"training": False}, ValueError, r"argument 'running_mean': got None"),
    ((2, 3, 4), {"batch_stat_weight": 2.0, "running_mean": np.zeros(3),
                 "running_var": np.ones(3)}, ValueError, r"argument 'batch_stat_weight'"),
])
def test_bad_input_names_argument_and_value(shape: tuple[int, ...], overrides: dict[str, Any],
                                            error: type[Exception], match: str) -> None:
    x = np.random.default_rng(10).standard_normal(shape)
    kw: dict[str, Any] = {"rho": np.full(3, 0.5), "training": True, "eps": EPS, **overrides}
    with pytest.raises(error, match=match):
        bin_.forward(x, **kw)


# --- properties -----------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), training=st.booleans(),
       rho=st.lists(st.sampled_from([0.0, 1.0, -0.5, 1.5, 0.25, 0.75]), min_size=4, max_size=4))
def test_jvp_and_vjp_are_adjoint(seed: int, training: bool, rho: list[float]) -> None:
    x, params, kw = _case(seed, training=training)
    rng = np.random.default_rng(seed + 1)
    g = rng.standard_normal(x.shape)
    primals = _ordered(params, np.array(rho))
    t = {"x": rng.standard_normal(x.shape),
         **{k: rng.standard_normal(v.shape) for k, v in primals.items()}}
    lhs = float(np.sum(g * bin_.jvp(x, **primals, tangent=t, **kw)))
    grads = bin_.vjp(x, **primals, cotangent=g, **kw)
    rhs = sum(float(np.sum(grads[k] * t[k])) for k in grads)
    assert abs(lhs - rhs) <= 1e-11 * (1 + abs(lhs))
