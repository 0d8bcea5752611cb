"""Properties of local_contrast_norm that the definition implies, beyond the mpmath proofs."""

from __future__ import annotations

import numpy as np
import pytest
from normspec.reference import local_contrast_norm as lcn

BASE = {"kernel_size": 3, "window_sigma": 1.0}


def test_renormalized_window_weights_sum_to_one_everywhere() -> None:
    w = lcn.spatial_window((4, 5), 5, 1.5, "renormalize")
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-15)


def test_zero_border_window_loses_mass_at_the_border_only() -> None:
    w = lcn.spatial_window((7,), 3, 1.0, "zero")
    mass = w.sum(axis=1)
    assert mass[0] < 1.0
    assert mass[-1] < 1.0
    np.testing.assert_allclose(mass[1:-1], 1.0, rtol=1e-15)


def test_constant_input_is_zero_with_a_constant_floor_and_nan_with_the_mean_floor() -> None:
    x = np.full((1, 2, 3, 3), 2.5)
    y = lcn.forward(x, channel_axis=1, border="renormalize", divisor_floor=0.1, **BASE)["y"]
    assert np.all(y == 0.0)
    y = lcn.forward(x, channel_axis=1, border="renormalize", divisor_floor="mean", **BASE)["y"]
    assert np.all(np.isnan(y))  # 0 / max(0, 0), as IEEE says


def test_output_is_shift_and_scale_invariant_with_the_mean_floor() -> None:
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4))
    hyper = {"channel_axis": 1, "border": "renormalize", "divisor_floor": "mean", **BASE}
    y = lcn.forward(x, **hyper)["y"]
    np.testing.assert_allclose(lcn.forward(4.0 * x + 7.0, **hyper)["y"], y, atol=1e-12)


def test_channels_last_equals_channels_first() -> None:
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 5))
    hyper = {"border": "zero", "divisor_floor": "mean", **BASE}
    first = lcn.forward(x, channel_axis=1, **hyper)["y"]
    last = lcn.forward(np.moveaxis(x, 1, -1), channel_axis=-1, **hyper)["y"]
    np.testing.assert_array_equal(np.moveaxis(last, -1, 1), first)


def test_tie_splits_the_gradient_of_max_equally() -> None:
    # one spatial position: floor = mean(sigma) = sigma, a tie at every sample
    x = np.random.default_rng(2).standard_normal((2, 3, 1, 1))
    hyper = {"channel_axis": 1, "border": "renormalize", "divisor_floor": "mean", **BASE}
    g = np.random.default_rng(3).standard_normal(x.shape)
    grad = lcn.vjp(x, cotangent=g, **hyper)["x"]
    # both branches of max are sigma itself here, so any split gives the same gradient:
    # d(v / sigma) = (g - y sum(g y) / C) / sigma per sample
    out = lcn.forward(x, **hyper)
    y, sig = out["y"], out["sigma"]
    gy = (g * y).sum(axis=1, keepdims=True) / x.shape[1]
    want = (g - g.mean(axis=1, keepdims=True) - y * gy) / sig[:, None]
    np.testing.assert_allclose(grad, want, atol=1e-12)


@pytest.mark.parametrize(("name", "value"), [("kernel_size", 4), ("window_sigma", 0.0),
                                             ("border", "reflect"), ("divisor_floor", "max")])
def test_bad_hyperparameters_name_the_argument(name: str, value: object) -> None:
    hyper: dict[str, object] = {"channel_axis": 1, "border": "zero", "divisor_floor": "mean",
                                **BASE}
    hyper[name] = value
    with pytest.raises(ValueError, match=f"argument '{name}'"):
        lcn.forward(np.ones((1, 2, 3)), **hyper)  # type: ignore[arg-type]
