"""Properties of the adaptive_instance_norm reference beyond the generic mpmath and FD proofs."""

from __future__ import annotations

import numpy as np
import pytest
from normspec.reference import adaptive_instance_norm as adain
from normspec.reference import instance_norm

RNG = np.random.default_rng(20170)


def _draw(shape: tuple[int, ...], loc: float = 0.0, scale: float = 1.0) -> np.ndarray:
    return loc + scale * RNG.standard_normal(shape)


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_output_takes_the_style_statistics(estimator: str) -> None:
    # y's own statistics, with the same estimator and eps = 0, are the style's
    x, s = _draw((2, 3, 9)), _draw((2, 3, 4, 5), loc=3.0, scale=2.0)
    out = adain.forward(x, s, variance_estimator=estimator, eps=0.0)
    ddof = 1 if estimator == "unbiased" else 0
    np.testing.assert_allclose(out["y"].mean(axis=2), out["style_mean"], rtol=1e-13)
    np.testing.assert_allclose(out["y"].std(axis=2, ddof=ddof), out["style_std"], rtol=1e-13)
    np.testing.assert_allclose(out["style_var"], s.reshape(2, 3, -1).var(axis=2, ddof=ddof),
                               rtol=1e-13)


def test_biased_is_instance_norm_with_the_style_as_affine() -> None:
    x, s = _draw((2, 3, 7)), _draw((2, 3, 11), loc=-1.0, scale=0.5)
    out = adain.forward(x, s, variance_estimator="biased", eps=1e-3)
    z = instance_norm.forward(x, eps=1e-3)["y"]
    want = z * out["style_std"][:, :, None] + out["style_mean"][:, :, None]
    np.testing.assert_allclose(out["y"], want, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(out["style_std"],
                               np.sqrt(s.var(axis=2) + 1e-3), rtol=1e-14)


def test_unbiased_matches_the_papers_formula() -> None:
    # the PyTorch port: var with Bessel's correction, plus eps, under the root, both inputs
    x, s = _draw((1, 2, 6)), _draw((1, 2, 8), scale=3.0)
    eps = 1e-5
    sx = np.sqrt(x.var(axis=2, ddof=1, keepdims=True) + eps)
    ss = np.sqrt(s.var(axis=2, ddof=1, keepdims=True) + eps)
    want = (x - x.mean(axis=2, keepdims=True)) / sx * ss + s.mean(axis=2, keepdims=True)
    got = adain.forward(x, s, variance_estimator="unbiased", eps=eps)["y"]
    np.testing.assert_allclose(got, want, rtol=1e-13)


def test_equal_sizes_cancel_the_estimator_up_to_eps() -> None:
    # why the catalog's style is one row longer: with m = n the factors cancel in y
    x, s = _draw((2, 2, 5)), _draw((2, 2, 5), scale=2.0)
    a = adain.forward(x, s, variance_estimator="biased", eps=0.0)["y"]
    b = adain.forward(x, s, variance_estimator="unbiased", eps=0.0)["y"]
    np.testing.assert_allclose(a, b, rtol=1e-13)
    c = adain.forward(x, _draw((2, 2, 9)), variance_estimator="biased", eps=0.0)["y"]
    d = adain.forward(x, _draw((2, 2, 9)), variance_estimator="unbiased", eps=0.0)["y"]
    assert not np.allclose(c, d)


def test_channels_last_is_a_transpose() -> None:
    x, s = _draw((2, 3, 4, 5)), _draw((2, 3, 2, 5), loc=1.0)
    first = adain.forward(x, s, variance_estimator="unbiased", eps=1e-5)
    last = adain.forward(np.moveaxis(x, 1, -1), np.moveaxis(s, 1, -1), channel_axis=-1,
                         variance_estimator="unbiased", eps=1e-5)
    np.testing.assert_allclose(np.moveaxis(last["y"], -1, 1), first["y"], rtol=1e-14)
    for key in adain.STATS:
        np.testing.assert_allclose(last[key], first[key], rtol=1e-14)


def test_gradients_reach_both_inputs_and_sum_rules_hold() -> None:
    x, s = _draw((2, 3, 6)), _draw((2, 3, 7), scale=2.0)
    g = _draw(x.shape)
    grads = adain.vjp(x, s, cotangent=g, variance_estimator="unbiased", eps=1e-5)
    # y is shift-invariant in x: the x-gradient sums to 0 per set; y - style_mean moves with the
    # style's scale only, so the style-gradient sums to sum(g) per set (the mean's share)
    np.testing.assert_allclose(grads["x"].sum(axis=2), 0.0, atol=1e-12)
    np.testing.assert_allclose(grads["style"].sum(axis=2), g.sum(axis=2), rtol=1e-12)
    assert np.all(np.abs(grads["style"]) > 0)


def test_constant_style_with_eps_zero_gives_its_mean() -> None:
    x, s = _draw((1, 2, 5)), np.full((1, 2, 3), 4.25)
    out = adain.forward(x, s, variance_estimator="biased", eps=0.0)
    assert np.all(out["y"] == 4.25)
    assert np.all(out["style_std"] == 0.0)


def test_nan_and_inf_stay_in_their_set() -> None:
    x, s = _draw((2, 2, 4)), _draw((2, 2, 5))
    s[1, 0, 2] = np.inf
    out = adain.forward(x, s, variance_estimator="unbiased", eps=1e-5)
    assert np.isinf(out["style_mean"][1, 0])
    assert np.isnan(out["style_var"][1, 0])
    assert np.all(np.isnan(out["y"][1, 0]))
    mask = np.ones(out["y"].shape, dtype=bool)
    mask[1, 0] = False
    assert np.all(np.isfinite(out["y"][mask]))


def test_huge_style_does_not_overflow_its_std() -> None:
    # style values near 1e200: the variance 1e400 overflows, the std does not
    x, s = _draw((1, 1, 4)), 1e200 * _draw((1, 1, 6))
    out = adain.forward(x, s, variance_estimator="unbiased", eps=1e-5)
    want = float(np.std(s / 1e200, ddof=1)) * 1e200
    assert out["style_std"][0, 0] == pytest.approx(want, rel=1e-14)
    assert np.all(np.isfinite(out["y"]))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"style": np.zeros((2, 4, 5))}, "argument 'style'"),
    ({"style": np.zeros((3, 3, 5))}, "argument 'style'"),
    ({"style": np.zeros((2, 3))}, "argument 'style'"),
    ({"style": np.zeros((2, 3, 1))}, "argument 'style'"),
    ({"variance_estimator": "sample"}, "argument 'variance_estimator'"),
    ({"eps": -1.0}, "argument 'eps'"),
    ({"channel_axis": 0}, "argument 'channel_axis'"),
    ({"x": np.zeros((2, 3, 1))}, "argument 'x'"),
    ({"style": np.zeros((2, 3, 5), dtype=np.int64)}, "argument 'style'"),
])
def test_bad_arguments_name_themselves(kwargs: dict[str, object], message: str) -> None:
    call: dict[str, object] = {"x": np.zeros((2, 3, 4)), "style": np.zeros((2, 3, 5)),
                               "variance_estimator": "unbiased", "eps": 1e-5, **kwargs}
    with pytest.raises((ValueError, TypeError), match=message):
        adain.forward(**call)


def test_a_bad_cotangent_or_tangent_names_itself() -> None:
    x, s = _draw((2, 3, 4)), _draw((2, 3, 5))
    h = {"variance_estimator": "biased", "eps": 1e-5}
    with pytest.raises(ValueError, match="argument 'cotangent'"):
        adain.vjp(x, s, cotangent=np.zeros((2, 3, 5)), **h)
    with pytest.raises(ValueError, match="argument 'tangent'"):
        adain.jvp(x, s, tangent={"weight": np.zeros(3)}, **h)
    with pytest.raises(ValueError, match=r"tangent\[.style.\]"):
        adain.jvp(x, s, tangent={"style": np.zeros((2, 3, 4))}, **h)
