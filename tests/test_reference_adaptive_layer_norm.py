"""Properties of adaptive_layer_norm that the definition promises beyond the proofs."""

from __future__ import annotations

import numpy as np
import pytest
from normspec.reference import adaptive_layer_norm as ada
from normspec.reference import layer_norm

HYPER = {"eps": 1e-5}


def _inputs(seed: int, shape: tuple[int, ...] = (3, 4, 5), k: int = 6, gated: bool = False
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = (3 if gated else 2) * shape[-1]
    return (rng.standard_normal(shape), rng.standard_normal((shape[0], k)),
            rng.standard_normal((k, p)), rng.standard_normal(p))


@pytest.mark.parametrize("activation", ["silu", "none"])
def test_zero_initialised_map_is_plain_layer_norm(activation: str) -> None:
    x, c, w, b = _inputs(0)
    got = ada.forward(x, c, np.zeros_like(w), np.zeros_like(b), gated=False,
                      activation=activation, **HYPER)
    want = layer_norm.forward(x, axis=-1, **HYPER)
    np.testing.assert_array_equal(got["y"], want["y"])
    for key in ("mean", "var", "rstd"):
        np.testing.assert_array_equal(got[key], want[key])


@pytest.mark.parametrize("activation", ["silu", "none"])
def test_adaln_zero_initialisation_gives_exactly_zero(activation: str) -> None:
    x, c, w, b = _inputs(1, gated=True)
    y = ada.forward(x, c, np.zeros_like(w), np.zeros_like(b), gated=True,
                    activation=activation, **HYPER)["y"]
    assert not np.any(y)


def test_zero_init_gradients_reach_only_the_gate_columns() -> None:
    # adaLN-Zero trains from zero: at W = b = 0 the only nonzero gradient is the gate's
    x, c, w, b = _inputs(2, gated=True)
    g = np.random.default_rng(3).standard_normal(x.shape)
    grads = ada.vjp(x, c, np.zeros_like(w), np.zeros_like(b), cotangent=g, gated=True,
                    activation="silu", **HYPER)
    d = x.shape[-1]
    assert not np.any(grads["x"])
    assert not np.any(grads["cond"])
    assert not np.any(grads["weight"][:, :2 * d])
    assert np.all(grads["weight"][:, 2 * d:] != 0)
    assert np.all(grads["bias"][2 * d:] != 0)


def test_chunk_order_is_shift_scale_gate() -> None:
    x, _, _, _ = _inputs(4, shape=(2, 3))
    cond = np.ones((2, 1))
    weight = np.concatenate([np.full((1, 3), 0.5), np.full((1, 3), 2.0), np.full((1, 3), -3.0)],
                            axis=1)
    z = layer_norm.forward(x, axis=-1, **HYPER)["y"]
    y = ada.forward(x, cond, weight, gated=True, activation="none", **HYPER)["y"]
    np.testing.assert_allclose(y, -3.0 * (z * 3.0 + 0.5), rtol=1e-15)


def test_silu_is_applied_to_cond_before_the_linear_map() -> None:
    x, c, w, b = _inputs(5)
    silu = c / (1 + np.exp(-c))
    got = ada.forward(x, c, w, b, gated=False, activation="silu", **HYPER)["y"]
    want = ada.forward(x, silu, w, b, gated=False, activation="none", **HYPER)["y"]
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-14)


def test_tokens_share_the_sample_modulation() -> None:
    x, c, w, b = _inputs(6, shape=(2, 5, 4))
    y = ada.forward(x, c, w, b, gated=False, activation="silu", **HYPER)["y"]
    for t in range(5):
        y_t = ada.forward(x[:, t], c, w, b, gated=False, activation="silu", **HYPER)["y"]
        np.testing.assert_array_equal(y[:, t], y_t)


def test_nan_in_cond_poisons_only_its_sample() -> None:
    x, c, w, b = _inputs(7)
    c[1, 2] = np.nan
    y = ada.forward(x, c, w, b, gated=False, activation="silu", **HYPER)["y"]
    assert np.isnan(y[1]).all()
    assert np.isfinite(y[[0, 2]]).all()


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"gated": 1}, r"argument 'gated': got 1, expected True or False"),
    ({"activation": "gelu"}, r"argument 'activation': got 'gelu'"),
    ({"eps": -1.0}, r"argument 'eps'"),
])
def test_bad_hyperparameters_are_named(kwargs: dict[str, object], match: str) -> None:
    x, c, w, b = _inputs(8)
    call = {"gated": False, "activation": "silu", **HYPER, **kwargs}
    with pytest.raises((TypeError, ValueError), match=match):
        ada.forward(x, c, w, b, **call)


def test_bad_shapes_are_named() -> None:
    x, c, w, b = _inputs(9)
    with pytest.raises(ValueError, match=r"argument 'cond': got shape \(2, 6\)"):
        ada.forward(x, c[:2], w, b, gated=False, activation="none", **HYPER)
    with pytest.raises(ValueError, match=r"argument 'weight': got shape \(6, 10\), expected "
                                         r"shape \(6, 15\)"):
        ada.forward(x, c, w, b, gated=True, activation="none", **HYPER)
    with pytest.raises(ValueError, match=r"argument 'x'"):
        ada.forward(x[0, 0], c, w, b, gated=False, activation="none", **HYPER)
