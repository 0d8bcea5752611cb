"""PyTorch deviations behind ledger errata T10 (derivatives), T12, T13 and T14, in plain PyTorch.

Each test asserts that the deviation is still there *and* that its control is accurate: the
same computation in float64, a formula that keeps rstd's powers apart, reverse-over-reverse
differentiation, or the same data centred. When a PyTorch release fixes one of them, its test
fails: then rerun the conformance suite, regenerate adapters/ledgers/torch.toml with
tests/tools/torch_ledger.py and update docs/errata/torch.md. No normspec code runs here.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

torch = pytest.importorskip("torch", reason="the errata repros need the 'torch' extra")
F = torch.nn.functional
Tensor = torch.Tensor

# torch.func's first forward-AD call imports a module that calls the deprecated torch.jit.script
# itself (torch 2.13); nothing here uses it.
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.script` is :DeprecationWarning")

FLOAT32_MAX = torch.finfo(torch.float32).max


def _rel(a: Tensor, b: Tensor) -> float:
    """Max abs difference relative to the max magnitude of ``b``, in float64."""
    a64, b64 = a.double(), b.double()
    return float((a64 - b64).abs().max() / b64.abs().max())


def _draw(scale: float, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """float32 x and tangent of magnitude ``scale`` and an O(1) cotangent, shape (2, 13)."""
    gen = torch.Generator().manual_seed(seed)
    shape = (2, 13)
    return (torch.randn(shape, generator=gen) * scale, torch.randn(shape, generator=gen) * scale,
            torch.randn(shape, generator=gen))


def _vjp(f: Callable[[Tensor], Tensor], x: Tensor, g: Tensor) -> Tensor:
    v = x.detach().requires_grad_()
    (grad,) = torch.autograd.grad(f(v), v, g.to(x.dtype))
    return grad


def _jvp(f: Callable[[Tensor], Tensor], x: Tensor, t: Tensor) -> Tensor:
    out = torch.func.jvp(f, (x,), (t.to(x.dtype),))[1]
    assert isinstance(out, Tensor)
    return out


def _forward_over_reverse(f: Callable[[Tensor], Tensor], x: Tensor, g: Tensor,
                          t: Tensor) -> Tensor:
    """Derivative of the VJP (cotangent g fixed) along t."""
    return _jvp(lambda u: torch.func.vjp(f, u)[1](g.to(u.dtype))[0], x, t)


def _layer_norm(eps: float) -> Callable[[Tensor], Tensor]:
    return lambda v: F.layer_norm(v, [13], eps=eps)


def _rms_norm(eps: float) -> Callable[[Tensor], Tensor]:
    return lambda v: F.rms_norm(v, [13], eps=eps)


# --- T12: rstd cubed ---------------------------------------------------------------------------


def test_t12_rstd_cubed_underflows_float32_for_huge_inputs() -> None:
    x, _, _ = _draw(1e15, 0)
    rstd = torch.native_layer_norm(x, [13], None, None, 1e-5)[2]
    assert torch.all((rstd > 1e-16) & (rstd < 1e-14))
    # The cube is below float32's smallest normal (1.2e-38): a subnormal with a bit or two.
    assert torch.all(rstd.pow(3) < torch.finfo(torch.float32).tiny)


def test_t12_layer_norm_jvp_huge_float32_is_off_while_a_cube_free_formula_is_not() -> None:
    x, t, _ = _draw(1e15, 0)
    exact = _jvp(_layer_norm(1e-5), x.double(), t)
    assert _rel(_jvp(_layer_norm(1e-5), x, t), exact) > 1e-3  # torch: ~4e-2
    # Control: the same derivative in float32 from x_hat, without forming rstd^3.
    _, mean, rstd = torch.native_layer_norm(x, [13], None, None, 1e-5)
    x_hat = (x - mean) * rstd
    tc = t - t.mean(-1, keepdim=True)
    sound = rstd * (tc - x_hat * (x_hat * tc).mean(-1, keepdim=True))
    assert _rel(sound, exact) < 1e-5


@pytest.mark.parametrize("check", ["jvp", "second_order"])
def test_t12_layer_norm_derivatives_tiny_eps0_float32_are_nan(check: str) -> None:
    x, t, g = _draw(1e-15, 1)
    f = _layer_norm(0.0)

    def run(v: Tensor) -> Tensor:
        return _jvp(f, v, t) if check == "jvp" else _forward_over_reverse(f, v, g, t)

    exact = run(x.double())
    assert torch.isfinite(exact).all()
    assert torch.isnan(run(x)).any()


def test_t12_rms_norm_vjp_tiny_eps0_float32_overflows_although_it_fits() -> None:
    x, _, g = _draw(1e-15, 1)
    exact = _vjp(_rms_norm(0.0), x.double(), g)
    assert exact.abs().max() < FLOAT32_MAX
    assert torch.isinf(_vjp(_rms_norm(0.0), x, g)).any()


def test_t12_rms_norm_vjp_huge_float32_is_off() -> None:
    x, _, g = _draw(1e15, 0)
    exact = _vjp(_rms_norm(1e-5), x.double(), g)
    assert _rel(_vjp(_rms_norm(1e-5), x, g), exact) > 1e-3  # torch: ~8e-2
    # Control: the same VJP at x / 1e15 (rms_norm with a negligible eps is scale invariant:
    # its VJP scales by 1/c) is accurate in float32.
    scaled = _vjp(_rms_norm(1e-5 / 1e30), x / 1e15, g) / 1e15
    assert _rel(scaled, exact) < 1e-5


# --- T13: group norm, forward over reverse, uncentered sums ------------------------------------


def test_t13_group_norm_forward_over_reverse_loses_kappa_squared() -> None:
    gen = torch.Generator().manual_seed(0)
    z0 = torch.randn(1, 4, 8, 8, dtype=torch.float64, generator=gen)
    g = torch.randn(z0.shape, dtype=torch.float64, generator=gen)
    t = torch.randn(z0.shape, dtype=torch.float64, generator=gen)
    x = z0 - 1e4  # |mean|/std ~ 1e4
    z = x + 1e4  # exact (Sterbenz): the same data centred; every derivative is shift invariant
    assert torch.equal(z - 1e4, x)

    def gn(v: Tensor) -> Tensor:
        return F.group_norm(v, 2, eps=1e-5)

    def double_backward(v: Tensor) -> Tensor:
        v = v.detach().requires_grad_()
        (gv,) = torch.autograd.grad(gn(v), v, g, create_graph=True)
        (out,) = torch.autograd.grad(gv, v, t)
        return out

    # kappa^2 * u = 1e8 * 1.1e-16 ~ 1e-8 (measured 3e-8); kappa * u would be ~1e-12.
    assert _rel(_forward_over_reverse(gn, x, g, t), _forward_over_reverse(gn, z, g, t)) > 1e-9
    # Control: reverse over reverse through the same PyTorch backward stays at kappa * u.
    assert _rel(double_backward(x), double_backward(z)) < 1e-10


# --- T14: LRN, the adjoint of scale ------------------------------------------------------------


def test_t14_lrn_vjp_tiny_k0_float32_overflows_although_it_fits() -> None:
    def lrn(v: Tensor) -> Tensor:
        return F.local_response_norm(v, 3, alpha=1.0, beta=0.75, k=0.0)

    x = torch.full((1, 3, 1), 4e-16)
    g = torch.ones_like(x)
    assert torch.isfinite(lrn(x)).all()
    exact = _vjp(lrn, x.double(), g)
    assert torch.isfinite(exact).all()
    assert exact.abs().max() < FLOAT32_MAX
    assert torch.isinf(_vjp(lrn, x, g)).all()


# --- T10: the derivatives of F.normalize at a zero vector in float16 ----------------------------


@pytest.mark.parametrize("check", ["vjp", "jvp"])
def test_t10_normalize_zero_vector_float16_derivatives_are_nan(check: str) -> None:
    def normalize(v: Tensor) -> Tensor:
        return F.normalize(v, dim=1)

    x = torch.zeros(1, 3, dtype=torch.float16)
    ones = torch.ones_like(x)

    def run(v: Tensor) -> Tensor:
        return _vjp(normalize, v, ones) if check == "vjp" else _jvp(normalize, v, ones)

    # Control: float32 gives 1/eps = 1e12 (which rounds to inf in float16, an accepted overflow).
    assert torch.allclose(run(x.float()), torch.full((1, 3), 1e12))
    assert torch.isnan(run(x)).all()


@pytest.mark.parametrize("dim", [0, 1])
def test_t21_weight_norm_double_backward_is_wrong_where_the_composite_is_right(dim: int) -> None:
    gen = torch.Generator().manual_seed(21)
    v = torch.randn(3, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    shape = (3, 1) if dim == 0 else (1, 5)
    g = torch.randn(*shape, dtype=torch.float64, generator=gen, requires_grad=True)

    def fused(a: Tensor, b: Tensor) -> Tensor:
        out: Tensor = torch._weight_norm(a, b, dim)
        return out

    def plain(a: Tensor, b: Tensor) -> Tensor:
        out: Tensor = b * a / a.norm(dim=1 - dim, keepdim=True)
        return out

    assert torch.allclose(fused(v, g), plain(v, g))  # the forward agrees
    assert torch.autograd.gradcheck(fused, (v, g))  # and so does the first derivative
    assert not torch.autograd.gradgradcheck(fused, (v, g), raise_exception=False)
    assert torch.autograd.gradgradcheck(plain, (v, g))
