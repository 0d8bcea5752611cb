"""mixed_eval_batch_norm: the variance rule, its two limits, NaN/Inf, bad input, properties.

Expected values are written from the spec page's equations with plain NumPy or exact
rationals, never taken from the reference itself (except where two reference methods are
compared with each other: alpha = 0 and 1 against batch_norm).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from normspec.reference import batch_norm as bn
from normspec.reference import mixed_eval_batch_norm as mix

EPS = 1e-5


def _case(seed: int, shape: tuple[int, ...] = (4, 3, 2, 5), channel_axis: int = 1,
          loc: float = 0.0) -> tuple[np.ndarray, dict[str, Any], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    channels = shape[channel_axis]
    x = loc + rng.normal(0.5, 2.0, shape)
    state = {"running_mean": loc + rng.normal(0.0, 1.0, channels),
             "running_var": rng.uniform(0.5, 2.0, channels)}
    primals = {"weight": rng.normal(1.0, 0.3, channels), "bias": rng.normal(0.0, 0.5, channels)}
    return x, {"eps": EPS, "channel_axis": channel_axis, **state}, primals


def _axes(x: np.ndarray, channel_axis: int) -> tuple[int, ...]:
    return tuple(i for i in range(x.ndim) if i != channel_axis % x.ndim)


def _all_checks(mod: Any, x: np.ndarray, primals: dict[str, np.ndarray], kw: dict[str, Any],
                seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    g = rng.standard_normal(x.shape)
    t = {"x": rng.standard_normal(x.shape),
         **{k: rng.standard_normal(v.shape) for k, v in primals.items()}}
    out = {"y": mod.forward(x, **primals, **kw)["y"], "jvp": mod.jvp(x, **primals, tangent=t,
                                                                      **kw)}
    out.update({f"vjp/{k}": v for k, v in mod.vjp(x, **primals, cotangent=g, **kw).items()})
    out.update({f"so/{k}": v for k, v in mod.second_order(x, **primals, cotangent=g, tangent=t,
                                                          **kw).items()})
    return out


# --- the two limits -------------------------------------------------------------------------


@pytest.mark.parametrize("channel_axis", [1, -1], ids=["channels-first", "channels-last"])
def test_alpha_zero_is_batch_norm_evaluation(channel_axis: int) -> None:
    x, kw, primals = _case(1, channel_axis=channel_axis)
    got = _all_checks(mix, x, primals, {**kw, "alpha": 0.0}, 7)
    want = _all_checks(bn, x, primals, {**kw, "training": False}, 7)
    assert got.keys() == want.keys()
    for key in got:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-13, atol=1e-13, err_msg=key)


@pytest.mark.parametrize("channel_axis", [1, -1], ids=["channels-first", "channels-last"])
def test_alpha_one_is_batch_norm_training_with_the_biased_variance(channel_axis: int) -> None:
    x, kw, primals = _case(2, channel_axis=channel_axis)
    got = _all_checks(mix, x, primals, {**kw, "alpha": 1.0}, 8)
    train = {k: v for k, v in kw.items() if not k.startswith("running")}
    want = _all_checks(bn, x, primals, {**train, "training": True}, 8)
    for key in got:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-12, atol=1e-13, err_msg=key)
    stats = mix.forward(x, **primals, **kw, alpha=1.0)
    axes = _axes(x, channel_axis)
    np.testing.assert_allclose(stats["var"], x.var(axis=axes), rtol=1e-14)   # ddof = 0
    np.testing.assert_allclose(stats["mean"], x.mean(axis=axes), rtol=1e-14)


# --- the variance rule ----------------------------------------------------------------------


def test_law_of_total_variance_equals_mixture_of_second_moments_exactly() -> None:
    """Proof, in exact rationals, that the computed form is the seed material's form."""
    rng = np.random.default_rng(3)
    for _ in range(200):
        a = Fraction(int(rng.integers(0, 65)), 64)
        mb, rm = Fraction(int(rng.integers(-999, 999)), 7), Fraction(int(rng.integers(-999, 999)),
                                                                       11)
        vb, rv = Fraction(int(rng.integers(0, 999)), 13), Fraction(int(rng.integers(0, 999)), 3)
        mu = a * mb + (1 - a) * rm
        seed_form = a * (vb + mb * mb) + (1 - a) * (rv + rm * rm) - mu * mu
        total = a * vb + (1 - a) * rv + a * (1 - a) * (mb - rm) ** 2
        assert seed_form == total


def test_var_is_the_variance_of_the_mixture_not_the_mixture_of_variances() -> None:
    x, kw, _ = _case(4)
    kw["running_mean"] = kw["running_mean"] + 5.0  # a clear gap between the two means
    for alpha in (0.25, 0.5, 0.9):
        out = mix.forward(x, **kw, alpha=alpha)
        b_mean, b_var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
        mixture_of_variances = alpha * b_var + (1 - alpha) * kw["running_var"]
        gap = alpha * (1 - alpha) * (b_mean - kw["running_mean"]) ** 2
        np.testing.assert_allclose(out["var"], mixture_of_variances + gap, rtol=1e-13)
        assert np.all(out["var"] > mixture_of_variances + 0.5 * gap)


def test_biased_running_statistics_make_the_mixture_the_pooled_sample() -> None:
    """With the running component the population of a second sample S (biased variance) and
    alpha = |B| / (|B| + |S|), the mixed statistics are those of the concatenation B ∪ S."""
    rng = np.random.default_rng(5)
    batch, other = rng.normal(1.0, 2.0, (6, 3)), rng.normal(-2.0, 0.5, (10, 3))
    alpha = 6 / 16
    out = mix.forward(batch, running_mean=other.mean(axis=0), running_var=other.var(axis=0),
                      alpha=alpha, eps=EPS)
    pooled = np.concatenate([batch, other])
    np.testing.assert_allclose(out["mean"], pooled.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(out["var"], pooled.var(axis=0), rtol=1e-13)


def test_an_unbiased_running_var_is_taken_as_given() -> None:
    """PyTorch's running_var (unbiased) is not rescaled: only its own term changes."""
    rng = np.random.default_rng(6)
    x, other = rng.normal(0.0, 1.0, (6, 3)), rng.normal(1.0, 1.0, (10, 3))
    alpha = 0.3
    common = {"running_mean": other.mean(axis=0), "alpha": alpha, "eps": EPS}
    biased = mix.forward(x, running_var=other.var(axis=0), **common)["var"]
    unbiased = mix.forward(x, running_var=other.var(axis=0, ddof=1), **common)["var"]
    np.testing.assert_allclose(unbiased - biased,
                               (1 - alpha) * (other.var(axis=0, ddof=1) - other.var(axis=0)),
                               rtol=1e-10)


def test_alpha_weights_the_batch_not_the_running_statistics() -> None:
    x, kw, _ = _case(7)
    out = mix.forward(x, **kw, alpha=0.2)
    want = 0.2 * x.mean(axis=(0, 2, 3)) + 0.8 * kw["running_mean"]
    np.testing.assert_allclose(out["mean"], want, rtol=1e-13)
    np.testing.assert_allclose(out["batch_mean"], x.mean(axis=(0, 2, 3)), rtol=1e-14)
    np.testing.assert_allclose(out["batch_var"], x.var(axis=(0, 2, 3)), rtol=1e-14)


def test_offset_1e8_keeps_x_minus_mean_accurate() -> None:
    x, kw, _ = _case(8, shape=(64, 2), loc=1e8)
    exact_mean = [sum(map(Fraction, x[:, c].tolist())) / 64 for c in range(2)]
    out = mix.forward(x, **kw, alpha=0.5)
    for c in range(2):
        mu = Fraction(1, 2) * exact_mean[c] + Fraction(1, 2) * Fraction(kw["running_mean"][c])
        d = [float(Fraction(v) - mu) for v in x[:, c].tolist()]
        np.testing.assert_allclose(out["y"][:, c], np.array(d) * out["rstd"][c], rtol=0,
                                   atol=1e-13 * np.max(np.abs(out["y"][:, c])))


# --- state is read, not written -------------------------------------------------------------


def test_running_statistics_are_read_only_inputs() -> None:
    x, kw, primals = _case(9)
    before = {k: v.copy() for k, v in kw.items() if isinstance(v, np.ndarray)}
    out = mix.forward(x, **primals, **kw, alpha=0.5)
    assert set(out) == {"y", *mix.STATS}
    assert "running_mean" not in out
    assert "running_var" not in out
    for k, v in before.items():
        np.testing.assert_array_equal(kw[k], v)
    grads = mix.vjp(x, **primals, cotangent=np.ones_like(x), **kw, alpha=0.5)
    assert set(grads) == {"x", "weight", "bias"}


# --- NaN / Inf ------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_poisons_its_channel_for_every_alpha(alpha: float, bad: float) -> None:
    x, kw, _ = _case(10, shape=(5, 3))
    x[2, 1] = bad
    with np.errstate(all="raise"):  # no warnings escape the reference
        out = mix.forward(x, **kw, alpha=alpha)
    # 0 * NaN is NaN: the batch statistics enter even with alpha = 0
    assert np.isnan(out["y"][:, 1]).all()
    assert np.isfinite(out["y"][:, [0, 2]]).all()


def test_nan_running_statistic_poisons_its_channel() -> None:
    x, kw, _ = _case(11, shape=(5, 3))
    kw["running_var"][0] = np.nan
    out = mix.forward(x, **kw, alpha=0.5)
    assert np.isnan(out["y"][:, 0]).all()
    assert np.isfinite(out["y"][:, 1:]).all()


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "error", "match"), [
    ({"alpha": 1.5}, ValueError, r"argument 'alpha': got 1.5, expected a number in \[0, 1\]"),
    ({"alpha": -0.1}, ValueError, r"argument 'alpha'"),
    ({"alpha": float("nan")}, ValueError, r"argument 'alpha': got nan"),
    ({"alpha": True}, TypeError, r"argument 'alpha': got True"),
    ({"alpha": "0.5"}, TypeError, r"argument 'alpha'"),
    ({"running_mean": None}, ValueError, r"argument 'running_mean': got None"),
    ({"running_var": np.ones(2)}, ValueError, r"argument 'running_var': got shape \(2,\)"),
    ({"running_var": np.array([1.0, -1.0, 1.0])}, ValueError, r"negative entries \[-1.0\]"),
    ({"eps": -1.0}, ValueError, r"argument 'eps'"),
    ({"channel_axis": 3}, ValueError, r"argument 'channel_axis'"),
])
def test_bad_input_names_argument_and_value(overrides: dict[str, Any], error: type[Exception],
                                            match: str) -> None:
    x, kw, _ = _case(12, shape=(4, 3))
    with pytest.raises(error, match=match):
        mix.forward(x, **{**kw, "alpha": 0.5, **overrides})


def test_empty_batch_is_rejected() -> None:
    _, kw, _ = _case(13, shape=(4, 3))
    with pytest.raises(ValueError, match=r"argument 'x': got shape \(0, 3\), expected a "
                                         r"non-empty reduction"):
        mix.forward(np.zeros((0, 3)), **kw, alpha=0.0)


@pytest.mark.parametrize("function", ["vjp", "jvp", "second_order"])
def test_derivatives_validate_like_forward(function: str) -> None:
    x, kw, _ = _case(14, shape=(4, 3))
    extra: dict[str, Any] = {"cotangent": np.ones_like(x)} if function != "jvp" else {}
    if function != "vjp":
        extra["tangent"] = {"x": np.ones_like(x)}
    with pytest.raises(ValueError, match=r"argument 'alpha'"):
        getattr(mix, function)(x, **kw, alpha=2.0, **extra)


# --- properties -----------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(alpha=st.floats(0.0, 1.0), shift=st.floats(-1e3, 1e3), seed=st.integers(0, 2**16))
def test_y_is_invariant_to_shifting_x_and_running_mean_together(alpha: float, shift: float,
                                                                seed: int) -> None:
    x, kw, primals = _case(seed, shape=(6, 3))
    base = mix.forward(x, **primals, **kw, alpha=alpha)
    moved = mix.forward(x + shift, **primals, **{**kw, "running_mean": kw["running_mean"] + shift},
                        alpha=alpha)
    np.testing.assert_allclose(moved["y"], base["y"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(moved["var"], base["var"], rtol=1e-9)


@settings(max_examples=40, deadline=None)
@given(alpha=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_jvp_and_vjp_are_adjoint(alpha: float, seed: int) -> None:
    x, kw, primals = _case(seed, shape=(5, 2, 3))
    rng = np.random.default_rng(seed + 1)
    g = rng.standard_normal(x.shape)
    t = {"x": rng.standard_normal(x.shape),
         **{k: rng.standard_normal(v.shape) for k, v in primals.items()}}
    lhs = float(np.sum(g * mix.jvp(x, **primals, tangent=t, **kw, alpha=alpha)))
    grads = mix.vjp(x, **primals, cotangent=g, **kw, alpha=alpha)
    rhs = sum(float(np.sum(grads[k] * t[k])) for k in grads)
    assert abs(lhs - rhs) <= 1e-11 * (1 + abs(lhs))


@settings(max_examples=40, deadline=None)
@given(alpha=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_var_is_at_least_the_mixture_of_variances(alpha: float, seed: int) -> None:
    x, kw, _ = _case(seed, shape=(7, 3))
    out = mix.forward(x, **kw, alpha=alpha)
    floor = alpha * out["batch_var"] + (1 - alpha) * kw["running_var"]
    assert np.all(out["var"] >= floor * (1 - 1e-15))
