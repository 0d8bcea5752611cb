"""Properties of scale_norm that the definition implies, beyond the mpmath proofs."""

from __future__ import annotations

import numpy as np
import pytest
from normspec.reference import fix_norm as fx
from normspec.reference import scale_norm as sn


def _x(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def test_each_module_is_fix_norm_along_the_last_axis_with_the_same_weight() -> None:
    x = _x(3, 2, 5)
    y = sn.forward(x, 1.5, eps=1e-5)["y"]
    for m in range(3):
        np.testing.assert_array_equal(y[m], fx.forward(x[m], 1.5, axis=-1, eps=1e-5)["y"])


def test_the_shared_weight_gradient_is_the_sum_of_the_module_gradients() -> None:
    x, g = _x(4, 3, 6), _x(4, 3, 6, seed=1)
    per_module = sn.module_weight_gradients(x, 2.0, cotangent=g, eps=1e-5)
    assert per_module.shape == (4,)
    for m in range(4):
        alone = fx.vjp(x[m], 2.0, cotangent=g[m], axis=-1, eps=1e-5)["weight"]
        assert per_module[m] == pytest.approx(float(alone), rel=1e-14)
    total = sn.vjp(x, 2.0, cotangent=g, eps=1e-5)["weight"]
    assert total == pytest.approx(float(np.sum(per_module)), rel=1e-14)
    # one parameter used by M modules: not the mean, not the first module's
    assert abs(total - per_module[0]) > 1e-3
    assert abs(total - np.mean(per_module)) > 1e-3


def test_x_gradient_of_a_module_depends_only_on_its_own_input() -> None:
    x, g = _x(3, 2, 4), _x(3, 2, 4, seed=2)
    base = sn.vjp(x, 1.0, cotangent=g, eps=1e-5)["x"]
    moved = x.copy()
    moved[2] *= 7.0
    moved[2, 0, 0] += 1.0
    got = sn.vjp(moved, 1.0, cotangent=g, eps=1e-5)["x"]
    np.testing.assert_array_equal(got[:2], base[:2])


def test_eps_clamps_the_norm_as_the_paper_code_does() -> None:
    x = np.array([[[3e-6, 4e-6]], [[3.0, 4.0]]])
    y = sn.forward(x, 1.0, eps=1e-5)["y"]
    np.testing.assert_allclose(y[0], [[0.3, 0.4]], rtol=1e-15)  # x / eps, not x / (norm + eps)
    np.testing.assert_allclose(y[1], [[0.6, 0.8]], rtol=1e-15)


def test_zero_vector_and_eps_zero() -> None:
    x = np.zeros((2, 1, 3))
    assert sn.forward(x, 1.0, eps=1e-5)["y"].tolist() == [[[0.0] * 3]] * 2
    assert np.isnan(sn.forward(x, 1.0, eps=0.0)["y"]).all()


def test_a_single_module_is_allowed_and_a_1d_input_is_not() -> None:
    assert sn.forward(_x(1, 4), 1.0, eps=1e-5)["y"].shape == (1, 4)
    with pytest.raises(ValueError, match="argument 'x'"):
        sn.forward(_x(4), 1.0, eps=1e-5)


def test_weight_must_be_a_scalar() -> None:
    with pytest.raises(ValueError, match="argument 'weight'"):
        sn.forward(_x(2, 3), np.ones(2), eps=1e-5)
