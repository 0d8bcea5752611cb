"""Properties of fix_norm that the definition implies, beyond the mpmath proofs."""

from __future__ import annotations

import numpy as np
import pytest
from normspec.reference import fix_norm as fx
from normspec.reference import lp_norm as lp


def _x(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def test_it_is_weight_times_lp_norm_with_p_2() -> None:
    x = _x(3, 5, 4)
    got = fx.forward(x, 2.5, axis=1, eps=1e-12)
    want = lp.forward(x, p=2.0, axis=1, eps=1e-12)
    assert np.array_equal(got["y"], 2.5 * want["y"])
    assert np.array_equal(got["norm"], want["norm"])


def test_every_unclamped_vector_has_norm_abs_weight() -> None:
    y = fx.forward(_x(6, 9), -3.0, axis=-1, eps=1e-12)["y"]
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), 3.0, rtol=1e-15)


def test_the_weight_gradient_sums_over_every_vector() -> None:
    x, g = _x(4, 7), _x(4, 7, seed=1)
    got = fx.vjp(x, 1.5, cotangent=g, axis=-1, eps=1e-12)["weight"]
    unit = x / np.linalg.norm(x, axis=-1, keepdims=True)
    assert got.shape == ()
    assert got == pytest.approx(float(np.sum(g * unit)), rel=1e-14)


def test_the_x_gradient_is_lp_norms_scaled_by_the_weight() -> None:
    x, g = _x(3, 6), _x(3, 6, seed=2)
    got = fx.vjp(x, 2.0, cotangent=g, axis=0, eps=1e-12)["x"]
    want = lp.vjp(x, cotangent=2.0 * g, p=2.0, axis=0, eps=1e-12)["x"]
    assert np.array_equal(got, want)


def test_original_fixnorm_radius_r_is_a_constant_weight() -> None:
    # Nguyen & Chiang: the output embeddings fixed to norm r; r is not trained, so only the
    # x part of the VJP applies, and every row of y has norm r.
    emb, r = _x(10, 8), 5.0
    y = fx.forward(emb, r, axis=-1, eps=0.0)["y"]
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), r, rtol=1e-15)


def test_zero_vector_is_clamped_and_its_gradient_is_weight_g_over_eps() -> None:
    x = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 2.0]])
    g = np.array([[1.0, -2.0, 3.0], [0.0, 0.0, 0.0]])
    out = fx.forward(x, 2.0, axis=-1, eps=1e-5)
    assert out["y"][0].tolist() == [0.0, 0.0, 0.0]
    v = fx.vjp(x, 2.0, cotangent=g, axis=-1, eps=1e-5)
    np.testing.assert_allclose(v["x"][0], 2.0 * g[0] / 1e-5, rtol=1e-15)
    assert v["weight"] == 0.0


def test_zero_vector_with_eps_zero_is_nan_and_other_rows_are_untouched() -> None:
    x = np.array([[0.0, 0.0], [3.0, 4.0]])
    y = fx.forward(x, 1.0, axis=-1, eps=0.0)["y"]
    assert np.isnan(y[0]).all()
    assert y[1].tolist() == [0.6, 0.8]


def test_one_nonzero_element_gives_sign_times_weight() -> None:
    x = np.array([[0.0, -7.5, 0.0, 0.0]])
    assert fx.forward(x, 2.0, axis=-1, eps=1e-12)["y"].tolist() == [[0.0, -2.0, 0.0, 0.0]]


def test_scale_invariance_in_x_including_huge_and_tiny() -> None:
    x = _x(2, 5)
    base = fx.forward(x, 1.25, axis=-1, eps=0.0)["y"]
    for s in (2.0**-1000, 2.0**1000):
        np.testing.assert_allclose(fx.forward(x * s, 1.25, axis=-1, eps=0.0)["y"], base,
                                   rtol=1e-15)


def test_second_order_weight_part_is_the_jvp_of_the_unit_vectors() -> None:
    x, g, t = _x(3, 4), _x(3, 4, seed=3), _x(3, 4, seed=4)
    got = fx.second_order(x, 0.7, cotangent=g, tangent={"x": t}, axis=-1, eps=1e-12)
    want = np.sum(g * lp.jvp(x, tangent={"x": t}, p=2.0, axis=-1, eps=1e-12))
    assert got["weight"] == pytest.approx(float(want), rel=1e-13)
    # along the weight alone: d(vjp_x)/dw = lp_norm's vjp of g, d(vjp_w)/dw = 0
    only_w = fx.second_order(x, 0.7, cotangent=g, tangent={"weight": 2.0}, axis=-1, eps=1e-12)
    np.testing.assert_allclose(only_w["x"], 2.0 * lp.vjp(x, cotangent=g, p=2.0, axis=-1,
                                                         eps=1e-12)["x"], rtol=1e-15)
    assert only_w["weight"] == 0.0


@pytest.mark.parametrize("weight", [np.ones(1), np.ones((1, 1)), np.ones(3)])
def test_a_weight_that_is_not_a_scalar_is_rejected(weight: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"argument 'weight'.*expected shape \(\)"):
        fx.forward(_x(2, 3), weight, axis=-1, eps=1e-12)


def test_bad_eps_and_axis_are_rejected_naming_them() -> None:
    with pytest.raises(ValueError, match="eps"):
        fx.forward(_x(2, 3), 1.0, axis=-1, eps=-1.0)
    with pytest.raises(ValueError, match="axis"):
        fx.forward(_x(2, 3), 1.0, axis=2, eps=1e-12)
