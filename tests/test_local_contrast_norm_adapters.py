"""local_contrast_norm's numpy translation (unregistered) against the reference in float64."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from normspec.adapters.numpy_adapter import Numerics
from normspec.adapters.numpy_adapter._local_contrast_norm import LOCAL_CONTRAST_NORM
from normspec.adapters.numpy_adapter._precision import precision
from normspec.reference import local_contrast_norm as ref

HYPERS: list[tuple[tuple[int, ...], dict[str, Any]]] = [
    ((2, 3, 5, 4), {"channel_axis": 1, "kernel_size": 3, "window_sigma": 1.0,
                    "border": "renormalize", "divisor_floor": "mean"}),
    ((2, 5, 4, 3), {"channel_axis": -1, "kernel_size": 5, "window_sigma": 2.0,
                    "border": "zero", "divisor_floor": 0.1}),
    ((1, 2, 3, 2, 4), {"channel_axis": 1, "kernel_size": 3, "window_sigma": 0.8,
                       "border": "zero", "divisor_floor": "mean"}),
]


@pytest.mark.parametrize(("shape", "hyper"), HYPERS)
def test_numpy_translation_matches_the_reference(shape: tuple[int, ...],
                                                 hyper: dict[str, Any]) -> None:
    rng = np.random.default_rng(0)
    x, g, t = (rng.standard_normal(shape) for _ in range(3))
    prec, nx, inputs = precision("float64"), Numerics(), {"x": x}
    got = LOCAL_CONTRAST_NORM.forward(nx, prec, inputs, hyper)
    want = ref.forward(x, **hyper)
    np.testing.assert_allclose(got["y"], want["y"], atol=1e-13)
    np.testing.assert_allclose(got["sigma"], want["sigma"], atol=1e-13)
    np.testing.assert_allclose(LOCAL_CONTRAST_NORM.vjp(nx, prec, inputs, hyper, g)["x"],
                               ref.vjp(x, cotangent=g, **hyper)["x"], atol=1e-12)
    np.testing.assert_allclose(LOCAL_CONTRAST_NORM.jvp(nx, prec, inputs, hyper, {"x": t}),
                               ref.jvp(x, tangent={"x": t}, **hyper), atol=1e-12)
    np.testing.assert_allclose(
        LOCAL_CONTRAST_NORM.second_order(nx, prec, inputs, hyper, g, {"x": t})["x"],
        ref.second_order(x, cotangent=g, tangent={"x": t}, **hyper)["x"], atol=1e-12)


@pytest.mark.parametrize(("shape", "hyper"), HYPERS)
def test_torch_composition_matches_the_reference(shape: tuple[int, ...],
                                                 hyper: dict[str, Any]) -> None:
    torch = pytest.importorskip("torch")
    from normspec.adapters.torch_adapter.local_contrast_norm import local_contrast_norm

    rng = np.random.default_rng(1)
    x, g = rng.standard_normal(shape), rng.standard_normal(shape)
    xt = torch.tensor(x, requires_grad=True)
    y, _ = local_contrast_norm({"x": xt}, hyper, True)
    y.backward(torch.tensor(g))
    assert xt.grad is not None
    np.testing.assert_allclose(y.detach().numpy(), ref.forward(x, **hyper)["y"], atol=1e-13)
    np.testing.assert_allclose(xt.grad.numpy(), ref.vjp(x, cotangent=g, **hyper)["x"],
                               atol=1e-12)


@pytest.mark.parametrize(("shape", "hyper"), HYPERS)
def test_jax_composition_matches_the_reference(shape: tuple[int, ...],
                                               hyper: dict[str, Any]) -> None:
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    from normspec.adapters.jax_adapter import _runtime
    from normspec.adapters.jax_adapter.local_contrast_norm import local_contrast_norm

    _runtime.enable_x64()
    rng = np.random.default_rng(2)
    x, g = rng.standard_normal(shape), rng.standard_normal(shape)
    fn = local_contrast_norm(jnp.float64, **hyper)
    y, vjp = jax.vjp(lambda a: fn({"x": a}, {})[0], jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(y), ref.forward(x, **hyper)["y"], atol=1e-13)
    np.testing.assert_allclose(np.asarray(vjp(jnp.asarray(g))[0]),
                               ref.vjp(x, cotangent=g, **hyper)["x"], atol=1e-12)


def test_torch_maximum_splits_a_tie_equally() -> None:
    """The spec's tie convention is what torch.maximum's backward does (torch 2.13)."""
    torch = pytest.importorskip("torch")
    a = torch.tensor(1.0, requires_grad=True)
    b = torch.tensor(1.0, requires_grad=True)
    torch.maximum(a, b).backward()
    assert (a.grad, b.grad) == (torch.tensor(0.5), torch.tensor(0.5))
