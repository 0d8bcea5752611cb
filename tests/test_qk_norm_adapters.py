"""qk_norm in the numpy, torch and JAX translations against the reference in float64, and the
framework facts the compositions rely on, repro'd on the installed wheels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from normspec.adapters.numpy_adapter import Numerics
from normspec.adapters.numpy_adapter._precision import precision
from normspec.adapters.numpy_adapter._qk_norm import QK_NORM
from normspec.reference import qk_norm as ref

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

from normspec.adapters.jax_adapter import _runtime  # noqa: E402
from normspec.adapters.jax_adapter.qk_norm import qk_norm as jax_qk  # noqa: E402
from normspec.adapters.torch_adapter.qk_norm import qk_norm as torch_qk  # noqa: E402

# (variant, layout, norm_axes, q shape, k shape, weighted, gain)
CONFIGS = [
    ("l2", "bhtd", "head", (2, 3, 4, 5), (2, 3, 6, 5), False, True),
    ("l2", "bthd", "head", (2, 4, 3, 5), (2, 1, 3, 5), False, False),
    ("rms", "bhtd", "head", (2, 3, 4, 5), (2, 3, 6, 5), True, False),
    ("rms", "bthd", "head", (1, 4, 2, 8), (1, 3, 2, 8), True, True),
    ("rms", "bhtd", "hidden", (2, 3, 4, 5), (2, 3, 6, 5), True, False),
    ("rms", "bthd", "hidden", (2, 4, 3, 5), (2, 2, 3, 5), False, False),
]
IDS = [f"{c[0]}-{c[1]}-{c[2]}" for c in CONFIGS]


def _case(cfg: tuple[Any, ...], seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, Any],
                                                         np.ndarray]:
    variant, layout, axes, qs, ks, weighted, gain = cfg
    rng = np.random.default_rng(seed)
    inputs = {"x": rng.standard_normal(qs), "k": rng.standard_normal(ks)}
    inputs["x"][(0,) * 3] = 0.0  # a zero query vector: the eps branches
    h = qs[1] if layout == "bhtd" else qs[2]
    if weighted:
        wshape = (h, qs[3]) if axes == "hidden" else (qs[3],)
        inputs["q_weight"] = 1.0 + 0.25 * rng.standard_normal(wshape)
        inputs["k_weight"] = 1.0 + 0.25 * rng.standard_normal(wshape)
    if gain:
        inputs["gain"] = np.array(2.5)
    hyper = {"variant": variant, "layout": layout, "norm_axes": axes, "logit_scale": 0.75,
             "eps": 1e-3}
    g = rng.standard_normal(ref.forward(**inputs, **hyper)["y"].shape)
    return inputs, hyper, g


def _ref_vjp(inputs: dict[str, np.ndarray], hyper: dict[str, Any], g: np.ndarray
             ) -> dict[str, np.ndarray]:
    return ref.vjp(**inputs, cotangent=g, **hyper)


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_numpy_translation_matches_the_reference(cfg: tuple[Any, ...]) -> None:
    inputs, hyper, g = _case(cfg)
    nx, prec = Numerics(), precision("float64")
    rng = np.random.default_rng(1)
    t = {k: rng.standard_normal(np.shape(v)) for k, v in inputs.items()}
    np.testing.assert_allclose(QK_NORM.forward(nx, prec, inputs, hyper)["y"],
                               ref.forward(**inputs, **hyper)["y"], rtol=1e-13, atol=1e-14)
    got = QK_NORM.vjp(nx, prec, inputs, hyper, g)
    want = _ref_vjp(inputs, hyper, g)
    assert set(got) == set(want)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(QK_NORM.jvp(nx, prec, inputs, hyper, t),
                               ref.jvp(**inputs, tangent=t, **hyper), rtol=1e-12, atol=1e-12)
    got2 = QK_NORM.second_order(nx, prec, inputs, hyper, g, t)
    want2 = ref.second_order(**inputs, cotangent=g, tangent=t, **hyper)
    for key in want2:
        np.testing.assert_allclose(got2[key], want2[key], rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_torch_translation_matches_the_reference(cfg: tuple[Any, ...]) -> None:
    inputs, hyper, g = _case(cfg)
    t = {k: torch.tensor(v, requires_grad=True) for k, v in inputs.items()}
    y, stats = torch_qk(t, hyper, True)
    want = ref.forward(**inputs, **hyper)
    np.testing.assert_allclose(y.detach().numpy(), want["y"], rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(stats["k_hat"].detach().numpy(), want["k_hat"], rtol=1e-14)
    grads = torch.autograd.grad(y, list(t.values()), torch.tensor(g))
    expected = _ref_vjp(inputs, hyper, g)
    for key, grad in zip(t, grads, strict=True):
        np.testing.assert_allclose(grad.numpy(), expected[key], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_jax_translation_matches_the_reference(cfg: tuple[Any, ...]) -> None:
    _runtime.enable_x64()
    inputs, hyper, g = _case(cfg)
    fn = jax_qk(jnp.float64, **hyper)
    p = {k: jnp.asarray(v) for k, v in inputs.items()}
    y, pull = jax.vjp(lambda p: fn(p, {})[0], p)
    np.testing.assert_allclose(np.asarray(y), ref.forward(**inputs, **hyper)["y"], rtol=1e-14,
                               atol=1e-14)
    (grads,) = pull(jnp.asarray(g))
    expected = _ref_vjp(inputs, hyper, g)
    for key in expected:
        np.testing.assert_allclose(np.asarray(grads[key]), expected[key], rtol=1e-12,
                                   atol=1e-12)


def test_torch_normalize_floors_the_norm_not_its_square() -> None:
    """F.normalize divides by max(||v||, eps): the spec's l2 rule (tf.nn.l2_normalize floors
    the sum of squares, an eps of eps^2 here)."""
    v = torch.tensor([[3e-4, 4e-4]], dtype=torch.float64)
    out = torch.nn.functional.normalize(v, p=2.0, dim=-1, eps=1e-3)
    np.testing.assert_allclose(out.numpy(), v.numpy() / 1e-3, rtol=1e-15)


def test_jax_zero_query_gradient_is_finite() -> None:
    """The NaN-safe norm: reverse mode through a zero query vector is the clamped branch's."""
    _runtime.enable_x64()
    cfg = CONFIGS[0]
    inputs, hyper, g = _case(cfg)
    fn = jax_qk(jnp.float64, **{**hyper, "eps": 1e-12})
    _, pull = jax.vjp(lambda p: fn(p, {})[0], {k: jnp.asarray(v) for k, v in inputs.items()})
    (grads,) = pull(jnp.asarray(g))
    assert np.all(np.isfinite(np.asarray(grads["x"])))
