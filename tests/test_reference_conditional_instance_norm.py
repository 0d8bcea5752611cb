"""Properties of the conditional_instance_norm reference beyond the generic proofs."""

from __future__ import annotations

import numpy as np
import pytest
from normspec.reference import conditional_instance_norm as cin
from normspec.reference import instance_norm

RNG = np.random.default_rng(2016)


def _tables(styles: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    return RNG.normal(1.0, 0.5, (styles, channels)), RNG.normal(0.0, 0.5, (styles, channels))


def test_each_sample_is_instance_norm_with_its_row() -> None:
    x = RNG.standard_normal((3, 2, 7))
    w, b = _tables(5, 2)
    style = np.array([4, 0, 4])
    y = cin.forward(x, w, b, style=style, eps=1e-5)["y"]
    for k, s in enumerate(style):
        want = instance_norm.forward(x[k:k + 1], w[s], b[s], eps=1e-5)["y"]
        np.testing.assert_allclose(y[k:k + 1], want, rtol=1e-15, atol=1e-15)


def test_repeated_styles_accumulate_and_unused_rows_get_zero() -> None:
    x, g = RNG.standard_normal((4, 3, 5)), RNG.standard_normal((4, 3, 5))
    w, b = _tables(6, 3)
    style = np.array([2, 0, 2, 5])
    grads = cin.vjp(x, w, b, style=style, cotangent=g, eps=1e-5)
    parts = [instance_norm.vjp(x[k:k + 1], w[s], b[s], cotangent=g[k:k + 1], eps=1e-5)
             for k, s in enumerate(style)]
    np.testing.assert_allclose(grads["weight"][2], parts[0]["weight"] + parts[2]["weight"],
                               rtol=1e-13)
    np.testing.assert_allclose(grads["bias"][0], parts[1]["bias"], rtol=1e-13)
    assert np.all(grads["weight"][[1, 3, 4]] == 0.0)
    assert np.all(grads["bias"][[1, 3, 4]] == 0.0)


def test_a_nan_in_an_unused_row_reaches_nothing() -> None:
    x, g = RNG.standard_normal((2, 2, 5)), RNG.standard_normal((2, 2, 5))
    w, b = _tables(4, 2)
    w[3, 1] = np.nan
    out = cin.forward(x, w, b, style=[0, 1], eps=1e-5)
    grads = cin.vjp(x, w, b, style=[0, 1], cotangent=g, eps=1e-5)
    assert np.all(np.isfinite(out["y"]))
    assert np.all(np.isfinite(grads["x"]))
    assert np.all(np.isfinite(grads["weight"]))


def test_channels_last_is_a_transpose() -> None:
    x = RNG.standard_normal((3, 4, 2, 5))
    w, b = _tables(5, 4)
    first = cin.forward(x, w, b, style=[1, 1, 3], eps=1e-5)["y"]
    last = cin.forward(np.moveaxis(x, 1, -1), w, b, style=[1, 1, 3], channel_axis=-1,
                       eps=1e-5)["y"]
    np.testing.assert_allclose(np.moveaxis(last, -1, 1), first, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize(("style", "error", "message"), [
    ([0, 3], ValueError, r"\[0, 3\)"),
    ([0, -1], ValueError, "argument 'style'"),
    ([0.0, 1.0], TypeError, "argument 'style'"),
    ([True, False], TypeError, "argument 'style'"),
    ([0, 1, 2], ValueError, r"expected \(2,\)"),
    ([[0, 1]], ValueError, "argument 'style'"),
])
def test_bad_style_names_itself(style: object, error: type[Exception], message: str) -> None:
    x = np.zeros((2, 2, 3))
    w, b = _tables(3, 2)
    with pytest.raises(error, match=message):
        cin.forward(x, w, b, style=style, eps=1e-5)


@pytest.mark.parametrize(("weight", "bias", "name"), [
    (np.ones((3, 4)), np.zeros((3, 2)), "weight"),
    (np.ones((3, 2)), np.zeros((2, 2)), "bias"),
    (np.ones(2), np.zeros(2), "weight"),
])
def test_bad_tables_name_themselves(weight: np.ndarray, bias: np.ndarray, name: str) -> None:
    with pytest.raises(ValueError, match=f"argument '{name}'"):
        cin.forward(np.zeros((2, 2, 3)), weight, bias, style=[0, 1], eps=1e-5)
