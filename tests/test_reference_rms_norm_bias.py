"""Properties of rms_norm's optional bias: y = weight * xhat + bias, absent by default."""

from __future__ import annotations

import numpy as np
import pytest
from normspec.reference import rms_norm

RNG = np.random.default_rng(12)
X = RNG.normal(size=(2, 3, 5))
W = RNG.normal(1.0, 0.5, (5,))
B = RNG.normal(size=(5,))
G = RNG.normal(size=X.shape)


def test_absent_bias_is_zero_bias_bit_for_bit() -> None:
    plain = rms_norm.forward(X, W, axis=-1, eps=1e-6)
    zero = rms_norm.forward(X, W, np.zeros(5), axis=-1, eps=1e-6)
    assert all(np.array_equal(plain[k], zero[k]) for k in plain)


def test_bias_is_added_after_the_scale() -> None:
    plain = rms_norm.forward(X, W, axis=-1, eps=1e-6)["y"]
    biased = rms_norm.forward(X, W, B, axis=-1, eps=1e-6)["y"]
    np.testing.assert_array_equal(biased, plain + B)  # not W * (xhat + B)


def test_bias_leaves_the_statistics_and_the_x_gradient_alone() -> None:
    a = rms_norm.forward(X, W, axis=-1, eps=1e-6)
    b = rms_norm.forward(X, W, B, axis=-1, eps=1e-6)
    assert np.array_equal(a["rrms"], b["rrms"])
    assert np.array_equal(a["mean_square"], b["mean_square"])
    ga = rms_norm.vjp(X, W, cotangent=G, axis=-1, eps=1e-6)
    gb = rms_norm.vjp(X, W, B, cotangent=G, axis=-1, eps=1e-6)
    np.testing.assert_array_equal(gb["x"], ga["x"])
    np.testing.assert_array_equal(gb["weight"], ga["weight"])


def test_bias_gradient_sums_over_every_leading_axis() -> None:
    grads = rms_norm.vjp(X, None, B, cotangent=G, axis=-1, eps=1e-6)
    np.testing.assert_allclose(grads["bias"], G.sum(axis=(0, 1)), rtol=1e-15)
    two_axes = rms_norm.vjp(X, None, np.zeros((3, 5)), cotangent=G, axis=1, eps=1e-6)
    np.testing.assert_allclose(two_axes["bias"], G.sum(axis=0), rtol=1e-15)


def test_bias_tangent_and_second_order() -> None:
    tb = RNG.normal(size=5)
    jvp = rms_norm.jvp(X, W, B, tangent={"bias": tb}, axis=-1, eps=1e-6)
    np.testing.assert_array_equal(jvp, np.broadcast_to(tb, X.shape))
    so = rms_norm.second_order(X, W, B, cotangent=G, tangent={"x": X, "bias": tb}, axis=-1,
                               eps=1e-6)
    np.testing.assert_array_equal(so["bias"], np.zeros(5))


def test_zero_rows_give_the_bias() -> None:
    y = rms_norm.forward(np.zeros((2, 5)), W, B, axis=-1, eps=1e-6)["y"]
    np.testing.assert_array_equal(y, np.broadcast_to(B, (2, 5)))


def test_wrong_bias_shape_names_the_argument() -> None:
    with pytest.raises(ValueError, match="'bias'"):
        rms_norm.forward(X, W, np.zeros(4), axis=-1, eps=1e-6)
