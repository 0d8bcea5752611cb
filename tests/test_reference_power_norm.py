"""Properties of power_norm: its p = 2 case is rms_norm, its relation to lp_norm, conventions."""

from __future__ import annotations

import numpy as np
import pytest
from normspec.reference import lp_norm, power_norm, rms_norm

RNG = np.random.default_rng(21)
X = RNG.normal(size=(3, 4, 5))
W = RNG.normal(1.0, 0.5, (4, 5))
B = RNG.normal(size=(4, 5))
G = RNG.normal(size=X.shape)
T = {"x": RNG.normal(size=X.shape), "weight": RNG.normal(size=W.shape),
     "bias": RNG.normal(size=B.shape)}
PS = (0.25, 0.5, 1.0, 1.5, 3.0, 4.0)


@pytest.mark.parametrize("eps", [1e-5, 0.0, 1.0])
def test_p2_is_rms_norm_bit_for_bit(eps: float) -> None:
    got = power_norm.forward(X, W, B, p=2.0, axis=1, eps=eps)
    want = rms_norm.forward(X, W, B, axis=1, eps=eps)
    assert np.array_equal(got["y"], want["y"])
    assert np.array_equal(got["mean_power"], want["mean_square"])
    assert np.array_equal(got["rscale"], want["rrms"])
    gv = power_norm.vjp(X, W, B, cotangent=G, p=2, axis=1, eps=eps)
    wv = rms_norm.vjp(X, W, B, cotangent=G, axis=1, eps=eps)
    assert all(np.array_equal(gv[k], wv[k]) for k in wv)
    assert np.array_equal(power_norm.jvp(X, W, B, tangent=T, p=2, axis=1, eps=eps),
                          rms_norm.jvp(X, W, B, tangent=T, axis=1, eps=eps))
    gs = power_norm.second_order(X, W, B, cotangent=G, tangent=T, p=2, axis=1, eps=eps)
    ws = rms_norm.second_order(X, W, B, cotangent=G, tangent=T, axis=1, eps=eps)
    assert all(np.array_equal(gs[k], ws[k]) for k in ws)


def test_general_formula_is_continuous_at_p2() -> None:
    """The p != 2 code path just beside p = 2 agrees with rms_norm (no seam at the dispatch)."""
    near = 2.0 + 1e-9
    want = rms_norm.forward(X, W, B, axis=1, eps=1e-5)["y"]
    np.testing.assert_allclose(power_norm.forward(X, W, B, p=near, axis=1, eps=1e-5)["y"],
                               want, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(
        power_norm.second_order(X, W, B, cotangent=G, tangent=T, p=near, axis=1,
                                eps=1e-5)["x"],
        rms_norm.second_order(X, W, B, cotangent=G, tangent=T, axis=1, eps=1e-5)["x"],
        rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("p", PS)
def test_definition_on_a_row(p: float) -> None:
    x = np.array([[0.5, -2.0, 3.0]])
    out = power_norm.forward(x, p=p, axis=-1, eps=0.25)
    mean_power = np.mean(np.abs(x) ** p)
    np.testing.assert_allclose(out["mean_power"], [mean_power], rtol=1e-15)
    np.testing.assert_allclose(out["y"], x * (mean_power + 0.25) ** (-1 / p), rtol=1e-15)


@pytest.mark.parametrize("p", [1.0, 1.5, 3.0, 4.0])
def test_eps0_is_lp_norm_times_n_to_the_1_over_p(p: float) -> None:
    """Mean vs sum: with eps = 0, power_norm = n^(1/p) x / ||x||_p = n^(1/p) lp_norm(x)."""
    x = RNG.normal(size=(4, 6))
    got = power_norm.forward(x, p=p, axis=-1, eps=0.0)["y"]
    want = 6 ** (1 / p) * lp_norm.forward(x, p=p, axis=-1, eps=0.0)["y"]
    np.testing.assert_allclose(got, want, rtol=1e-14)


@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize("scale", [1e-200, 3.0, 1e200])
def test_scale_invariance_without_eps(p: float, scale: float) -> None:
    y = power_norm.forward(X, p=p, axis=1, eps=0.0)["y"]
    np.testing.assert_allclose(power_norm.forward(scale * X, p=p, axis=1, eps=0.0)["y"], y,
                               rtol=1e-14)
    np.testing.assert_allclose(power_norm.forward(-X, p=p, axis=1, eps=0.0)["y"], -y,
                               rtol=0)


@pytest.mark.parametrize("p", PS)
def test_zero_elements_have_finite_derivatives(p: float) -> None:
    """phi'(0) = 0 and phi''(0) = 0 (p != 2): a zero element contributes nothing to the
    statistic's derivative, so even p < 1 gives finite gradients (no 0 * inf)."""
    x = np.array([[0.0, 1.5, -0.5, 0.0, 2.0]])
    g = np.array([[0.3, -1.0, 2.0, 0.7, 0.1]])
    t = {"x": np.array([[1.0, 0.5, -0.2, -1.0, 0.3]])}
    vjp = power_norm.vjp(x, cotangent=g, p=p, axis=-1, eps=1e-5)["x"]
    so = power_norm.second_order(x, cotangent=g, tangent=t, p=p, axis=-1, eps=1e-5)["x"]
    assert np.isfinite(vjp).all()
    assert np.isfinite(so).all()
    # at a zero, dz_j/dx_j = rscale exactly (the statistic does not move)
    rscale = power_norm.forward(x, p=p, axis=-1, eps=1e-5)["rscale"][0]
    e0 = np.zeros_like(x)
    e0[0, 0] = 1.0
    assert power_norm.jvp(x, tangent={"x": e0}, p=p, axis=-1, eps=1e-5)[0, 0] == rscale


@pytest.mark.parametrize("p", PS)
def test_all_zero_row(p: float) -> None:
    x = np.zeros((2, 4, 5))
    out = power_norm.forward(x, W, B, p=p, axis=1, eps=1e-4)
    np.testing.assert_array_equal(out["y"], np.broadcast_to(B, x.shape))
    np.testing.assert_allclose(out["rscale"], 1e-4 ** (-1 / p), rtol=1e-15)
    grads = power_norm.vjp(x, W, B, cotangent=G[:2], p=p, axis=1, eps=1e-4)
    np.testing.assert_allclose(grads["x"], G[:2] * W * 1e-4 ** (-1 / p), rtol=1e-15)
    assert np.isnan(power_norm.forward(x, p=p, axis=1, eps=0.0)["y"]).all()


@pytest.mark.parametrize("p", PS)
def test_one_nonzero_is_sign_times_n_to_the_1_over_p(p: float) -> None:
    x = np.array([[0.0, 0.0, -7.0, 0.0]])
    y = power_norm.forward(x, p=p, axis=-1, eps=0.0)["y"]
    np.testing.assert_allclose(y, [[0.0, 0.0, -(4 ** (1 / p)), 0.0]], rtol=1e-15)


def test_huge_and_tiny_rows_do_not_overflow() -> None:
    for p in PS:
        for s in (1e300, 1e-300):
            out = power_norm.forward(np.array([[s, -2 * s, 0.5 * s]]), p=p, axis=-1, eps=0.0)
            ref = power_norm.forward(np.array([[1.0, -2.0, 0.5]]), p=p, axis=-1, eps=0.0)
            np.testing.assert_allclose(out["y"], ref["y"], rtol=1e-14)


@pytest.mark.parametrize(("kwargs", "exc", "words"), [
    ({"p": 0.0}, ValueError, "'p'"),
    ({"p": -1.0}, ValueError, "'p'"),
    ({"p": float("nan")}, ValueError, "'p'"),
    ({"p": "2"}, TypeError, "'p'"),
    ({"p": 2.0, "eps": -1.0}, ValueError, "'eps'"),
])
def test_argument_errors_name_the_argument(kwargs: dict[str, object], exc: type[Exception],
                                           words: str) -> None:
    args = {"axis": -1, "eps": 1e-5, **kwargs}
    with pytest.raises(exc, match=words):
        power_norm.forward(np.ones((2, 3)), **args)  # type: ignore[arg-type]


def test_wrong_parameter_shapes() -> None:
    with pytest.raises(ValueError, match="'bias'"):
        power_norm.forward(np.ones((2, 3)), None, np.ones(2), p=3.0, axis=-1, eps=1e-5)
    with pytest.raises(ValueError, match="'weight'"):
        power_norm.forward(np.ones((2, 3)), np.ones(4), p=3.0, axis=-1, eps=1e-5)
