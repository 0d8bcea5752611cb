"""mixed_eval_batch_norm and batch_instance_norm in the numpy, torch and JAX adapters.

The adapters agree with the reference in float64 (gates exactly at the clip ends and outside
included), and the framework facts their compositions and ledger entries rely on are repro'd
here on the installed wheels: the three slopes of a clip at its ends, torch.var_mean's mean of
an infinite channel, autodiff of rsqrt and of a division at the huge scale, and PyTorch's half
instance norm at a large offset and in forward mode.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from normspec import reference
from normspec.adapters.numpy_adapter import ADAPTER as NUMPY
from normspec.adapters.numpy_adapter import Numerics

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

from normspec.adapters.jax_adapter import ADAPTER as JAX  # noqa: E402
from normspec.adapters.jax_adapter.batch_instance_norm import spec_clip  # noqa: E402
from normspec.adapters.torch_adapter import ADAPTER as TORCH  # noqa: E402

ENDS = np.array([-0.5, 0.0, 0.5, 1.0, 1.5])


def _quiet_jvp(fn: Any, primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> Any:
    """``torch.func.jvp``; its first call warns that torch.jit.script (used inside torch's own
    forward-AD decompositions) is deprecated, which is nothing this test did."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is ",
                                category=DeprecationWarning)
        return torch.func.jvp(fn, primals, tangents)[1]
SPEC_SLOPE = [0.0, 1.0, 1.0, 1.0, 0.0]


# --- the clip's slope at its ends ------------------------------------------------------------


def test_torch_clamp_has_the_spec_slope_at_both_ends() -> None:
    r = torch.tensor(ENDS, requires_grad=True)
    torch.clamp(r, 0.0, 1.0).sum().backward()
    assert r.grad is not None
    assert r.grad.tolist() == SPEC_SLOPE
    ones = torch.ones(5, dtype=torch.float64)
    forward = _quiet_jvp(lambda v: torch.clamp(v, 0.0, 1.0), (r.detach(),), (ones,))
    assert forward.tolist() == SPEC_SLOPE


def test_jax_clips_differ_at_the_ends_and_the_adapter_writes_the_spec_slope_out() -> None:
    jax.config.update("jax_enable_x64", True)
    a = jnp.asarray(ENDS)

    def slope(f: Any) -> list[float]:
        return [float(v) for v in jax.grad(lambda v: f(v).sum())(a)]

    # jnp.clip is maximum then minimum, whose derivative splits a tie in half
    assert slope(lambda v: jnp.clip(v, 0.0, 1.0)) == [0.0, 0.5, 1.0, 0.5, 0.0]
    # lax.clamp's JVP selects the operand only strictly inside
    assert slope(lambda v: jax.lax.clamp(0.0, v, 1.0)) == [0.0, 0.0, 1.0, 0.0, 0.0]
    assert slope(spec_clip) == SPEC_SLOPE


def test_numpy_adapter_gate_slope_is_the_spec_slope() -> None:
    r, slope = Numerics().gate_clip(ENDS.copy())
    assert r.tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert slope.tolist() == SPEC_SLOPE


# --- the adapters against the reference in float64 --------------------------------------------


def _call(method: str) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, np.ndarray]]:
    """(inputs, hyper, reference keywords) of a small float64 call with every kind of gate."""
    rng = np.random.default_rng(5)
    x = rng.normal(0.5, 2.0, (4, 4, 5))
    inputs = {"x": x, "weight": rng.normal(1.0, 0.3, 4), "bias": rng.normal(0.0, 0.5, 4),
              "running_mean": rng.normal(0.0, 1.0, 4), "running_var": rng.uniform(0.5, 2.0, 4)}
    if method == "mixed_eval_batch_norm":
        return inputs, {"alpha": 0.3, "eps": 1e-5}, {}
    inputs["rho"] = np.array([0.0, 1.0, -0.5, 0.4])
    return inputs, {"training": True, "eps": 1e-5, "batch_stat_weight": 0.1,
                    "running_var_estimator": "unbiased"}, {}


@pytest.mark.parametrize("adapter", [NUMPY, TORCH, JAX], ids=["numpy", "torch", "jax"])
@pytest.mark.parametrize("method", ["mixed_eval_batch_norm", "batch_instance_norm"])
def test_adapters_agree_with_the_reference_in_float64(adapter: Any, method: str) -> None:
    inputs, hyper, _ = _call(method)
    mod = reference.get(method)
    primals = {k: v for k, v in inputs.items() if k in mod.PRIMALS}
    state = {k: inputs[k] for k in ("running_mean", "running_var")}
    rng = np.random.default_rng(6)
    g = rng.standard_normal(inputs["x"].shape)
    t = {k: rng.standard_normal(v.shape) for k, v in primals.items()}
    kw = {"dtype": "float64", "device": "cpu"}
    got = adapter.forward(method, inputs, hyper, **kw)
    want = mod.forward(**primals, **state, **hyper)
    for key in set(got) & set(want):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-12, atol=1e-12, err_msg=key)
    grads, ref_grads = adapter.vjp(method, inputs, hyper, g, **kw), mod.vjp(
        **primals, cotangent=g, **state, **hyper)
    assert set(grads) == set(ref_grads)
    for key in grads:
        np.testing.assert_allclose(grads[key], ref_grads[key], rtol=1e-11, atol=1e-11,
                                   err_msg=key)
    np.testing.assert_allclose(adapter.jvp(method, inputs, hyper, t, **kw),
                               mod.jvp(**primals, tangent=t, **state, **hyper),
                               rtol=1e-11, atol=1e-11)
    so = adapter.second_order(method, inputs, hyper, g, t, **kw)
    ref_so = mod.second_order(**primals, cotangent=g, tangent=t, **state, **hyper)
    for key in so:
        np.testing.assert_allclose(so[key], ref_so[key], rtol=1e-10, atol=1e-10, err_msg=key)


@pytest.mark.parametrize("adapter", [TORCH, JAX], ids=["torch", "jax"])
def test_compositions_are_labelled_composed(adapter: Any) -> None:
    for method in ("mixed_eval_batch_norm", "batch_instance_norm"):
        support = adapter.support(method, "float32", "cpu")
        assert support.supported
        assert support.kind == "composed"


# --- torch facts the mixed-eval composition relies on -------------------------------------------


def test_torch_var_mean_mean_of_an_infinite_channel_is_nan() -> None:
    x = torch.tensor([1.0, -float("inf"), 2.0, 3.0], dtype=torch.float64)
    var, mean = torch.var_mean(x, correction=0)
    assert torch.isnan(mean)
    assert torch.isnan(var)
    assert torch.mean(x).item() == -float("inf")  # the spec's mean, and the composition's


def test_torch_rsqrt_derivative_underflows_float32_at_the_huge_scale() -> None:
    # 1e15 is float32's huge scale (spec/FORMAT.md); its variance is 1e30
    v = torch.tensor(1e30, dtype=torch.float32, requires_grad=True)
    torch.rsqrt(v).backward()
    assert v.grad is not None
    assert v.grad.item() == 0.0  # -0.5 * 1e30**-1.5 = -5e-46 is below float32's subnormals

    def grad(form: str, dt: Any) -> np.ndarray:
        x = torch.tensor([1e15, -1e15, 3e14], dtype=dt, requires_grad=True)
        var = torch.var(x, correction=0)
        y = (x - x.mean()) * torch.rsqrt(var) if form == "rsqrt" else (
            (x - x.mean()) / torch.sqrt(var))
        (y * torch.tensor([1.0, 0.5, -2.0], dtype=dt)).sum().backward()
        assert x.grad is not None
        out: np.ndarray = x.grad.double().numpy()
        return out

    exact = grad("div", torch.float64)
    rel = {form: np.max(np.abs(grad(form, torch.float32) - exact)) / np.max(np.abs(exact))
           for form in ("rsqrt", "div")}
    # the variance's path through rsqrt is lost: 1e4 units of float32 roundoff and more
    assert rel["rsqrt"] > 1e4 * 2.0**-24
    assert rel["div"] < 1e2 * 2.0**-24


# --- JAX: the division rule at the huge scale (mixed_eval_batch_norm's J2 entry) ---------------


def test_jax_second_order_of_the_mixed_composition_is_lost_in_float32_at_the_huge_scale() -> None:
    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(7)
    x64 = 1e15 * rng.standard_normal((4, 3))
    x64 = x64.astype(np.float32).astype(np.float64)
    g, t = rng.standard_normal(x64.shape), rng.standard_normal(x64.shape) * 1e15
    rm, rv = np.zeros(3), np.ones(3)
    want = reference.get("mixed_eval_batch_norm").second_order(
        x64, cotangent=g, tangent={"x": t}, running_mean=rm, running_var=rv, alpha=0.6,
        eps=1e-5)["x"]

    def second(dt: Any) -> np.ndarray:
        def f(x: Any) -> Any:
            mb, vb = jnp.mean(x, axis=0), jnp.var(x, axis=0)
            var = 0.6 * vb + 0.4 * rv.astype(dt) + 0.24 * (mb - rm.astype(dt)) ** 2
            return (x - (0.6 * mb + 0.4 * rm.astype(dt))) / jnp.sqrt(var + 1e-5)

        def pulled(x: Any) -> Any:
            return jax.vjp(f, x)[1](jnp.asarray(g, dt))[0]

        out = jax.jvp(pulled, (jnp.asarray(x64, dt),), (jnp.asarray(t, dt),))[1]
        return np.asarray(out, dtype=np.float64)

    rel = {dt.__name__: np.max(np.abs(second(dt) - want)) / np.max(np.abs(want))
           for dt in (np.float64, np.float32)}
    assert rel["float64"] < 1e-10
    assert rel["float32"] > 1e-2  # std^-3 ~ 1e-45 leaves float32's range in the div rule


# --- PyTorch's half batch/instance norm at an offset and in forward mode (ledger T8, T7) --------


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_torch_half_instance_norm_loses_a_large_offset(dtype: str) -> None:
    """T8 through the instance branch: the same op in float32, rounded once, is 100x better."""
    rng = np.random.default_rng(8)
    tdt = getattr(torch, dtype)
    x = torch.tensor(1e3 + rng.standard_normal((3, 3, 6))).to(tdt).double()
    exact = torch.nn.functional.instance_norm(x, eps=1e-5)
    half = torch.nn.functional.instance_norm(x.to(tdt), eps=1e-5).double()
    once = torch.nn.functional.instance_norm(x.float(), eps=1e-5).to(tdt).double()
    assert (half - exact).abs().max() > 100 * (once - exact).abs().max()


def test_torch_half_instance_norm_forward_mode_overflows() -> None:
    """T7 through the instance branch: a small-spread instance's rstd^3 overflows float16."""
    x = torch.tensor([[[1e-3, -2e-3, 3e-3, 5e-4, -1e-3]]], dtype=torch.float64)
    t = torch.ones_like(x)

    def jvp(dt: Any) -> Any:
        return _quiet_jvp(lambda v: torch.nn.functional.instance_norm(v, eps=1e-5),
                          (x.to(dt),), (t.to(dt),))

    assert not torch.isfinite(jvp(torch.float16)).all()
    assert torch.isfinite(jvp(torch.float32)).all()
