"""weight_standardization in the numpy, torch and JAX compositions, and the framework fact its
torch ledger entries rely on (torch.var_mean's Welford mean at an infinity)."""

from __future__ import annotations

import numpy as np
import pytest
from normspec.adapters.numpy_adapter import Numerics
from normspec.adapters.numpy_adapter._precision import precision
from normspec.adapters.numpy_adapter._weight_standardization import WEIGHT_STANDARDIZATION
from normspec.reference import weight_standardization as ref

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

from normspec.adapters.jax_adapter import _runtime  # noqa: E402
from normspec.adapters.jax_adapter.weight_standardization import (  # noqa: E402
    weight_standardization as jax_ws,
)
from normspec.adapters.torch_adapter.weight_standardization import (  # noqa: E402
    weight_standardization as torch_ws,
)

LAYOUTS = [((8, 3, 3, 3), 0, 1e-6), ((3, 3, 4, 8), -1, 1e-10), ((3, 4, 2, 2), 1, 0.0)]


def _case(shape: tuple[int, ...], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal(shape), "g": rng.standard_normal(shape)}


@pytest.mark.parametrize(("shape", "kept", "eps"), LAYOUTS)
def test_numpy_translation_matches_the_reference(shape: tuple[int, ...], kept: int,
                                                 eps: float) -> None:
    d = _case(shape)
    hyper = {"kept_axis": kept, "eps": eps}
    got = WEIGHT_STANDARDIZATION.vjp(Numerics(), precision("float64"), {"x": d["x"]}, hyper,
                                     d["g"])
    np.testing.assert_allclose(got["x"], ref.vjp(d["x"], cotangent=d["g"], **hyper)["x"],
                               rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize(("shape", "kept", "eps"), LAYOUTS)
def test_torch_translation_matches_the_reference(shape: tuple[int, ...], kept: int,
                                                 eps: float) -> None:
    d = _case(shape)
    hyper = {"kept_axis": kept, "eps": eps}
    x = torch.tensor(d["x"], requires_grad=True)
    y, stats = torch_ws({"x": x}, hyper, True)
    y.backward(torch.tensor(d["g"]))
    want = ref.forward(d["x"], **hyper)
    np.testing.assert_allclose(y.detach().numpy(), want["y"], rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(stats["var"].detach().numpy(), want["var"], rtol=1e-13)
    assert x.grad is not None
    np.testing.assert_allclose(x.grad.numpy(), ref.vjp(d["x"], cotangent=d["g"], **hyper)["x"],
                               rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize(("shape", "kept", "eps"), LAYOUTS)
def test_jax_translation_matches_the_reference(shape: tuple[int, ...], kept: int,
                                               eps: float) -> None:
    _runtime.enable_x64()
    d = _case(shape)
    hyper = {"kept_axis": kept, "eps": eps}
    fn = jax_ws(jnp.float64, **hyper)
    y, vjp_fn = jax.vjp(lambda v: fn({"x": v}, {})[0], jnp.asarray(d["x"]))
    (gx,) = vjp_fn(jnp.asarray(d["g"]))
    np.testing.assert_allclose(np.asarray(y), ref.forward(d["x"], **hyper)["y"], rtol=1e-13,
                               atol=1e-14)
    np.testing.assert_allclose(np.asarray(gx), ref.vjp(d["x"], cotangent=d["g"], **hyper)["x"],
                               rtol=1e-11, atol=1e-12)


def test_torch_var_mean_mean_is_nan_at_an_infinity() -> None:
    # errata T6: a Welford update computes inf - inf; torch.mean gives the spec's inf
    x = torch.tensor([[1.0, float("inf"), 2.0]], dtype=torch.float64)
    var, mean = torch.var_mean(x, dim=1, correction=0)
    assert torch.isnan(mean).all()
    assert torch.isnan(var).all()
    assert torch.isinf(x.mean(dim=1)).all()


def test_onnx_declines_weight_standardization() -> None:
    onnx = pytest.importorskip("normspec.adapters.onnx_adapter")
    for adapter in (onnx.ONNXRUNTIME, onnx.ONNX_REFERENCE):
        support = adapter.support("weight_standardization", "float32", "cpu")
        assert not support.supported
        assert support.reason
