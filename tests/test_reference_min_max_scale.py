"""Properties of the min_max_scale reference: fit/apply, zero range, clip, tie subgradients."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from normspec.reference import min_max_scale as S

BASE: dict[str, Any] = {"axis": [0], "range_min": 0.0, "range_max": 1.0, "clip": False}


def _rng() -> np.random.Generator:
    return np.random.default_rng(5)


def test_fit_maps_the_extremes_onto_the_range() -> None:
    x = _rng().normal(size=(9, 3))
    out = S.forward(x, training=True, **{**BASE, "range_min": -2.0, "range_max": 3.0})
    np.testing.assert_allclose(out["y"].min(axis=0), -2.0, atol=1e-15)
    np.testing.assert_allclose(out["y"].max(axis=0), 3.0, atol=1e-15)
    np.testing.assert_array_equal(out["data_min"], x.min(axis=0))
    np.testing.assert_array_equal(out["data_max"], x.max(axis=0))


def test_apply_uses_the_given_extremes_and_a_fit_replaces_the_state() -> None:
    x = _rng().normal(size=(4, 2))
    lo, hi = np.array([-1.0, 0.0]), np.array([1.0, 4.0])
    y = S.forward(x, training=False, **BASE, data_min=lo, data_max=hi)["y"]
    np.testing.assert_allclose(y, (x - lo) / (hi - lo), rtol=1e-15)
    fit = S.forward(x, training=True, **BASE, data_min=lo, data_max=hi)
    np.testing.assert_array_equal(fit["y"], S.forward(x, training=True, **BASE)["y"])


def test_zero_range_maps_to_range_min_as_scikit_learn() -> None:
    out = S.forward(np.full((4, 2), 3.0), training=True, **{**BASE, "range_min": -1.0})
    np.testing.assert_array_equal(out["y"], -1.0)
    x = _rng().normal(size=(3, 2))
    y = S.forward(x, training=False, **BASE, data_min=np.zeros(2), data_max=np.zeros(2))["y"]
    np.testing.assert_array_equal(y, x)


def test_clip_cuts_with_slope_zero_and_keeps_nan() -> None:
    x = np.array([[-5.0], [0.5], [5.0], [np.nan]])
    hyper = {**BASE, "clip": True, "training": False, "data_min": np.array([0.0]),
             "data_max": np.array([1.0])}
    y = S.forward(x, **hyper)["y"]
    np.testing.assert_array_equal(y[:3, 0], [0.0, 0.5, 1.0])
    assert np.isnan(y[3, 0])
    g = np.ones_like(x)
    np.testing.assert_array_equal(S.vjp(x, cotangent=g, **hyper)["x"][:, 0], [0, 1, 0, 1])


def test_tied_extremes_split_the_subgradient() -> None:
    x = np.array([[1.0], [3.0], [1.0], [2.0]])
    hyper = {**BASE, "training": True}
    # moving both tied minima together equals moving the min: y of the third value changes
    t = np.array([[1.0], [0.0], [1.0], [0.0]])
    jt = S.jvp(x, tangent={"x": t}, **hyper)
    eps = 1e-7
    fd = (S.forward(x + eps * t, **hyper)["y"] - S.forward(x - eps * t, **hyper)["y"]) / (2 * eps)
    np.testing.assert_allclose(jt, fd, atol=1e-8)
    g = np.array([[0.0], [0.0], [0.0], [1.0]])
    grad = S.vjp(x, cotangent=g, **hyper)["x"][:, 0]
    assert grad[0] == grad[2]   # each tied minimum gets half
    np.testing.assert_allclose(grad.sum(), 0.0, atol=1e-15)   # y is shift-invariant


def test_constant_feature_takes_the_branch_derivative() -> None:
    x = np.full((5, 1), 2.0)
    t = _rng().normal(size=x.shape)
    hyper = {**BASE, "range_min": -1.0, "range_max": 1.0, "training": True}
    np.testing.assert_allclose(S.jvp(x, tangent={"x": t}, **hyper), 2.0 * (t - t.mean()),
                               atol=1e-15)


@pytest.mark.parametrize(("change", "message"), [
    ({"range_min": 1.0, "range_max": 1.0}, "range_min < range_max"),
    ({"clip": 1}, "clip"),
    ({"axis": [0, 0]}, "distinct"),
    ({"training": False}, "data_min"),
    ({"data_min": np.zeros(4)}, "data_min"),
])
def test_bad_arguments_name_themselves(change: dict[str, Any], message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        S.forward(_rng().normal(size=(4, 3)), **{**BASE, "training": True, **change})
