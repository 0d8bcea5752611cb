"""weight_norm in the numpy, torch (both APIs) and JAX (Flax) translations, and the framework
facts the translations and the ledger entries rely on, repro'd on the installed wheels."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from normspec.adapters.numpy_adapter import Numerics
from normspec.adapters.numpy_adapter._precision import precision
from normspec.adapters.numpy_adapter._weight_norm import WEIGHT_NORM
from normspec.reference import weight_norm as ref

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

from normspec.adapters.jax_adapter import _runtime  # noqa: E402
from normspec.adapters.jax_adapter.weight_norm import weight_norm as jax_wn  # noqa: E402
from normspec.adapters.torch_adapter import weight_norm as torch_wn  # noqa: E402

LAYOUTS: list[tuple[tuple[int, ...], int | str, float]] = [
    ((4, 3, 2, 2), 0, 0.0), ((5, 6), -1, 0.0), ((3, 4, 5), 1, 0.0), ((6, 5), "none", 0.0),
    ((4, 3, 2), 0, 1e-3), ((7,), 0, 0.0),
]


def _case(shape: tuple[int, ...], kept: int | str, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal(shape),
            "g": rng.standard_normal(ref.g_shape(shape, kept)),
            "cot": rng.standard_normal(shape)}


@pytest.mark.parametrize(("shape", "kept", "eps"), LAYOUTS)
def test_numpy_translation_matches_the_reference(shape: tuple[int, ...], kept: int | str,
                                                 eps: float) -> None:
    d = _case(shape, kept)
    hyper = {"kept_axis": kept, "eps": eps}
    inputs = {"x": d["x"], "g": d["g"]}
    got = WEIGHT_NORM.vjp(Numerics(), precision("float64"), inputs, hyper, d["cot"])
    want = ref.vjp(d["x"], d["g"], cotangent=d["cot"], **hyper)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("api", ["parametrization", "hook"])
@pytest.mark.parametrize(("shape", "kept", "eps"), LAYOUTS)
def test_both_torch_apis_match_the_reference(api: str, shape: tuple[int, ...],
                                             kept: int | str, eps: float) -> None:
    d = _case(shape, kept)
    hyper = {"kept_axis": kept, "eps": eps}
    torch_wn.prepare(shape, hyper, torch.float64, torch.device("cpu"))
    run = torch_wn.weight_norm if api == "parametrization" else torch_wn.weight_norm_hook
    t = {k: torch.tensor(d[k], requires_grad=True) for k in ("x", "g")}
    y, _ = run(t, hyper, True)
    y.backward(torch.tensor(d["cot"]))
    np.testing.assert_allclose(y.detach().numpy(), ref.forward(d["x"], d["g"], **hyper)["y"],
                               rtol=1e-14, atol=1e-15)
    want = ref.vjp(d["x"], d["g"], cotangent=d["cot"], **hyper)
    for key, tensor in t.items():
        assert tensor.grad is not None
        np.testing.assert_allclose(tensor.grad.numpy(), want[key], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("shape", "kept", "eps"), LAYOUTS)
def test_the_hook_and_the_parametrization_agree_bit_for_bit(shape: tuple[int, ...],
                                                            kept: int | str, eps: float) -> None:
    d = _case(shape, kept, seed=3)
    hyper = {"kept_axis": kept, "eps": eps}
    torch_wn.prepare(shape, hyper, torch.float32, torch.device("cpu"))
    t = {k: torch.tensor(d[k], dtype=torch.float32) for k in ("x", "g")}
    a, _ = torch_wn.weight_norm(t, hyper, True)
    b, _ = torch_wn.weight_norm_hook(t, hyper, True)
    assert torch.equal(a, b)


def test_torch_dim_minus_one_is_the_whole_tensor_not_the_last_axis() -> None:
    v = torch.randn(4, 3, 2, dtype=torch.float64)
    assert torch.norm_except_dim(v, 2, -1).shape == ()
    assert torch.norm_except_dim(v, 2, -2).shape == (1, 3, 1)   # other negatives wrap
    assert torch.norm_except_dim(v, 2, 2).shape == (1, 1, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        m = torch.nn.utils.weight_norm(torch.nn.Linear(3, 4), dim=None)
    assert m.weight_g.shape == ()
    assert torch_wn._dim(-1, 3) == 2
    assert torch_wn._dim("none", 3) is None


def test_torch_weight_norm_has_no_eps_zero_slice_is_nan() -> None:
    v = torch.zeros(2, 3, dtype=torch.float64)
    v[0] = 1.0
    w = torch._weight_norm(v, torch.ones(2, 1, dtype=torch.float64), 0)
    assert torch.isnan(w[1]).all()
    assert torch.isfinite(w[0]).all()


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is :DeprecationWarning")
def test_errata_t17_torch_func_jvp_cannot_differentiate_weight_norm() -> None:
    from torch.func import jvp

    def wn(dim: int) -> object:
        return lambda a, b: torch._weight_norm(a, b, dim)

    v = torch.randn(4, 3, dtype=torch.float64)
    g0 = torch.ones(4, 1, dtype=torch.float64)
    with pytest.raises(NotImplementedError, match="_weight_norm_interface"):
        jvp(wn(0), (v, g0), (v, g0))
    g_all = torch.ones((), dtype=torch.float64)
    with pytest.raises(RuntimeError, match="forward gradient that has a different size"):
        jvp(wn(-1), (v, g_all), (v, g_all))
    v3 = torch.randn(4, 3, 2, dtype=torch.float64)
    g3 = torch.ones(1, 3, 1, dtype=torch.float64)
    jvp(wn(1), (v3, g3), (v3, g3))  # a middle axis takes the composite path: no error
    # reverse mode works on the same operator
    vr = v.clone().requires_grad_(True)
    torch._weight_norm(vr, g0, 0).sum().backward()
    assert vr.grad is not None


@pytest.mark.parametrize(("shape", "kept", "eps"), LAYOUTS)
def test_flax_weight_norm_matches_the_reference(shape: tuple[int, ...], kept: int | str,
                                                eps: float) -> None:
    d = _case(shape, kept)
    hyper = {"kept_axis": kept, "eps": eps}
    _runtime.enable_x64()
    fn = jax_wn(jnp.float64, **hyper)
    y, vjp_fn = jax.vjp(lambda x, g: fn({"x": x, "g": g}, {})[0],
                        jnp.asarray(d["x"]), jnp.asarray(d["g"]))
    gx, gg = vjp_fn(jnp.asarray(d["cot"]))
    np.testing.assert_allclose(np.asarray(y), ref.forward(d["x"], d["g"], **hyper)["y"],
                               rtol=1e-14, atol=1e-15)
    want = ref.vjp(d["x"], d["g"], cotangent=d["cot"], **hyper)
    np.testing.assert_allclose(np.asarray(gx), want["x"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(gg), want["g"], rtol=1e-12, atol=1e-14)


def test_flax_weight_norm_squares_in_the_kernel_dtype() -> None:
    # the JW1 ledger entries: a float16 kernel's squares overflow (|v| > 256) and Flax's
    # epsilon 1e-12 rounds to 0, so a zero slice is 0 * rsqrt(0) = NaN; float32 is fine
    v = np.array([[300.0, -200.0, 100.0], [0.0, 0.0, 0.0]])
    g = np.ones((2, 1))
    fn16 = jax_wn(jnp.float16, kept_axis=0, eps=1e-12)
    y16 = np.asarray(fn16({"x": jnp.asarray(v, jnp.float16), "g": jnp.asarray(g, jnp.float16)},
                          {})[0], dtype=np.float64)
    assert (y16[0] == 0.0).all()            # 300^2 overflows float16: v * rsqrt(inf) = 0
    assert np.isnan(y16[1]).all()           # eps rounds to 0 in float16
    fn32 = jax_wn(jnp.float32, kept_axis=0, eps=1e-12)
    y32 = np.asarray(fn32({"x": jnp.asarray(v, jnp.float32), "g": jnp.asarray(g, jnp.float32)},
                          {})[0], dtype=np.float64)
    want = ref.forward(v, g, kept_axis=0, eps=1e-12)["y"]
    np.testing.assert_allclose(y32, want, rtol=1e-6, atol=1e-7)


def test_onnx_declines_weight_norm() -> None:
    onnx = pytest.importorskip("normspec.adapters.onnx_adapter")
    for adapter in (onnx.ONNXRUNTIME, onnx.ONNX_REFERENCE):
        support = adapter.support("weight_norm", "float32", "cpu")
        assert not support.supported
        assert support.reason
