"""spectral_norm: the framework facts the spec page and the adapters rely on, on the installed
wheels (torch 2.13, flax 0.12), and the adapters' translations against the reference in float64.

Errata evidence: T18 (forward-mode AD through either PyTorch API raises), T19 (float16 autograd
of ``W / sigma`` overflows), T20 (the second order of ``matrix_norm(ord=2)`` is NaN at a repeated
zero singular value); T10 (``eps = 1e-12`` is 0 in float16) is shown for the zero vector.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from normspec.reference import spectral_norm as ref

torch = pytest.importorskip("torch")
F = torch.nn.functional
RNG = np.random.default_rng(1250)


def _module(w: Any) -> Any:
    m = torch.nn.Linear(w.shape[1], w.shape[0], bias=False).double()
    with torch.no_grad():
        m.weight.copy_(torch.as_tensor(w))
    return m


def test_torch_hook_updates_v_then_u_and_keeps_the_state_in_eval() -> None:
    w, u0 = RNG.standard_normal((4, 3)), RNG.standard_normal(4)
    m = torch.nn.utils.spectral_norm(_module(w), n_power_iterations=1, eps=1e-12)
    with torch.no_grad():
        m.weight_u.copy_(torch.as_tensor(u0))
    m(torch.eye(3, dtype=torch.float64))
    want = ref.forward(w, dim=0, mode="power_iteration", training=True, n_power_iterations=1,
                       update_order="v_first", eps=1e-12, u=u0, v=np.ones(3))
    np.testing.assert_allclose(m.weight_u.numpy(), want["u"], rtol=1e-13)
    np.testing.assert_allclose(m.weight_v.numpy(), want["v"], rtol=1e-13)
    m.eval()
    before = m.weight_u.clone()
    m(torch.eye(3, dtype=torch.float64))
    assert torch.equal(m.weight_u, before)                      # no iteration in eval()


def test_torch_parametrization_updates_u_then_v_after_15_initial_iterations() -> None:
    w = RNG.standard_normal((4, 3))
    torch.manual_seed(0)
    m = torch.nn.utils.parametrizations.spectral_norm(_module(w), n_power_iterations=1)
    sn = m.parametrizations.weight[0]
    # registration ran 15 iterations: u is already close to the top left singular vector
    u1 = np.linalg.svd(w)[0][:, 0]
    assert abs(float(sn._u.numpy() @ u1)) > 0.99
    u0, v0 = RNG.standard_normal(4), RNG.standard_normal(3)
    with torch.no_grad():
        sn._u.copy_(torch.as_tensor(u0))
        sn._v.copy_(torch.as_tensor(v0))
    y = m.weight
    want = ref.forward(w, dim=0, mode="power_iteration", training=True, n_power_iterations=1,
                       update_order="u_first", eps=1e-12, u=u0, v=v0)
    np.testing.assert_allclose(sn._u.numpy(), want["u"], rtol=1e-13)
    np.testing.assert_allclose(sn._v.numpy(), want["v"], rtol=1e-13)
    np.testing.assert_allclose(y.detach().numpy(), want["y"], rtol=1e-13)


# torch.func.jvp's first call imports a decomposition module that calls torch.jit.script
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_t18_forward_mode_ad_through_the_hook_raises() -> None:
    m = torch.nn.utils.spectral_norm(_module(RNG.standard_normal((4, 3))))

    def f(w: Any) -> Any:
        return torch.func.functional_call(m, {"weight_orig": w},
                                          (torch.eye(3, dtype=torch.float64),))

    with pytest.raises(NotImplementedError, match="forward AD with div_out"):
        torch.func.jvp(f, (m.weight_orig.detach(),),
                       (torch.ones(4, 3, dtype=torch.float64),))


def test_t19_float16_autograd_of_w_over_small_sigma_overflows() -> None:
    torch.manual_seed(0)
    m = torch.nn.Linear(4, 3, bias=False).half()
    with torch.no_grad():
        m.weight.copy_(0.01 * torch.randn(3, 4))
    torch.nn.utils.spectral_norm(m, n_power_iterations=1, eps=0.1)
    out = m(torch.eye(4, dtype=torch.float16))
    sigma = float((m.weight_orig / m.weight)[0, 0].detach())
    assert sigma < 1e-4                                      # sigma^2 < float16's subnormals
    grad = torch.autograd.grad(out, m.weight_orig, torch.ones_like(out))[0]
    assert torch.isnan(grad).all()


def test_t10_float16_eps_rounds_to_zero_so_a_zero_vector_normalizes_to_nan() -> None:
    assert torch.isnan(F.normalize(torch.zeros(3, dtype=torch.float16), dim=0, eps=1e-12)).all()
    assert not F.normalize(torch.zeros(3), dim=0, eps=1e-12).any()


def test_t20_second_order_of_matrix_norm_is_nan_at_a_repeated_zero_singular_value() -> None:
    def second(w: Any) -> Any:
        w = w.requires_grad_(True)
        y = w / torch.linalg.matrix_norm(w, ord=2)
        (g,) = torch.autograd.grad(y, w, torch.ones_like(w), create_graph=True)
        return torch.autograd.grad(g.sum(), w)[0]

    rank1 = torch.outer(torch.tensor([1.0, 2.0, -1.0, 0.5], dtype=torch.float64),
                        torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    assert torch.isnan(second(rank1)).all()
    assert torch.isfinite(second(torch.as_tensor(RNG.standard_normal((4, 3))))).all()
    # the reference's closed form is finite there: only differences to sigma_1 appear
    assert np.isfinite(ref.second_order(rank1.detach().numpy(), cotangent=np.ones((4, 3)),
                                        tangent={"x": np.ones((4, 3))}, dim=0, mode="exact",
                                        training=True)["x"]).all()


# --- Flax's SpectralNorm: what makes the JAX adapter a composition ---------------------------


def _flax(w: Any, u: Any, *, n_steps: int = 1, eps: float = 1e-12, update: bool = True
          ) -> tuple[Any, dict[str, Any]]:
    jax = pytest.importorskip("jax")
    nn = pytest.importorskip("flax.linen")
    jnp = jax.numpy

    class Kernel(nn.Module):
        @nn.compact
        def __call__(self) -> Any:
            return self.param("kernel", nn.initializers.zeros, w.shape, jnp.float32)

    layer = nn.SpectralNorm(Kernel(), n_steps=n_steps, epsilon=eps)
    variables = {"params": {"layer_instance": {"kernel": jnp.asarray(w, jnp.float32)}},
                 "batch_stats": {"layer_instance/kernel/u": jnp.asarray(u, jnp.float32)[None],
                                 "layer_instance/kernel/sigma": jnp.ones((), jnp.float32)}}
    y, state = layer.apply(variables, update_stats=update, mutable=["batch_stats"])
    return np.asarray(y), dict(state["batch_stats"])


def test_flax_keeps_no_v_and_matches_v_first_on_the_transposed_kernel() -> None:
    w, u0 = RNG.standard_normal((4, 3)), RNG.standard_normal(3)   # a Dense kernel (in, out)
    y, state = _flax(w, u0)
    assert sorted(state) == ["layer_instance/kernel/sigma", "layer_instance/kernel/u"]
    want = ref.forward(w, dim=-1, mode="power_iteration", training=True, n_power_iterations=1,
                       update_order="v_first", eps=1e-12, u=u0, v=np.ones(4))
    np.testing.assert_allclose(y, want["y"], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(state["layer_instance/kernel/u"])[0], want["u"],
                               rtol=1e-5)


def test_flax_evaluation_still_iterates() -> None:
    w, u0 = RNG.standard_normal((4, 3)), RNG.standard_normal(3)
    y, state = _flax(w, u0, update=False)
    np.testing.assert_array_equal(np.asarray(state["layer_instance/kernel/u"])[0],
                                  u0.astype(np.float32))          # not stored ...
    trained = ref.forward(w, dim=-1, mode="power_iteration", training=True,
                          n_power_iterations=1, update_order="v_first", eps=1e-12, u=u0,
                          v=np.ones(4))
    np.testing.assert_allclose(y, trained["y"], rtol=1e-5)        # ... but iterated


def test_flax_eps_is_inside_the_square_root_and_sigma_zero_returns_w() -> None:
    w, u0 = 0.01 * RNG.standard_normal((4, 3)), RNG.standard_normal(3)
    y, _ = _flax(w, u0, eps=0.1)
    spec = ref.forward(w, dim=-1, mode="power_iteration", training=True, n_power_iterations=1,
                       update_order="v_first", eps=0.1, u=u0, v=np.ones(4))["y"]
    assert not np.allclose(y, spec, rtol=1e-2)
    y0, _ = _flax(np.zeros((4, 3)), u0)
    assert not y0.any()                                           # the spec: NaN


# --- the adapters' translations against the reference, float64 -------------------------------

CASES = [
    ({"dim": 0, "mode": "exact", "training": True}, (4, 3)),
    ({"dim": 1, "mode": "exact", "training": True}, (2, 3, 2, 2)),
    ({"dim": 0, "mode": "power_iteration", "training": True, "n_power_iterations": 2,
      "update_order": "v_first", "eps": 1e-12}, (4, 3)),
    ({"dim": 1, "mode": "power_iteration", "training": True, "n_power_iterations": 2,
      "update_order": "u_first", "eps": 1e-12}, (2, 3, 2, 2)),
    ({"dim": 0, "mode": "power_iteration", "training": False}, (4, 3)),
]


def _draw(hyper: dict[str, Any], shape: tuple[int, ...]) -> tuple[Any, ...]:
    w, g, t = (RNG.standard_normal(shape) for _ in range(3))
    h = shape[hyper["dim"]]
    state = ({} if hyper["mode"] == "exact"
             else {"u": RNG.standard_normal(h), "v": RNG.standard_normal(w.size // h)})
    return w, g, t, state


@pytest.mark.parametrize(("hyper", "shape"), CASES)
def test_torch_translation_matches_the_reference(hyper: dict[str, Any],
                                                  shape: tuple[int, ...]) -> None:
    from normspec.adapters.torch_adapter import autodiff
    from normspec.adapters.torch_adapter import spectral_norm as ts
    from normspec.adapters.torch_adapter.methods import Translation

    w, g, t, state = _draw(hyper, shape)
    tr = Translation(("x",), ("u", "v"), ts.API, ts.spectral_norm, forward_ad=False)
    tensors = {"x": torch.as_tensor(w), **{k: torch.as_tensor(a) for k, a in state.items()}}
    y, stats = ts.spectral_norm(tensors, hyper, True)
    want = ref.forward(w, **hyper, **state)
    np.testing.assert_allclose(y.detach().numpy(), want["y"], rtol=1e-12, atol=1e-15)
    for key, value in stats.items():
        np.testing.assert_allclose(value.detach().numpy(), want[key], rtol=1e-12, atol=1e-15)
    fn = autodiff.bind(tr, ("x",), {k: tensors[k] for k in state}, hyper)
    x = [tensors["x"]]
    np.testing.assert_allclose(autodiff.vjp(fn, x, torch.as_tensor(g))[0].numpy(),
                               ref.vjp(w, cotangent=g, **hyper, **state)["x"], rtol=1e-11,
                               atol=1e-14)
    np.testing.assert_allclose(autodiff.jvp_reverse(fn, x, [torch.as_tensor(t)]).numpy(),
                               ref.jvp(w, tangent={"x": t}, **hyper, **state), rtol=1e-11,
                               atol=1e-14)
    np.testing.assert_allclose(
        autodiff.second_order_reverse(fn, x, torch.as_tensor(g), [torch.as_tensor(t)])[0]
        .numpy(), ref.second_order(w, cotangent=g, tangent={"x": t}, **hyper, **state)["x"],
        rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize(("hyper", "shape"), CASES)
def test_jax_composition_matches_the_reference(hyper: dict[str, Any],
                                               shape: tuple[int, ...]) -> None:
    jax = pytest.importorskip("jax")
    from normspec.adapters.jax_adapter.spectral_norm import spectral_norm as build

    jnp = jax.numpy
    w, g, t, state = _draw(hyper, shape)
    with jax.enable_x64(True):
        fn = build(jnp.float64, **hyper)
        s = {k: jnp.asarray(a) for k, a in state.items()}
        y, stats = fn({"x": jnp.asarray(w)}, s)
        want = ref.forward(w, **hyper, **state)
        np.testing.assert_allclose(np.asarray(y), want["y"], rtol=1e-12, atol=1e-15)
        for key, value in stats.items():
            np.testing.assert_allclose(np.asarray(value), want[key], rtol=1e-12, atol=1e-15)

        def f(x: Any) -> Any:
            return fn({"x": x}, s)[0]

        wj, gj, tj = jnp.asarray(w), jnp.asarray(g), jnp.asarray(t)
        np.testing.assert_allclose(np.asarray(jax.vjp(f, wj)[1](gj)[0]),
                                   ref.vjp(w, cotangent=g, **hyper, **state)["x"], rtol=1e-11,
                                   atol=1e-14)
        np.testing.assert_allclose(np.asarray(jax.jvp(f, (wj,), (tj,))[1]),
                                   ref.jvp(w, tangent={"x": t}, **hyper, **state), rtol=1e-11,
                                   atol=1e-14)
        so = jax.jvp(lambda x: jax.vjp(f, x)[1](gj)[0], (wj,), (tj,))[1]
        np.testing.assert_allclose(
            np.asarray(so), ref.second_order(w, cotangent=g, tangent={"x": t}, **hyper,
                                             **state)["x"], rtol=1e-10, atol=1e-13)
