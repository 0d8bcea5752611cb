"""Properties of global_response_norm that the definition implies, beyond the mpmath proofs."""

from __future__ import annotations

import numpy as np
import pytest
from normspec.reference import global_response_norm as grn


def _inputs(shape: tuple[int, ...], c: int, seed: int = 0
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape), 1.0 + 0.25 * rng.standard_normal(c),
            0.5 * rng.standard_normal(c))


def test_zero_initialised_parameters_give_the_identity() -> None:
    x, _, _ = _inputs((2, 3, 4, 5), 5)
    out = grn.forward(x, np.zeros(5), np.zeros(5), channel_axis=-1, eps=1e-6)
    assert np.array_equal(out["y"], x)


def test_weight_gradient_is_not_zero_at_zero_init() -> None:
    # why zero init still trains: d/dgamma = sum g x nx
    x, _, _ = _inputs((2, 3, 4, 5), 5)
    g = np.ones_like(x)
    dw = grn.vjp(x, np.zeros(5), np.zeros(5), cotangent=g, channel_axis=-1, eps=1e-6)["weight"]
    assert np.all(dw != 0.0)


def test_channels_first_equals_channels_last() -> None:
    x, w, b = _inputs((2, 3, 4, 5), 5)
    last = grn.forward(x, w, b, channel_axis=-1, eps=1e-6)
    first = grn.forward(np.moveaxis(x, -1, 1), w, b, channel_axis=1, eps=1e-6)
    np.testing.assert_array_equal(np.moveaxis(first["y"], 1, -1), last["y"])
    np.testing.assert_array_equal(first["gx"], last["gx"])


def test_nx_has_channel_mean_one_without_eps_and_is_scale_invariant() -> None:
    x, w, b = _inputs((3, 4, 6), 6)
    nx = grn.forward(x, w, b, channel_axis=-1, eps=0.0)["nx"]
    np.testing.assert_allclose(nx.mean(axis=1), 1.0, rtol=1e-15)
    scaled = grn.forward(x * 2.0**-700, w, b, channel_axis=-1, eps=0.0)["nx"]
    np.testing.assert_allclose(scaled, nx, rtol=4e-16)


def test_eps_is_added_to_the_mean_not_under_a_root() -> None:
    x = np.array([[[3.0], [4.0]]])  # gx = 5, one channel
    nx = grn.forward(x, np.ones(1), np.zeros(1), channel_axis=-1, eps=1.0)["nx"]
    assert nx.tolist() == [[5.0 / 6.0]]


def test_zero_channel_uses_the_zero_subgradient_like_torch() -> None:
    torch = pytest.importorskip("torch")
    x, w, b = _inputs((2, 3, 4), 4)
    x[0, :, 1] = 0.0
    g = np.random.default_rng(3).standard_normal(x.shape)
    ours = grn.vjp(x, w, b, cotangent=g, channel_axis=-1, eps=1e-6)
    xt = torch.tensor(x, requires_grad=True)
    wt, bt = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
    gx = torch.linalg.vector_norm(xt, 2, dim=(1,), keepdim=True)
    y = wt * (xt * (gx / (gx.mean(dim=-1, keepdim=True) + 1e-6))) + bt + xt
    y.backward(torch.tensor(g))
    assert xt.grad is not None
    np.testing.assert_allclose(ours["x"], xt.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_missing_channel_axis_is_an_error() -> None:
    x, w, b = _inputs((2, 3, 4), 4)
    with pytest.raises(TypeError, match="channel_axis"):
        grn.forward(x, w, b, eps=1e-6)  # type: ignore[call-arg]


@pytest.mark.parametrize("axis", [0, -3])
def test_channel_axis_cannot_be_the_batch_axis(axis: int) -> None:
    x, w, b = _inputs((2, 3, 4), 2)
    with pytest.raises(ValueError, match="argument 'channel_axis'"):
        grn.forward(x, w, b, channel_axis=axis, eps=1e-6)


def test_weight_shape_is_checked() -> None:
    x, w, b = _inputs((2, 3, 4), 4)
    with pytest.raises(ValueError, match="argument 'weight'"):
        grn.forward(x, w[:3], b, channel_axis=-1, eps=1e-6)
