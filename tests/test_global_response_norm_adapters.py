"""global_response_norm in the numpy, torch and JAX translations, and the framework facts
their compositions and ledger entries rely on, repro'd on the installed wheels."""

from __future__ import annotations

import numpy as np
import pytest
from normspec.adapters.numpy_adapter import Numerics
from normspec.adapters.numpy_adapter._global_response_norm import GLOBAL_RESPONSE_NORM
from normspec.adapters.numpy_adapter._precision import precision
from normspec.reference import global_response_norm as ref

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

from normspec.adapters.jax_adapter import _runtime  # noqa: E402
from normspec.adapters.jax_adapter.global_response_norm import (  # noqa: E402
    global_response_norm as jax_grn,
)
from normspec.adapters.torch_adapter.global_response_norm import (  # noqa: E402
    global_response_norm as torch_grn,
)

LAYOUTS = [((2, 3, 4, 5), -1), ((2, 5, 3, 4), 1), ((2, 3, 2, 2, 4), -1)]


def _case(shape: tuple[int, ...], axis: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = shape[axis]
    x = rng.standard_normal(shape)
    np.moveaxis(x, axis, -1)[0, ..., 0] = 0.0  # a zero channel: the subgradient 0
    return {"x": x, "weight": 1.0 + 0.25 * rng.standard_normal(c),
            "bias": 0.5 * rng.standard_normal(c), "g": rng.standard_normal(shape)}


@pytest.mark.parametrize(("shape", "axis"), LAYOUTS)
def test_numpy_translation_matches_the_reference(shape: tuple[int, ...], axis: int) -> None:
    d = _case(shape, axis)
    hyper = {"channel_axis": axis, "eps": 1e-6}
    inputs = {k: d[k] for k in ("x", "weight", "bias")}
    got = GLOBAL_RESPONSE_NORM.vjp(Numerics(), precision("float64"), inputs, hyper, d["g"])
    want = ref.vjp(*inputs.values(), cotangent=d["g"], **hyper)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize(("shape", "axis"), LAYOUTS)
def test_torch_translation_matches_the_reference(shape: tuple[int, ...], axis: int) -> None:
    d = _case(shape, axis)
    hyper = {"channel_axis": axis, "eps": 1e-6}
    t = {k: torch.tensor(d[k], requires_grad=True) for k in ("x", "weight", "bias")}
    y, stats = torch_grn(t, hyper, True)
    y.backward(torch.tensor(d["g"]))
    want = ref.forward(d["x"], d["weight"], d["bias"], **hyper)
    np.testing.assert_allclose(y.detach().numpy(), want["y"], rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(stats["nx"].detach().numpy(), want["nx"], rtol=1e-14)
    grads = ref.vjp(d["x"], d["weight"], d["bias"], cotangent=d["g"], **hyper)
    for key, tensor in t.items():
        assert tensor.grad is not None
        np.testing.assert_allclose(tensor.grad.numpy(), grads[key], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize(("shape", "axis"), LAYOUTS)
def test_jax_translation_matches_the_reference_forward(shape: tuple[int, ...], axis: int
                                                       ) -> None:
    d = _case(shape, axis)
    hyper = {"channel_axis": axis, "eps": 1e-6}
    _runtime.enable_x64()
    fn = jax_grn(jnp.float64, **hyper)
    y, stats = fn({k: jnp.asarray(d[k]) for k in ("x", "weight", "bias")}, {})
    want = ref.forward(d["x"], d["weight"], d["bias"], **hyper)
    np.testing.assert_allclose(np.asarray(y), want["y"], rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(np.asarray(stats["gx"]), want["gx"], rtol=1e-14)


def test_torch_vector_norm_gradient_at_a_zero_vector_is_zero() -> None:
    """The spec's subgradient is what PyTorch's autograd of the norm returns."""
    x = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    torch.linalg.vector_norm(x, 2).backward()
    assert x.grad is not None
    assert x.grad.tolist() == [0.0] * 4


def test_jax_norm_gradient_at_a_zero_vector_is_nan() -> None:
    """Minimal repro of the ledgered JAX deviation: ``jnp.linalg.norm`` is ``sqrt(sum(x*x))``,
    whose derivative at 0 is ``0.5 / sqrt(0) * 2x = inf * 0 = NaN`` (forward and reverse mode).
    The Flax ports of ConvNeXt V2 compute GRN's norm with it, so a zero channel gives NaN
    gradients for its whole sample."""
    zero = jnp.zeros(4, dtype=jnp.float32)
    assert np.isnan(np.asarray(jax.grad(lambda v: jnp.linalg.norm(v))(zero))).all()
    _, tangent = jax.jvp(jnp.linalg.norm, (zero,), (jnp.ones(4, dtype=jnp.float32),))
    assert np.isnan(float(tangent))
