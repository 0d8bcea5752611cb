"""Properties of unit_norm (nGPT's rule) that the definition implies, beyond the mpmath proofs."""

from __future__ import annotations

import numpy as np
import pytest
from normspec.reference import lp_norm as lp
from normspec.reference import unit_norm as un


def _x(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize(("shape", "axis"), [((2, 3, 8), -1), ((6, 8), 1), ((8, 6), 0)])
def test_it_is_lp_norm_with_p_2(shape: tuple[int, ...], axis: int) -> None:
    x, g, t = _x(*shape), _x(*shape, seed=1), _x(*shape, seed=2)
    hyper = {"axis": axis, "eps": 1e-12}
    assert np.array_equal(un.forward(x, **hyper)["y"], lp.forward(x, p=2.0, **hyper)["y"])
    assert np.array_equal(un.vjp(x, cotangent=g, **hyper)["x"],
                          lp.vjp(x, cotangent=g, p=2.0, **hyper)["x"])
    assert np.array_equal(un.jvp(x, tangent={"x": t}, **hyper),
                          lp.jvp(x, tangent={"x": t}, p=2.0, **hyper))


def test_weight_matrices_get_unit_vectors_along_the_embedding_axis() -> None:
    # nn.Linear(D=8, 6).weight is (6, 8): D is axis 1 (W_q, W_k, W_v, W_up);
    # nn.Linear(6, D=8).weight is (8, 6): D is axis 0 (W_o, W_down)
    w_q, w_o = _x(6, 8), _x(8, 6, seed=3)
    np.testing.assert_allclose(np.linalg.norm(un.forward(w_q, axis=1, eps=0.0)["y"], axis=1),
                               1.0, rtol=1e-15)
    np.testing.assert_allclose(np.linalg.norm(un.forward(w_o, axis=0, eps=0.0)["y"], axis=0),
                               1.0, rtol=1e-15)


def test_a_flax_kernel_is_the_transpose() -> None:
    w = _x(6, 8)  # PyTorch (out, in); Flax Dense kernel is (in, out) = w.T
    torch_layout = un.forward(w, axis=1, eps=0.0)["y"]
    flax_layout = un.forward(w.T, axis=0, eps=0.0)["y"]
    np.testing.assert_array_equal(flax_layout, torch_layout.T)


def test_normalizing_twice_changes_nothing_but_rounding() -> None:
    y = un.forward(_x(4, 16), axis=-1, eps=0.0)["y"]
    np.testing.assert_allclose(un.forward(y, axis=-1, eps=0.0)["y"], y, rtol=4e-16, atol=0)


def test_zero_vector_ngpt_code_eps_0_is_nan_and_floor_gives_zero() -> None:
    x = np.array([[0.0, 1.0], [0.0, 0.0]])  # column 0 is zero
    assert np.isnan(un.forward(x, axis=0, eps=0.0)["y"][:, 0]).all()
    assert un.forward(x, axis=0, eps=1e-12)["y"][:, 0].tolist() == [0.0, 0.0]


def test_p_is_not_a_hyperparameter() -> None:
    with pytest.raises(TypeError):
        un.forward(_x(2, 3), p=2.0, axis=-1, eps=0.0)  # type: ignore[call-arg]
