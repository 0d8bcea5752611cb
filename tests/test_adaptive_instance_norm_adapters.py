"""adaptive_instance_norm in the numpy, torch and JAX adapters; repros of its ledger entries.

Each adapter agrees with the reference in float64 on small cases (both estimators, a style with
another spatial size, channels-last); the torch composition refuses a spatial size of 1 through
``F.instance_norm`` (T3); JAX's autodiff of the composition loses the second order in float32 at
the huge scale (the div and sqrt rules, as for the other jax.numpy compositions).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from normspec.adapters.numpy_adapter import Numerics
from normspec.adapters.numpy_adapter._adaptive_instance_norm import ADAPTIVE_INSTANCE_NORM
from normspec.adapters.numpy_adapter._precision import precision
from normspec.reference import adaptive_instance_norm as reference

RNG = np.random.default_rng(2017)
CASES = [
    ((2, 3, 5), (2, 3, 7), {"variance_estimator": "unbiased", "eps": 1e-5}),
    ((2, 3, 4, 2), (2, 5, 3, 2), {"channel_axis": -1, "variance_estimator": "biased",
                                  "eps": 1e-3}),
    ((1, 2, 6), (1, 2, 3), {"variance_estimator": "unbiased", "eps": 0.1}),
]


def _draw(shape: tuple[int, ...], sshape: tuple[int, ...]) -> dict[str, Any]:
    x, s = RNG.standard_normal(shape), 1.0 + 2.0 * RNG.standard_normal(sshape)
    return {"x": x, "style": s, "g": RNG.standard_normal(shape),
            "tx": RNG.standard_normal(shape), "ts": RNG.standard_normal(sshape)}


def _want(d: dict[str, Any], hyper: dict[str, Any]) -> dict[str, Any]:
    t = {"x": d["tx"], "style": d["ts"]}
    return {"y": reference.forward(d["x"], d["style"], **hyper)["y"],
            "vjp": reference.vjp(d["x"], d["style"], cotangent=d["g"], **hyper),
            "jvp": reference.jvp(d["x"], d["style"], tangent=t, **hyper),
            "so": reference.second_order(d["x"], d["style"], cotangent=d["g"], tangent=t,
                                         **hyper)}


def _close(got: Any, want: Any) -> None:
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("shape", "sshape", "hyper"), CASES)
def test_numpy_translation_matches_the_reference(shape: tuple[int, ...],
                                                 sshape: tuple[int, ...],
                                                 hyper: dict[str, Any]) -> None:
    d, nx, prec = _draw(shape, sshape), Numerics(), precision("float64")
    want, inputs = _want(d, hyper), {"x": d["x"], "style": d["style"]}
    t = {"x": d["tx"], "style": d["ts"]}
    _close(ADAPTIVE_INSTANCE_NORM.forward(nx, prec, inputs, hyper)["y"], want["y"])
    got = ADAPTIVE_INSTANCE_NORM.vjp(nx, prec, inputs, hyper, d["g"])
    for key in ("x", "style"):
        _close(got[key], want["vjp"][key])
    _close(ADAPTIVE_INSTANCE_NORM.jvp(nx, prec, inputs, hyper, t), want["jvp"])
    got = ADAPTIVE_INSTANCE_NORM.second_order(nx, prec, inputs, hyper, d["g"], t)
    for key in ("x", "style"):
        _close(got[key], want["so"][key])


@pytest.mark.parametrize(("shape", "sshape", "hyper"), CASES)
def test_torch_composition_matches_the_reference(shape: tuple[int, ...],
                                                 sshape: tuple[int, ...],
                                                 hyper: dict[str, Any]) -> None:
    torch = pytest.importorskip("torch")
    from normspec.adapters.torch_adapter.adaptive_instance_norm import adaptive_instance_norm

    d = _draw(shape, sshape)
    want = _want(d, hyper)
    x = torch.tensor(d["x"], requires_grad=True)
    s = torch.tensor(d["style"], requires_grad=True)
    y, stats = adaptive_instance_norm({"x": x, "style": s}, hyper, True)
    assert stats == {}
    _close(y.detach().numpy(), want["y"])
    gx, gs = torch.autograd.grad(y, (x, s), torch.tensor(d["g"]))
    _close(gx.numpy(), want["vjp"]["x"])
    _close(gs.numpy(), want["vjp"]["style"])


def test_torch_composition_refuses_a_spatial_size_of_one() -> None:
    # T3: F.instance_norm's _verify_spatial_size; the spec gives y = style_mean
    torch = pytest.importorskip("torch")
    from normspec.adapters.torch_adapter.adaptive_instance_norm import adaptive_instance_norm

    x, s = torch.zeros(2, 3, 1, dtype=torch.float64), torch.ones(2, 3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="more than 1 spatial element"):
        adaptive_instance_norm({"x": x, "style": s},
                               {"variance_estimator": "biased", "eps": 1e-5}, False)


@pytest.mark.parametrize(("shape", "sshape", "hyper"), CASES)
def test_jax_composition_matches_the_reference(shape: tuple[int, ...],
                                               sshape: tuple[int, ...],
                                               hyper: dict[str, Any]) -> None:
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    from normspec.adapters.jax_adapter.adaptive_instance_norm import adaptive_instance_norm

    jax.config.update("jax_enable_x64", True)
    d = _draw(shape, sshape)
    want = _want(d, hyper)
    fn = adaptive_instance_norm(jnp.float64, **hyper)

    def f(x: Any, s: Any) -> Any:
        return fn({"x": x, "style": s}, {})[0]

    y, pull = jax.vjp(f, jnp.asarray(d["x"]), jnp.asarray(d["style"]))
    _close(y, want["y"])
    gx, gs = pull(jnp.asarray(d["g"]))
    _close(gx, want["vjp"]["x"])
    _close(gs, want["vjp"]["style"])
    _, dy = jax.jvp(f, (jnp.asarray(d["x"]), jnp.asarray(d["style"])),
                    (jnp.asarray(d["tx"]), jnp.asarray(d["ts"])))
    _close(dy, want["jvp"])


def test_jax_second_order_of_the_composition_is_lost_in_float32_at_the_huge_scale() -> None:
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    from normspec.adapters.jax_adapter.adaptive_instance_norm import adaptive_instance_norm

    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(7)
    x64 = (1e15 * rng.standard_normal((2, 2, 6))).astype(np.float32).astype(np.float64)
    s64 = rng.standard_normal((2, 2, 7)).astype(np.float32).astype(np.float64)
    g, tx = rng.standard_normal(x64.shape), 1e15 * rng.standard_normal(x64.shape)
    hyper = {"variance_estimator": "unbiased", "eps": 1e-5}
    want = reference.second_order(x64, s64, cotangent=g, tangent={"x": tx}, **hyper)["x"]

    def second(dt: Any) -> np.ndarray:
        fn = adaptive_instance_norm(dt, **hyper)
        s = jnp.asarray(s64, dt)

        def pulled(x: Any) -> Any:
            return jax.vjp(lambda v: fn({"x": v, "style": s}, {})[0], x)[1](
                jnp.asarray(g, dt))[0]

        out = jax.jvp(pulled, (jnp.asarray(x64, dt),), (jnp.asarray(tx, dt),))[1]
        return np.asarray(out, dtype=np.float64)

    rel = {dt.__name__: np.max(np.abs(second(dt) - want)) / np.max(np.abs(want))
           for dt in (np.float64, np.float32)}
    assert rel["float64"] < 1e-10
    assert not rel["float32"] < 1e-2  # std^-3 ~ 1e-45 leaves float32's range (or NaN)
