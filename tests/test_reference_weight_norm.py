"""Properties of the weight_norm reference beyond the generic proofs: the kept-axis conventions,
scale invariance, the unit norm of each slice, the zero-norm rule and argument errors."""

from __future__ import annotations

import numpy as np
import pytest
from normspec.reference import weight_norm as wn

RNG = np.random.default_rng(1212)


def _pair(shape: tuple[int, ...], kept: int | str) -> tuple[np.ndarray, np.ndarray]:
    return RNG.standard_normal(shape), RNG.standard_normal(wn.g_shape(shape, kept))


@pytest.mark.parametrize(("shape", "kept"), [((4, 3, 2, 2), 0), ((5, 6), -1), ((5, 6), 1),
                                             ((3, 4, 5), 1), ((6, 5), "none"), ((7,), 0)])
def test_each_slice_has_norm_abs_g_without_eps(shape: tuple[int, ...], kept: int | str) -> None:
    x, g = _pair(shape, kept)
    y = wn.forward(x, g, kept_axis=kept, eps=0.0)["y"]
    kept_axes = wn.kept_axes(kept, len(shape))
    axes = tuple(i for i in range(len(shape)) if i not in kept_axes)
    norms = np.sqrt(np.sum(y * y, axis=axes, keepdims=True))
    np.testing.assert_allclose(norms, np.abs(g), rtol=1e-14)


def test_minus_one_is_the_last_axis_not_the_whole_tensor() -> None:
    # PyTorch's dim=-1 is the whole tensor; the spec's kept_axis=-1 is the last axis
    x, g = _pair((5, 6), -1)
    last = wn.forward(x, g, kept_axis=-1, eps=0.0)["y"]
    np.testing.assert_array_equal(last, wn.forward(x, g, kept_axis=1, eps=0.0)["y"])
    whole = wn.forward(x, np.ones((1, 1)), kept_axis="none", eps=0.0)["y"]
    np.testing.assert_allclose(whole, x / np.linalg.norm(x), rtol=1e-15)
    assert wn.g_shape((5, 6), -1) == (1, 6)
    assert wn.g_shape((5, 6), "none") == (1, 1)


def test_scaling_a_slice_changes_nothing_without_eps() -> None:
    x, g = _pair((4, 3, 3), 0)
    scaled = x * np.array([2.0**-40, 3.0, 1e20, 0.5])[:, None, None]
    np.testing.assert_allclose(wn.forward(scaled, g, kept_axis=0, eps=0.0)["y"],
                               wn.forward(x, g, kept_axis=0, eps=0.0)["y"], rtol=1e-15)


def test_the_gradient_of_v_is_orthogonal_to_v_per_slice_without_eps() -> None:
    x, g = _pair((4, 6), 0)
    gx = wn.vjp(x, g, cotangent=RNG.standard_normal(x.shape), kept_axis=0, eps=0.0)["x"]
    np.testing.assert_allclose(np.sum(gx * x, axis=1), 0.0, atol=1e-14)


def test_zero_slice_is_nan_without_eps_and_zero_with_it() -> None:
    x, g = _pair((3, 4), 0)
    x[1] = 0.0
    cot = RNG.standard_normal(x.shape)
    out = wn.forward(x, g, kept_axis=0, eps=0.0)
    assert np.isnan(out["y"][1]).all()
    assert np.isfinite(out["y"][[0, 2]]).all()
    assert out["norm"][1, 0] == 0.0
    grads = wn.vjp(x, g, cotangent=cot, kept_axis=0, eps=0.0)
    assert np.isnan(grads["x"][1]).all()
    assert np.isnan(grads["g"][1]).all()
    eps = 1e-12
    assert (wn.forward(x, g, kept_axis=0, eps=eps)["y"][1] == 0.0).all()
    grads = wn.vjp(x, g, cotangent=cot, kept_axis=0, eps=eps)
    np.testing.assert_allclose(grads["x"][1], g[1, 0] * cot[1] / np.sqrt(eps), rtol=1e-15)
    assert grads["g"][1, 0] == 0.0


def test_eps_is_added_to_the_squared_norm() -> None:
    x = np.array([[3.0, 4.0]])
    y = wn.forward(x, np.ones((1, 1)), kept_axis=0, eps=11.0)["y"]
    np.testing.assert_allclose(y, [[0.5, 2.0 / 3.0]], rtol=1e-15)  # 3 / sqrt(25 + 11)


def test_one_element_slices_give_g_sign_v_and_no_gradient() -> None:
    x = np.array([2.5, -1e-300, 7e200, -3.0])
    g = np.array([1.5, 2.0, -0.5, 0.25])
    assert wn.forward(x, g, kept_axis=0, eps=0.0)["y"].tolist() == (g * np.sign(x)).tolist()
    gx = wn.vjp(x, g, cotangent=np.ones(4), kept_axis=0, eps=0.0)["x"]
    assert (gx == 0.0).all()


def test_huge_and_tiny_slices_stay_in_range() -> None:
    x = np.array([[1e300, 1e300, -1e300], [1e-310, 3e-310, 0.0]])
    y = wn.forward(x, np.ones((2, 1)), kept_axis=0, eps=0.0)["y"]
    np.testing.assert_allclose(y[0], np.array([1, 1, -1]) / np.sqrt(3.0), rtol=1e-15)
    np.testing.assert_allclose(y[1], np.array([1, 3, 0]) / np.sqrt(10.0), rtol=1e-3)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"kept_axis": 2}, ValueError, "kept_axis"),
    ({"kept_axis": "all"}, ValueError, "kept_axis"),
    ({"kept_axis": 1.0}, TypeError, "kept_axis"),
    ({"kept_axis": 0, "eps": -1.0}, ValueError, "eps"),
])
def test_bad_hyperparameters_name_the_argument(kwargs: dict[str, object], error: type,
                                               match: str) -> None:
    hyper = {"eps": 0.0, **kwargs}
    with pytest.raises(error, match=match):
        wn.forward(np.ones((2, 3)), np.ones((2, 1)), **hyper)  # type: ignore[arg-type]


def test_g_shape_is_checked() -> None:
    with pytest.raises(ValueError, match=r"'g'.*expected shape \(1, 3\)"):
        wn.forward(np.ones((2, 3)), np.ones((3,)), kept_axis=1, eps=0.0)
    with pytest.raises(ValueError, match="'x'"):
        wn.forward(np.ones((0, 3)), np.ones((0, 1)), kept_axis=0, eps=0.0)
