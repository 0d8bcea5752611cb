"""Properties of the weight_standardization reference: per-output-channel statistics, the biased
estimator and eps inside the root (not the paper code's unbiased std + eps), the kept-axis
conventions, constant channels and argument errors."""

from __future__ import annotations

import numpy as np
import pytest
from normspec.reference import weight_standardization as ws

RNG = np.random.default_rng(1222)


@pytest.mark.parametrize(("shape", "kept"), [((8, 3, 3, 3), 0), ((3, 3, 4, 8), -1),
                                             ((3, 4, 2, 2), 1), ((5, 7), 0)])
def test_each_output_channel_has_zero_mean_and_unit_biased_variance(shape: tuple[int, ...],
                                                                    kept: int) -> None:
    x = RNG.standard_normal(shape)
    y = ws.forward(x, kept_axis=kept, eps=0.0)["y"]
    others = tuple(i for i in range(len(shape)) if i != kept % len(shape))
    np.testing.assert_allclose(y.mean(axis=others), 0.0, atol=1e-15)
    np.testing.assert_allclose(y.var(axis=others), 1.0, rtol=1e-14)  # numpy's var is biased


def test_kept_axis_minus_one_is_the_last_axis() -> None:
    x = RNG.standard_normal((3, 3, 4, 8))
    np.testing.assert_array_equal(ws.forward(x, kept_axis=-1, eps=1e-6)["y"],
                                  ws.forward(x, kept_axis=3, eps=1e-6)["y"])


def test_it_is_not_the_paper_codes_unbiased_std_plus_eps() -> None:
    x = RNG.standard_normal((4, 3, 2, 2))
    y = ws.forward(x, kept_axis=0, eps=1e-5)["y"]
    flat = x.reshape(4, -1)
    d = flat - flat.mean(axis=1, keepdims=True)
    paper = d / (flat.std(axis=1, ddof=1, keepdims=True) + 1e-5)
    timm = d / np.sqrt(flat.var(axis=1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y.reshape(4, -1), timm, rtol=1e-13)
    n = flat.shape[1]
    assert np.allclose(y.reshape(4, -1) * np.sqrt((n - 1) / n), paper, rtol=1e-4)
    assert not np.allclose(y.reshape(4, -1), paper, rtol=1e-3)


def test_constant_channel_is_zero_with_eps_and_nan_without() -> None:
    x = RNG.standard_normal((3, 6))
    x[1] = 0.75
    y = ws.forward(x, kept_axis=0, eps=1e-6)["y"]
    assert (y[1] == 0.0).all()
    g = RNG.standard_normal(x.shape)
    gx = ws.vjp(x, cotangent=g, kept_axis=0, eps=1e-6)["x"]
    np.testing.assert_allclose(gx[1], (g[1] - g[1].mean()) / np.sqrt(1e-6), rtol=1e-12)
    out = ws.forward(x, kept_axis=0, eps=0.0)
    assert np.isnan(out["y"][1]).all()
    assert np.isfinite(out["y"][[0, 2]]).all()


def test_statistics_have_one_value_per_output_channel() -> None:
    out = ws.forward(RNG.standard_normal((3, 4, 2, 2)), kept_axis=1, eps=1e-6)
    assert out["mean"].shape == out["var"].shape == out["rstd"].shape == (4,)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"kept_axis": 2}, ValueError, "kept_axis"),
    ({"kept_axis": "none"}, TypeError, "kept_axis"),
    ({"kept_axis": 0, "eps": -1.0}, ValueError, "eps"),
])
def test_bad_hyperparameters_name_the_argument(kwargs: dict[str, object], error: type,
                                               match: str) -> None:
    hyper = {"eps": 0.0, **kwargs}
    with pytest.raises(error, match=match):
        ws.forward(np.ones((2, 3)), **hyper)  # type: ignore[arg-type]
