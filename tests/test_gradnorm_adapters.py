"""gradnorm in the numpy, torch and JAX translations against the reference, and the framework
facts the compositions rely on (abs's derivative at 0, detaching the target), on the installed
wheels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from normspec.adapters.numpy_adapter import Numerics
from normspec.adapters.numpy_adapter._gradnorm import GRADNORM
from normspec.adapters.numpy_adapter._precision import precision
from normspec.reference import gradnorm as ref

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

from normspec.adapters.jax_adapter import _runtime  # noqa: E402
from normspec.adapters.jax_adapter import autodiff as jax_ad  # noqa: E402
from normspec.adapters.jax_adapter.gradnorm import gradnorm as jax_gradnorm  # noqa: E402
from normspec.adapters.torch_adapter import autodiff as torch_ad  # noqa: E402
from normspec.adapters.torch_adapter.gradnorm import gradnorm as torch_gradnorm  # noqa: E402

SETTINGS = [(2, 0.0, True), (3, 0.12, True), (4, 1.5, True), (5, 1.5, False)]


def _case(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.stack([rng.uniform(0.2, 3.0, n), rng.uniform(0.2, 2.0, n)])
    return {"x": x, "initial_losses": rng.uniform(0.5, 3.0, n),
            "weights": rng.uniform(0.5, 1.5, n), "c": rng.standard_normal(n),
            "tx": rng.standard_normal((2, n)), "tl": rng.standard_normal(n)}


def _want(d: dict[str, np.ndarray], hyper: dict[str, Any]) -> dict[str, Any]:
    args = (d["x"], d["initial_losses"])
    kw = {**hyper, "weights": d["weights"]}
    tan = {"x": d["tx"], "initial_losses": d["tl"]}
    return {"forward": ref.forward(*args, **kw),
            "vjp": ref.vjp(*args, cotangent=d["c"], **kw),
            "jvp": ref.jvp(*args, tangent=tan, **kw),
            "second": ref.second_order(*args, cotangent=d["c"], tangent=tan, **kw)}


@pytest.mark.parametrize(("n", "alpha", "training"), SETTINGS)
def test_numpy_translation_matches_the_reference(n: int, alpha: float, training: bool) -> None:
    d = _case(n)
    hyper = {"training": training, "alpha": alpha, "lr": 0.1}
    want = _want(d, hyper)
    inputs = {k: d[k] for k in ("x", "initial_losses", "weights")}
    nx, prec = Numerics(), precision("float64")
    out = GRADNORM.forward(nx, prec, inputs, hyper)
    assert set(out) == set(want["forward"])
    for key, value in want["forward"].items():
        np.testing.assert_allclose(out[key], value, rtol=1e-14, atol=1e-15)
    got = GRADNORM.vjp(nx, prec, inputs, hyper, d["c"])
    for key, value in want["vjp"].items():
        np.testing.assert_allclose(got[key], value, rtol=1e-13, atol=1e-15)
    tan = {"x": d["tx"], "initial_losses": d["tl"]}
    np.testing.assert_allclose(GRADNORM.jvp(nx, prec, inputs, hyper, tan), want["jvp"],
                               rtol=1e-13, atol=1e-15)
    got = GRADNORM.second_order(nx, prec, inputs, hyper, d["c"], tan)
    for key, value in want["second"].items():
        np.testing.assert_allclose(got[key], value, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize(("n", "alpha", "training"), SETTINGS)
def test_torch_composition_matches_the_reference(n: int, alpha: float, training: bool) -> None:
    d = _case(n, seed=1)
    hyper = {"training": training, "alpha": alpha, "lr": 0.1}
    want = _want(d, hyper)
    t = {k: torch.tensor(d[k]) for k in ("x", "initial_losses", "weights")}
    y, stats = torch_gradnorm(t, hyper, True)
    out = {"y": y, **stats}
    assert set(out) == set(want["forward"])
    for key, value in want["forward"].items():
        np.testing.assert_allclose(out[key].detach().numpy(), value, rtol=1e-14, atol=1e-15)

    def fn(x: Any, l0: Any) -> Any:
        return torch_gradnorm({"x": x, "initial_losses": l0, "weights": t["weights"]},
                              hyper, False)[0]

    prim = [t["x"], t["initial_losses"]]
    tan = [torch.tensor(d["tx"]), torch.tensor(d["tl"])]
    grads = torch_ad.vjp(fn, prim, torch.tensor(d["c"]))
    for got, key in zip(grads, ("x", "initial_losses"), strict=True):
        np.testing.assert_allclose(got.numpy(), want["vjp"][key], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(torch_ad.jvp(fn, prim, tan).numpy(), want["jvp"], rtol=1e-13,
                               atol=1e-15)
    second = torch_ad.second_order(fn, prim, torch.tensor(d["c"]), tan)
    for got, key in zip(second, ("x", "initial_losses"), strict=True):
        np.testing.assert_allclose(got.numpy(), want["second"][key], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize(("n", "alpha", "training"), SETTINGS)
def test_jax_composition_matches_the_reference(n: int, alpha: float, training: bool) -> None:
    d = _case(n, seed=2)
    hyper = {"training": training, "alpha": alpha, "lr": 0.1}
    want = _want(d, hyper)
    _runtime.enable_x64()
    fn = jax_gradnorm(jnp.float64, **hyper)
    p = {"x": jnp.asarray(d["x"]), "initial_losses": jnp.asarray(d["initial_losses"])}
    s = {"weights": jnp.asarray(d["weights"])}
    y, stats = fn(p, s)
    out = {"y": y, **stats}
    assert set(out) == set(want["forward"])
    for key, value in want["forward"].items():
        np.testing.assert_allclose(np.asarray(out[key]), value, rtol=1e-14, atol=1e-15)
    grads = jax_ad._vjp(fn)(p, s, jnp.asarray(d["c"]))
    for key, value in want["vjp"].items():
        np.testing.assert_allclose(np.asarray(grads[key]), value, rtol=1e-13, atol=1e-15)
    tan = {"x": jnp.asarray(d["tx"]), "initial_losses": jnp.asarray(d["tl"])}
    np.testing.assert_allclose(np.asarray(jax_ad._jvp(fn)(p, s, tan)), want["jvp"], rtol=1e-13,
                               atol=1e-15)
    second = jax_ad._second_order(fn)(p, s, jnp.asarray(d["c"]), tan)
    for key, value in want["second"].items():
        np.testing.assert_allclose(np.asarray(second[key]), value, rtol=1e-13, atol=1e-15)


def test_abs_derivative_at_zero_is_zero_in_torch_and_one_in_jax() -> None:
    """The spec's subgradient at the target (sign(0) = 0) is torch.abs's; jnp.abs's derivative
    at 0 is +1 (its JVP rule is select(x >= 0, t, -t)): the JAX ledger's evidence."""
    z = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    z.abs().sum().backward()
    assert z.grad is not None
    assert z.grad.tolist() == [0.0, 0.0]
    _runtime.enable_x64()
    assert float(jax.grad(lambda v: jnp.abs(v))(jnp.float64(0.0))) == 1.0
    assert float(jax.grad(lambda v: jnp.abs(v))(jnp.float32(0.0))) == 1.0


def test_a_task_at_its_target_keeps_its_weight_except_in_jax() -> None:
    x = np.array([[1.0, 2.0, 3.0], [0.75, 1.0, 0.75]])
    l0, w = np.array([0.5, 1.0, 1.5]), np.ones(3)
    hyper = {"training": True, "alpha": 1.5, "lr": 0.1}
    want = ref.forward(x, l0, weights=w, **hyper)["weight_grad"]
    assert want.tolist() == [-1.0, 0.0, 3.0]
    t = {"x": torch.tensor(x), "initial_losses": torch.tensor(l0), "weights": torch.tensor(w)}
    assert torch_gradnorm(t, hyper, True)[1]["weight_grad"].tolist() == want.tolist()
    _runtime.enable_x64()
    fn = jax_gradnorm(jnp.float64, **hyper)
    got = fn({"x": jnp.asarray(x), "initial_losses": jnp.asarray(l0)},
             {"weights": jnp.asarray(w)})[1]["weight_grad"]
    # jnp.abs's derivative at 0 is +1: the task at its target gets d = +g (ledgered)
    assert np.asarray(got).tolist() == [-1.0, 2.0, 3.0]
    out = GRADNORM.forward(Numerics(), precision("float64"),
                           {"x": x, "initial_losses": l0, "weights": w}, hyper)
    assert out["weight_grad"].tolist() == want.tolist()
