"""lp_norm: the eps rule, kinks, NaN/Inf propagation, bad input and properties.

Expected values are written from the definition on the spec page (``x / max(||x||_p, eps)``)
with plain NumPy or exact small-integer arithmetic, never taken from the reference itself.
"""

from __future__ import annotations

import math
import re
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from normspec.reference import lp_norm

FAST = settings(max_examples=50, deadline=None)


def _np_norm(x: np.ndarray, p: float, axis: int) -> np.ndarray:
    return np.sum(np.abs(x) ** p, axis=axis) ** (1.0 / p)


# --- the definition -----------------------------------------------------------------------


@pytest.mark.parametrize("p", [1.0, 1.5, 2.0, 3.0, 7.0])
def test_unclamped_output_has_unit_p_norm(p: float) -> None:
    x = np.random.default_rng(1).standard_normal((5, 11))
    y = lp_norm.forward(x, p=p, axis=-1, eps=1e-12)["y"]
    for row in y:
        assert math.fsum(abs(v) ** p for v in row.tolist()) == pytest.approx(1.0, abs=1e-14)


def test_norm_statistic_matches_numpy() -> None:
    x = np.random.default_rng(2).standard_normal((4, 3, 6))
    out = lp_norm.forward(x, p=3.0, axis=1, eps=1e-12)
    assert out["norm"].shape == (4, 6)
    np.testing.assert_allclose(out["norm"], _np_norm(x, 3.0, 1), rtol=1e-14)


def test_small_exact_values() -> None:
    out = lp_norm.forward(np.array([[3.0, -4.0], [5.0, 12.0]]), p=2, axis=1, eps=1e-12)
    assert out["norm"].tolist() == [5.0, 13.0]
    assert out["y"].tolist() == [[3 / 5, -4 / 5], [5 / 13, 12 / 13]]


def test_clamped_branch_equals_x_over_eps() -> None:
    x = 1e-3 * np.random.default_rng(3).standard_normal((3, 5))
    for eps in (0.5, 1.0, 3.0):
        out = lp_norm.forward(x, p=2.0, axis=-1, eps=eps)
        assert np.all(out["norm"] < eps)
        assert np.array_equal(out["y"], x / eps)


def test_clamped_branch_is_linear() -> None:
    x = 1e-3 * np.random.default_rng(4).standard_normal((2, 5))
    g, t = np.random.default_rng(5).standard_normal((2, 2, 5))
    eps = 0.25
    assert np.array_equal(lp_norm.jvp(x, tangent={"x": t}, p=2, axis=-1, eps=eps), t / eps)
    assert np.array_equal(lp_norm.vjp(x, cotangent=g, p=2, axis=-1, eps=eps)["x"], g / eps)
    hvp = lp_norm.second_order(x, cotangent=g, tangent={"x": t}, p=2, axis=-1, eps=eps)["x"]
    assert not np.any(hvp)


def test_zero_vector_with_positive_eps_is_zero_with_gradient_over_eps() -> None:
    # PyTorch's F.normalize: at x = 0 the gradient is 1/eps (pytorch#184575).
    x = np.zeros((1, 4))
    g = np.array([[1.0, -2.0, 0.5, 4.0]])
    out = lp_norm.forward(x, p=2, axis=-1, eps=1e-12)
    assert np.array_equal(out["y"], x)
    assert out["norm"].tolist() == [0.0]
    assert np.array_equal(lp_norm.vjp(x, cotangent=g, p=2, axis=-1, eps=1e-12)["x"], g / 1e-12)


def test_norm_equal_to_eps_uses_the_unclamped_branch() -> None:
    s = 2.0**-20
    x, eps = np.array([3.0 * s, -4.0 * s]), 5.0 * s  # ||x||_2 == eps exactly
    t = np.array([1.0, 1.0])
    y = lp_norm.forward(x, p=2, axis=0, eps=eps)["y"]
    assert y.tolist() == [0.6, -0.8]
    # d(x/||x||) = (t - y (y.t)) / ||x||, which differs from the clamped t / eps here.
    want = (t - np.array([0.6, -0.8]) * (0.6 - 0.8)) / eps
    got = lp_norm.jvp(x, tangent={"x": t}, p=2, axis=0, eps=eps)
    np.testing.assert_allclose(got, want, rtol=1e-15)
    assert not np.allclose(got, t / eps)


def test_norm_just_below_eps_is_clamped() -> None:
    s = 2.0**-20
    x, eps = np.array([3.0 * s, -4.0 * s]), np.nextafter(5.0 * s, 1.0)
    t = np.array([1.0, 1.0])
    assert np.array_equal(lp_norm.jvp(x, tangent={"x": t}, p=2, axis=0, eps=eps), t / eps)


def test_large_p_tends_to_the_max_norm() -> None:
    x = np.array([0.5, -3.0, 2.0, 2.9])
    norm = lp_norm.forward(x, p=1e4, axis=0, eps=0.0)["norm"]
    # max|x| <= ||x||_p <= n^(1/p) max|x|
    assert 3.0 <= float(norm) <= 3.0 * 4 ** 1e-4


def test_p1_derivative_at_zero_uses_sign_zero() -> None:
    # With sign(0) = 0 the derivative at the kink is the mean of the one-sided slopes, which
    # is what a symmetric difference returns: y_0(s) = s / (|s| + 3) is odd, y_1 and y_2 even.
    x = np.array([0.0, 1.0, -2.0])
    e0 = np.array([1.0, 0.0, 0.0])
    h = 1e-9

    def f(s: float) -> np.ndarray:
        return lp_norm.forward(x + s * e0, p=1, axis=0, eps=0.0)["y"]

    central = (f(h) - f(-h)) / (2 * h)
    got = lp_norm.jvp(x, tangent={"x": e0}, p=1, axis=0, eps=0.0)
    np.testing.assert_allclose(got, central, rtol=1e-8, atol=1e-9)
    assert got.tolist() == [1 / 3, 0.0, 0.0]


def test_second_order_is_nan_at_zero_elements_for_p_between_1_and_2() -> None:
    x = np.array([[0.0, 1.0, -2.0, 0.5]])
    g, t = np.random.default_rng(6).standard_normal((2, 1, 4))
    hvp = lp_norm.second_order(x, cotangent=g, tangent={"x": t}, p=1.5, axis=-1, eps=0.0)["x"]
    assert np.isnan(hvp[0, 0])
    assert np.all(np.isfinite(hvp[0, 1:]))
    for p in (1.0, 2.0, 3.0):
        hvp = lp_norm.second_order(x, cotangent=g, tangent={"x": t}, p=p, axis=-1, eps=0.0)["x"]
        assert np.all(np.isfinite(hvp)), f"p={p}"


def test_empty_batch_is_allowed() -> None:
    out = lp_norm.forward(np.zeros((0, 3)), p=2, axis=1, eps=1e-12)
    assert out["y"].shape == (0, 3)
    assert out["norm"].shape == (0,)


def test_bfloat16_input_equals_float64_of_the_rounded_values() -> None:
    x16 = np.random.default_rng(7).standard_normal((3, 5)).astype(ml_dtypes.bfloat16)
    got = lp_norm.forward(x16, p=2, axis=-1, eps=1e-12)["y"]
    assert got.dtype == np.float64
    assert np.array_equal(got, lp_norm.forward(x16.astype(np.float64), p=2, axis=-1,
                                               eps=1e-12)["y"])


# --- range and IEEE propagation -----------------------------------------------------------


def test_subnormal_input_is_normalized_exactly() -> None:
    tiny = 5e-324  # the smallest subnormal
    out = lp_norm.forward(np.array([3 * tiny, 4 * tiny]), p=2, axis=0, eps=0.0)
    assert out["y"].tolist() == [0.6, 0.8]
    assert float(out["norm"]) == 5 * tiny


def test_norm_overflow_keeps_y_finite() -> None:
    x = np.full(4, 1e308)  # ||x||_2 = 2e308 is beyond float64, y = 0.5 is not
    out = lp_norm.forward(x, p=2, axis=0, eps=1e-12)
    assert float(out["norm"]) == np.inf
    assert out["y"].tolist() == [0.5] * 4


def test_zero_vector_with_eps_zero_is_nan() -> None:
    x = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 2.0]])
    out = lp_norm.forward(x, p=2, axis=-1, eps=0.0)
    assert np.all(np.isnan(out["y"][0]))
    assert out["norm"][0] == 0.0
    assert out["y"][1].tolist() == [1 / 3, 2 / 3, 2 / 3]
    g = np.ones_like(x)
    assert np.all(np.isnan(lp_norm.vjp(x, cotangent=g, p=2, axis=-1, eps=0.0)["x"][0]))


def test_nan_poisons_its_vector_only() -> None:
    x = np.array([[1.0, np.nan, 2.0], [1.0, 2.0, 2.0]])
    out = lp_norm.forward(x, p=2, axis=-1, eps=1e-12)
    assert np.all(np.isnan(out["y"][0]))
    assert np.isnan(out["norm"][0])
    assert np.all(np.isfinite(out["y"][1]))


def test_inf_gives_inf_norm_nan_at_inf_and_zero_elsewhere() -> None:
    x = np.array([-np.inf, 1.0, -2.0])
    for p in (1.0, 2.0, 3.0):
        out = lp_norm.forward(x, p=p, axis=0, eps=1e-12)
        assert float(out["norm"]) == np.inf
        assert np.isnan(out["y"][0])
        assert out["y"][1:].tolist() == [0.0, -0.0]


# --- bad input ----------------------------------------------------------------------------

GOOD: dict[str, Any] = {"p": 2.0, "axis": -1, "eps": 1e-12}
BAD_HYPER = [
    ("p", 0.5, ValueError), ("p", 0, ValueError), ("p", float("inf"), ValueError),
    ("p", float("nan"), ValueError), ("p", "2", TypeError), ("p", True, TypeError),
    ("eps", -1e-12, ValueError), ("eps", float("inf"), ValueError),
    ("eps", float("nan"), ValueError), ("eps", None, TypeError),
    ("axis", 2, ValueError), ("axis", -3, ValueError), ("axis", 1.0, TypeError),
]


@pytest.mark.parametrize(("name", "value", "error"), BAD_HYPER,
                         ids=[f"{n}={v!r}" for n, v, _ in BAD_HYPER])
def test_bad_hyperparameter_is_named(name: str, value: object, error: type[Exception]) -> None:
    x = np.ones((2, 3))
    with pytest.raises(error, match=rf"'{name}'.*{re.escape(str(value))}"):
        lp_norm.forward(x, **{**GOOD, name: value})


BAD_X = [
    ("int", np.ones((2, 3), dtype=np.int64), TypeError, "int64"),
    ("bool", np.ones((2, 3), dtype=bool), TypeError, "bool"),
    ("complex", np.ones((2, 3), dtype=np.complex128), TypeError, "complex128"),
    ("0-d", np.float64(1.0), ValueError, "shape ()"),
    ("empty-reduction", np.ones((3, 0)), ValueError, "(3, 0)"),
]


@pytest.mark.parametrize(("x", "error", "shown"), [b[1:] for b in BAD_X],
                         ids=[b[0] for b in BAD_X])
def test_bad_x_is_named(x: np.ndarray, error: type[Exception], shown: str) -> None:
    with pytest.raises(error, match=rf"'x'.*{re.escape(shown)}"):
        lp_norm.forward(x, **GOOD)


def test_bad_cotangent_and_tangent_are_named() -> None:
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match=r"'cotangent'.*\(3, 2\)"):
        lp_norm.vjp(x, cotangent=np.ones((3, 2)), **GOOD)
    with pytest.raises(ValueError, match=r"'tangent'.*'weight'"):
        lp_norm.jvp(x, tangent={"weight": np.ones(3)}, **GOOD)
    with pytest.raises(TypeError, match=r"'cotangent'.*int64"):
        lp_norm.vjp(x, cotangent=np.ones((2, 3), dtype=np.int64), **GOOD)


# --- properties ---------------------------------------------------------------------------

_values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_subnormal=False)
_matrices = arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 9)), elements=_values)
_ps = st.sampled_from([1.0, 1.5, 2.0, 3.0, 4.5])


def _unclamped(x: np.ndarray) -> bool:
    return bool(np.all(np.max(np.abs(x), axis=1) > 1e-3))


@FAST
@given(x=_matrices, p=_ps)
def test_property_unit_norm(x: np.ndarray, p: float) -> None:
    assume(_unclamped(x))
    y = lp_norm.forward(x, p=p, axis=1, eps=1e-12)["y"]
    np.testing.assert_allclose(np.sum(np.abs(y) ** p, axis=1), 1.0, rtol=1e-13)


@FAST
@given(x=_matrices, p=_ps, k=st.integers(-200, 200), c=st.floats(1e-3, 1e3))
def test_property_positive_scale_invariance(x: np.ndarray, p: float, k: int, c: float) -> None:
    assume(_unclamped(x))
    x = np.where(np.abs(x) < 1e-200, 0.0, x)  # so that 2^k x stays exact (no subnormals)
    y = lp_norm.forward(x, p=p, axis=1, eps=0.0)["y"]
    # Powers of two scale exactly, and so does the result.
    assert np.array_equal(lp_norm.forward(np.ldexp(x, k), p=p, axis=1, eps=0.0)["y"], y)
    np.testing.assert_allclose(lp_norm.forward(c * x, p=p, axis=1, eps=0.0)["y"], y,
                               rtol=1e-14, atol=1e-15)


@FAST
@given(x=_matrices, p=_ps, seed=st.integers(0, 2**32 - 1))
def test_property_permutation_equivariance(x: np.ndarray, p: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows, cols = rng.permutation(x.shape[0]), rng.permutation(x.shape[1])
    y = lp_norm.forward(x, p=p, axis=1, eps=1e-12)["y"]
    # Along the kept axis, and (the sums being correctly rounded) along the normalized one.
    assert np.array_equal(lp_norm.forward(x[rows], p=p, axis=1, eps=1e-12)["y"], y[rows])
    assert np.array_equal(lp_norm.forward(x[:, cols], p=p, axis=1, eps=1e-12)["y"], y[:, cols])
    assert np.array_equal(lp_norm.forward(x.T, p=p, axis=0, eps=1e-12)["y"], y.T)


@FAST
@given(x=_matrices, p=_ps)
def test_property_odd_symmetry(x: np.ndarray, p: float) -> None:
    y = lp_norm.forward(x, p=p, axis=1, eps=1e-12)["y"]
    assert np.array_equal(lp_norm.forward(-x, p=p, axis=1, eps=1e-12)["y"], -y)


@FAST
@given(x=_matrices, p=st.sampled_from([1.0, 2.0, 3.0]), seed=st.integers(0, 2**32 - 1),
       eps=st.sampled_from([0.0, 1e-12, 10.0]))
def test_property_vjp_is_the_adjoint_of_jvp(x: np.ndarray, p: float, seed: int,
                                            eps: float) -> None:
    assume(_unclamped(x))
    g, t = np.random.default_rng(seed).standard_normal((2, *x.shape))
    jv = lp_norm.jvp(x, tangent={"x": t}, p=p, axis=1, eps=eps)
    vj = lp_norm.vjp(x, cotangent=g, p=p, axis=1, eps=eps)["x"]
    lhs, rhs = math.fsum((g * jv).ravel()), math.fsum((t * vj).ravel())
    scale = float(np.sum(np.abs(g * jv)) + np.sum(np.abs(t * vj)))
    assert abs(lhs - rhs) <= 1e-13 * scale


@FAST
@given(x=_matrices, p=st.sampled_from([1.0, 2.0, 3.0]), seed=st.integers(0, 2**32 - 1))
def test_property_second_order_is_symmetric(x: np.ndarray, p: float, seed: int) -> None:
    # The Hessian of sum(g * y) is symmetric: t2 . H t1 == t1 . H t2.
    assume(_unclamped(x))
    g, t1, t2 = np.random.default_rng(seed).standard_normal((3, *x.shape))
    h1 = lp_norm.second_order(x, cotangent=g, tangent={"x": t1}, p=p, axis=1, eps=0.0)["x"]
    h2 = lp_norm.second_order(x, cotangent=g, tangent={"x": t2}, p=p, axis=1, eps=0.0)["x"]
    lhs, rhs = math.fsum((t2 * h1).ravel()), math.fsum((t1 * h2).ravel())
    scale = float(np.sum(np.abs(t2 * h1)) + np.sum(np.abs(t1 * h2)))
    assert abs(lhs - rhs) <= 1e-12 * scale


# --- framework cross-check ----------------------------------------------------------------


@pytest.mark.torch
@pytest.mark.parametrize("p", [1.0, 1.5, 2.0, 3.0])
def test_matches_torch_normalize_in_float64(p: float) -> None:
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(8).standard_normal((3, 4, 5))
    x[0, :, 0] = 1e-14  # a clamped vector along dim 1
    want = torch.nn.functional.normalize(torch.from_numpy(x), p=p, dim=1, eps=1e-12).numpy()
    got = lp_norm.forward(x, p=p, axis=1, eps=1e-12)["y"]
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-300)
