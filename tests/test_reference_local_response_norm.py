"""local_response_norm: window placement, the edge divisor, TF and ONNX conventions, NaN/Inf,
bad input and properties.

Expected values are written from the definition on the spec page, from hand-written window
listings or from the other frameworks' formulas written out in NumPy, never taken from the
reference itself.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from normspec.reference import local_response_norm as lrn

FAST = settings(max_examples=50, deadline=None)
HYPER: dict[str, Any] = {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 1.0}

# window(c) for C = 7, written out by hand from [c - floor(size/2), c + floor((size-1)/2)].
WINDOWS_C7 = {
    1: [[0], [1], [2], [3], [4], [5], [6]],
    2: [[0], [0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [5, 6]],
    3: [[0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5], [4, 5, 6], [5, 6]],
    4: [[0, 1], [0, 1, 2], [0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5], [3, 4, 5, 6], [4, 5, 6]],
    5: [[0, 1, 2], [0, 1, 2, 3], [0, 1, 2, 3, 4], [1, 2, 3, 4, 5], [2, 3, 4, 5, 6],
        [3, 4, 5, 6], [4, 5, 6]],
}


def _windows_seen(size: int) -> list[list[int]]:
    """Recover each channel's window from one-hot inputs: c sees j iff scale_c moves."""
    seen: list[list[int]] = [[] for _ in range(7)]
    for j in range(7):
        x = np.zeros((1, 7))
        x[0, j] = 1.0
        scale = lrn.forward(x, size=size, alpha=1.0, beta=0.75, k=1.0)["scale"][0]
        for c in np.flatnonzero(scale != 1.0):
            seen[int(c)].append(j)
    return seen


def _tf_lrn(x: np.ndarray, depth_radius: int, bias: float, alpha: float, beta: float
            ) -> np.ndarray:
    """TensorFlow's documented formula, channels last: alpha is not divided by the window."""
    out = np.empty_like(x)
    channels = x.shape[-1]
    for c in range(channels):
        lo, hi = max(0, c - depth_radius), min(channels, c + depth_radius + 1)
        sqr_sum = np.sum(x[..., lo:hi] ** 2, axis=-1)
        out[..., c] = x[..., c] / (bias + alpha * sqr_sum) ** beta
    return out


def _onnx_lrn(x: np.ndarray, size: int, alpha: float, beta: float, bias: float) -> np.ndarray:
    """ONNX's documented formula, channels at axis 1: [c - floor((n-1)/2), c + ceil((n-1)/2)]."""
    out = np.empty_like(x)
    channels = x.shape[1]
    for c in range(channels):
        lo = max(0, c - (size - 1) // 2)
        hi = min(channels - 1, c + math.ceil((size - 1) / 2))
        square_sum = np.sum(x[:, lo:hi + 1] ** 2, axis=1)
        out[:, c] = x[:, c] / (bias + alpha / size * square_sum) ** beta
    return out


# --- window placement and the divisor -----------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_window_placement_matches_the_hand_listing(size: int) -> None:
    assert _windows_seen(size) == WINDOWS_C7[size]


def test_even_window_leans_backward_for_c7_size4() -> None:
    # One more channel before c than after it: channel 3 sees 1, 2, 3, 4 (not 2, 3, 4, 5).
    assert _windows_seen(4)[3] == [1, 2, 3, 4]


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_edge_channels_divide_by_size(size: int) -> None:
    alpha, k = 2.0, 1.0
    x = np.ones((1, 7))
    scale = lrn.forward(x, size=size, alpha=alpha, beta=0.75, k=k)["scale"][0]
    counts = [len(w) for w in WINDOWS_C7[size]]
    # The scale is correctly rounded: compare with the exact rational value, rounded once.
    assert scale.tolist() == [float(Fraction(k) + Fraction(alpha) * n / size) for n in counts]


def test_window_wider_than_the_channels() -> None:
    x = np.array([[3.0, 4.0]])
    scale = lrn.forward(x, size=9, alpha=9.0, beta=1.0, k=0.0)["scale"]
    assert scale.tolist() == [[25.0, 25.0]]  # both see both channels, divisor still 9


def test_small_exact_values() -> None:
    x = np.array([[1.0, 2.0, 3.0]])
    out = lrn.forward(x, size=3, alpha=3.0, beta=1.0, k=1.0)
    assert out["scale"].tolist() == [[6.0, 15.0, 14.0]]
    assert out["y"].tolist() == [[1 / 6, 2 / 15, 3 / 14]]


@pytest.mark.parametrize("channel_axis", [1, -1, 0], ids=["ch=1", "ch=-1", "ch=0"])
def test_channel_axis_is_honoured(channel_axis: int) -> None:
    x = np.random.default_rng(1).standard_normal((3, 7, 7))
    ref = lrn.forward(np.moveaxis(x, channel_axis, 1), **HYPER)["y"]
    got = lrn.forward(x, channel_axis=channel_axis, **HYPER)["y"]
    assert np.array_equal(np.moveaxis(got, channel_axis, 1), ref)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_definition_written_out(size: int) -> None:
    x = np.random.default_rng(2).standard_normal((2, 7, 3))
    alpha, beta, k = 1.5, 0.75, 2.0
    want = np.empty_like(x)
    for c, window in enumerate(WINDOWS_C7[size]):
        want[:, c] = x[:, c] * (k + alpha / size * np.sum(x[:, window] ** 2, axis=1)) ** -beta
    got = lrn.forward(x, size=size, alpha=alpha, beta=beta, k=k)["y"]
    np.testing.assert_allclose(got, want, rtol=1e-14)


# --- other conventions --------------------------------------------------------------------


@pytest.mark.parametrize("depth_radius", [0, 1, 2, 5])
def test_tensorflow_convention(depth_radius: int) -> None:
    # TF: window 2r+1, alpha_tf not divided by it. Here: size = 2r+1, alpha = alpha_tf * size.
    x = np.random.default_rng(3).standard_normal((2, 3, 4, 13))
    alpha_tf, bias, beta = 0.3, 1.0, 0.5
    size = 2 * depth_radius + 1
    want = _tf_lrn(x, depth_radius, bias, alpha_tf, beta)
    got = lrn.forward(x, size=size, alpha=alpha_tf * size, beta=beta, k=bias,
                      channel_axis=-1)["y"]
    np.testing.assert_allclose(got, want, rtol=1e-14)
    if depth_radius > 0:  # forgetting the translation is a real difference
        same_alpha = lrn.forward(x, size=size, alpha=alpha_tf, beta=beta, k=bias,
                                 channel_axis=-1)["y"]
        assert not np.allclose(same_alpha, want, rtol=1e-6)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_onnx_convention(size: int) -> None:
    # ONNX's even window leans forward: it equals this spec on the channel-reversed input.
    x = np.random.default_rng(4).standard_normal((2, 7, 3))
    hyper = {"size": size, "alpha": 2.0, "beta": 0.75, "k": 1.0}
    want = _onnx_lrn(x, size, hyper["alpha"], hyper["beta"], hyper["k"])
    flipped = lrn.forward(x[:, ::-1], **hyper)["y"][:, ::-1]
    np.testing.assert_allclose(flipped, want, rtol=1e-14)
    direct = lrn.forward(x, **hyper)["y"]
    if size % 2:
        np.testing.assert_allclose(direct, want, rtol=1e-14)
    else:
        assert not np.allclose(direct, want, rtol=1e-6)


# --- special values -----------------------------------------------------------------------


def test_size_1_is_elementwise() -> None:
    x = np.random.default_rng(5).standard_normal((4, 7))
    got = lrn.forward(x, size=1, alpha=2.0, beta=0.75, k=1.0)["y"]
    np.testing.assert_allclose(got, x * (1.0 + 2.0 * x**2) ** -0.75, rtol=1e-15)


def test_beta_zero_is_the_identity() -> None:
    x = np.random.default_rng(6).standard_normal((2, 7))
    x[0, 2:6] = 0.0
    g = np.random.default_rng(7).standard_normal((2, 7))
    hyper = {"size": 3, "alpha": 1.0, "beta": 0.0, "k": 0.0}  # scale == 0 at channel 3 and 4
    assert np.array_equal(lrn.forward(x, **hyper)["y"], x)
    assert np.array_equal(lrn.vjp(x, cotangent=g, **hyper)["x"], g)
    assert not np.any(lrn.second_order(x, cotangent=g, tangent={"x": g}, **hyper)["x"])


def test_alpha_zero_scales_by_k() -> None:
    x = np.random.default_rng(8).standard_normal((2, 7))
    out = lrn.forward(x, size=4, alpha=0.0, beta=0.5, k=4.0)
    assert np.array_equal(out["scale"], np.full_like(x, 4.0))
    assert np.array_equal(out["y"], x * 0.5)


def test_k_zero_with_a_zero_window_is_nan_for_positive_beta() -> None:
    x = np.zeros((1, 7))
    x[0, 0] = 1.0  # size 3: channels 0 and 1 see channel 0, the rest see only zeros
    y = lrn.forward(x, size=3, alpha=1.0, beta=0.75, k=0.0)["y"][0]
    assert np.all(np.isfinite(y[:2]))
    assert np.all(np.isnan(y[2:]))  # 0 * 0^(-0.75) = 0 * inf
    y_neg = lrn.forward(x, size=3, alpha=1.0, beta=-0.5, k=0.0)["y"][0]
    assert y_neg[2:].tolist() == [0.0] * 5  # 0 * 0^0.5 = 0


def test_nan_poisons_the_channels_whose_window_holds_it() -> None:
    x = np.random.default_rng(9).standard_normal((1, 7))
    x[0, 3] = np.nan
    y = lrn.forward(x, size=4, alpha=1.0, beta=0.75, k=1.0)["y"][0]
    poisoned = [c for c, w in enumerate(WINDOWS_C7[4]) if 3 in w]
    assert poisoned == [2, 3, 4, 5]
    assert np.flatnonzero(np.isnan(y)).tolist() == poisoned


def test_inf_makes_its_windows_zero_and_itself_nan() -> None:
    x = np.ones((1, 7))
    x[0, 3] = np.inf
    out = lrn.forward(x, size=3, alpha=1.0, beta=0.75, k=1.0)
    y = out["y"][0]
    assert out["scale"][0, 2:5].tolist() == [np.inf] * 3
    assert np.isnan(y[3])  # inf * inf^(-beta) = inf * 0
    assert y[[2, 4]].tolist() == [0.0, 0.0]
    assert np.all(np.isfinite(y[[0, 1, 5, 6]]))
    assert np.all(y[[0, 1, 5, 6]] > 0)


def test_huge_and_tiny_inputs_stay_accurate() -> None:
    # Written from the definition with exact powers of two: x^2 and the sums are exact.
    x = np.array([[2.0**300, 2.0**300]])
    out = lrn.forward(x, size=2, alpha=2.0, beta=0.5, k=0.0)
    assert out["scale"].tolist() == [[2.0**600, 2.0**601]]
    assert out["y"][0, 0] == 1.0
    tiny = np.array([[2.0**-500, -(2.0**-510)]])
    assert lrn.forward(tiny, size=1, alpha=1.0, beta=0.5, k=0.0)["y"].tolist() == [[1.0, -1.0]]


# --- bad input ----------------------------------------------------------------------------

BAD_HYPER = [
    ("size", 0, ValueError), ("size", -3, ValueError), ("size", 2.5, TypeError),
    ("size", True, TypeError), ("alpha", -1e-4, ValueError), ("alpha", float("inf"), ValueError),
    ("alpha", float("nan"), ValueError), ("beta", float("inf"), ValueError),
    ("beta", float("nan"), ValueError), ("beta", "0.75", TypeError),
    ("k", -1.0, ValueError), ("k", float("nan"), ValueError), ("k", None, TypeError),
    ("channel_axis", 3, ValueError), ("channel_axis", -4, ValueError),
    ("channel_axis", 1.0, TypeError),
]


@pytest.mark.parametrize(("name", "value", "error"), BAD_HYPER,
                         ids=[f"{n}={v!r}" for n, v, _ in BAD_HYPER])
def test_bad_hyperparameter_is_named(name: str, value: object, error: type[Exception]) -> None:
    x = np.ones((2, 7, 3))
    with pytest.raises(error, match=rf"'{name}'.*{re.escape(str(value))}"):
        lrn.forward(x, **{**HYPER, name: value})


BAD_X = [
    ("int", np.ones((2, 7), dtype=np.int32), TypeError, "int32"),
    ("bool", np.ones((2, 7), dtype=bool), TypeError, "bool"),
    ("complex", np.ones((2, 7), dtype=np.complex64), TypeError, "complex64"),
    ("1-d", np.ones(7), ValueError, "(7,)"),
    ("no-channels", np.ones((2, 0, 3)), ValueError, "(2, 0, 3)"),
]


@pytest.mark.parametrize(("x", "error", "shown"), [b[1:] for b in BAD_X],
                         ids=[b[0] for b in BAD_X])
def test_bad_x_is_named(x: np.ndarray, error: type[Exception], shown: str) -> None:
    with pytest.raises(error, match=rf"'x'.*{re.escape(shown)}"):
        lrn.forward(x, **HYPER)


def test_bad_cotangent_and_tangent_are_named() -> None:
    x = np.ones((2, 7))
    with pytest.raises(ValueError, match=r"'cotangent'.*\(7, 2\)"):
        lrn.vjp(x, cotangent=np.ones((7, 2)), **HYPER)
    with pytest.raises(ValueError, match=r"tangent\['x'\].*\(7,\)"):
        lrn.jvp(x, tangent={"x": np.ones(7)}, **HYPER)


def test_empty_batch_is_allowed() -> None:
    out = lrn.forward(np.zeros((0, 7, 2)), **HYPER)
    assert out["y"].shape == out["scale"].shape == (0, 7, 2)


# --- properties ---------------------------------------------------------------------------

_values = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False)
_inputs = arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 3)),
                 elements=_values)
_sizes = st.integers(1, 6)
_abk = st.tuples(st.sampled_from([1e-4, 0.5, 2.0]), st.sampled_from([0.5, 0.75, 1.0, -0.5]),
                 st.sampled_from([0.5, 1.0, 2.0]))


def _hyper(size: int, abk: tuple[float, float, float]) -> dict[str, Any]:
    return {"size": size, "alpha": abk[0], "beta": abk[1], "k": abk[2]}


@FAST
@given(x=_inputs, abk=_abk)
def test_property_size_1_is_elementwise(x: np.ndarray, abk: tuple[float, float, float]) -> None:
    alpha, beta, k = abk
    got = lrn.forward(x, **_hyper(1, abk))["y"]
    np.testing.assert_allclose(got, x * (k + alpha * x**2) ** -beta, rtol=4e-16 * (2 + abs(beta)),
                               atol=0)


@FAST
@given(x=_inputs, size=st.sampled_from([1, 3, 5, 7]), abk=_abk)
def test_property_reversing_channels_commutes_for_odd_size(
        x: np.ndarray, size: int, abk: tuple[float, float, float]) -> None:
    y = lrn.forward(x, **_hyper(size, abk))["y"]
    assert np.array_equal(lrn.forward(x[:, ::-1], **_hyper(size, abk))["y"], y[:, ::-1])


@FAST
@given(x=_inputs, size=_sizes, abk=_abk, seed=st.integers(0, 2**32 - 1))
def test_property_permutation_equivariance_off_the_channel_axis(
        x: np.ndarray, size: int, abk: tuple[float, float, float], seed: int) -> None:
    rng = np.random.default_rng(seed)
    batch, spatial = rng.permutation(x.shape[0]), rng.permutation(x.shape[2])
    y = lrn.forward(x, **_hyper(size, abk))["y"]
    moved = lrn.forward(x[batch][:, :, spatial], **_hyper(size, abk))["y"]
    assert np.array_equal(moved, y[batch][:, :, spatial])


def _window_sum(v: np.ndarray, size: int, mirrored: bool = False) -> np.ndarray:
    """Sum over window(c) along axis 1, written from the definition; ``mirrored`` sums over
    {c' : c in window(c')} = [c - floor((size-1)/2), c + floor(size/2)] (the transpose)."""
    before, after = (size - 1) // 2, size // 2
    if not mirrored:
        before, after = after, before
    out = np.empty_like(v)
    channels = v.shape[1]
    for c in range(channels):
        lo, hi = max(0, c - before), min(channels - 1, c + after)
        out[:, c] = np.sum(v[:, lo:hi + 1], axis=1)
    return out


def _factors(x: np.ndarray, size: int, abk: tuple[float, float, float]
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scale, scale^(-beta) and q = beta scale^(-beta-1), from the definition."""
    alpha, beta, k = abk
    scale = k + alpha / size * _window_sum(x * x, size)
    return scale, scale**-beta, beta * scale**-beta / scale


@FAST
@given(x=_inputs, size=_sizes, abk=_abk, seed=st.integers(0, 2**32 - 1))
def test_property_vjp_is_the_adjoint_of_jvp(
        x: np.ndarray, size: int, abk: tuple[float, float, float], seed: int) -> None:
    # Catches a VJP that uses the window instead of the mirrored window for even sizes.
    alpha = abk[0]
    g, t = np.random.default_rng(seed).standard_normal((2, *x.shape))
    jv = lrn.jvp(x, tangent={"x": t}, **_hyper(size, abk))
    vj = lrn.vjp(x, cotangent=g, **_hyper(size, abk))["x"]
    lhs, rhs = math.fsum((g * jv).ravel()), math.fsum((t * vj).ravel())
    # Rounding is relative to the magnitudes of the terms of g.J t, which can cancel.
    _, power, q = _factors(x, size, abk)
    terms = np.abs(t) * power + 2 * alpha / size * np.abs(x * q) * _window_sum(np.abs(x * t), size)
    assert abs(lhs - rhs) <= 1e-13 * float(np.sum(np.abs(g) * terms))


@FAST
@given(x=_inputs, size=_sizes, abk=_abk, seed=st.integers(0, 2**32 - 1))
def test_property_second_order_is_symmetric(
        x: np.ndarray, size: int, abk: tuple[float, float, float], seed: int) -> None:
    g, t1, t2 = np.random.default_rng(seed).standard_normal((3, *x.shape))
    h1 = lrn.second_order(x, cotangent=g, tangent={"x": t1}, **_hyper(size, abk))["x"]
    h2 = lrn.second_order(x, cotangent=g, tangent={"x": t2}, **_hyper(size, abk))["x"]
    lhs, rhs = math.fsum((t2 * h1).ravel()), math.fsum((t1 * h2).ravel())
    # Rounding is relative to the magnitudes of the terms of H t (they cancel when the
    # window's energy dwarfs k), plus an absolute floor for products that underflow.
    alpha, beta, _ = abk
    scale, _, q = _factors(x, size, abk)
    bound = 1e-300
    two_a = 2 * alpha / size
    for ta, tb in ((t1, t2), (t2, t1)):
        ds = two_a * _window_sum(np.abs(x * ta), size)
        dq = abs(beta + 1) * np.abs(q) / scale * ds
        inner = np.abs(g * ta * q) + np.abs(g * x) * dq
        terms = (np.abs(g * q) * ds
                 + two_a * np.abs(ta) * _window_sum(np.abs(g * x * q), size, mirrored=True)
                 + two_a * np.abs(x) * _window_sum(inner, size, mirrored=True))
        bound += 1e-13 * float(np.sum(np.abs(tb) * terms))
    assert abs(lhs - rhs) <= bound


@FAST
@given(x=_inputs, size=_sizes, abk=_abk)
def test_property_scale_is_at_least_k(x: np.ndarray, size: int,
                                      abk: tuple[float, float, float]) -> None:
    assert np.all(lrn.forward(x, **_hyper(size, abk))["scale"] >= abk[2])


# --- framework cross-check ----------------------------------------------------------------


@pytest.mark.torch
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_matches_torch_local_response_norm_in_float64(size: int) -> None:
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(10).standard_normal((2, 7, 3, 2))
    want = torch.nn.functional.local_response_norm(torch.from_numpy(x), size, alpha=2.0,
                                                   beta=0.75, k=1.0).numpy()
    got = lrn.forward(x, size=size, alpha=2.0, beta=0.75, k=1.0)["y"]
    np.testing.assert_allclose(got, want, rtol=1e-13)
