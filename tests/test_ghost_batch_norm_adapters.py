"""ghost_batch_norm in the built-in adapters: float64 agreement, trajectories, the compositions.

Expected values come from normspec.reference, never from an adapter. The facts the torch and
JAX compositions rely on (what F.batch_norm's running variance divides by on the ghost view,
which sets Flax's BatchNorm reduces there) are checked on the installed wheels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from normspec.adapters.numpy_adapter import ADAPTER as NUMPY
from normspec.adapters.protocol import Adapter
from normspec.reference import ghost_batch_norm as ref

METHOD = "ghost_batch_norm"
STATE = ("running_mean", "running_var")
RTOL64 = 1e-11
"""float64 results of two correct implementations differ by a few ulp of the scale times the
conditioning of these mild inputs; a convention error is of order 1e-2 or more."""


def _adapter(name: str) -> Adapter:
    if name == "numpy":
        return NUMPY
    if name == "torch":
        pytest.importorskip("torch")
        from normspec.adapters.torch_adapter import ADAPTER as TORCH

        return TORCH
    pytest.importorskip("jax")
    pytest.importorskip("flax.linen")
    from normspec.adapters.jax_adapter import ADAPTER as JAX

    return JAX


ADAPTERS = [pytest.param("numpy"), pytest.param("torch", marks=pytest.mark.torch),
            pytest.param("jax", marks=pytest.mark.jax)]


def _levels(rng: np.random.Generator, shape: tuple[int, ...], size: int) -> np.ndarray:
    """A batch whose ghost batches sit at different levels, so a wrong split shows."""
    x = rng.standard_normal(shape)
    lead = np.repeat(rng.normal(0.0, 3.0, shape[0] // size), size)
    return x + lead.reshape((-1,) + (1,) * (len(shape) - 1))


# (id, shape, hyper, affine, state)
CASES: list[tuple[str, tuple[int, ...], dict[str, Any], tuple[str, ...], bool]] = [
    ("train-G=3-untracked", (6, 3, 2), {"training": True, "ghost_batch_size": 2},
     ("weight", "bias"), False),
    ("train-G=2-unbiased", (8, 3, 2, 2), {"training": True, "ghost_batch_size": 4,
                                          "batch_stat_weight": 0.1,
                                          "running_var_estimator": "unbiased"},
     ("weight", "bias"), True),
    ("train-G=4-biased-cumulative", (8, 2, 3), {
        "training": True, "ghost_batch_size": 2, "batch_stat_weight": "cumulative",
        "num_batches_tracked": 3, "running_var_estimator": "biased"}, ("weight",), True),
    ("train-channels-last", (6, 2, 3, 4), {"training": True, "ghost_batch_size": 3,
                                           "channel_axis": -1, "batch_stat_weight": 0.25,
                                           "running_var_estimator": "unbiased"},
     ("bias",), True),
    ("train-G=1", (5, 3), {"training": True, "ghost_batch_size": 5, "batch_stat_weight": 0.5,
                           "running_var_estimator": "biased"}, ("weight", "bias"), True),
    ("train-B=1-spatial", (3, 2, 5), {"training": True, "ghost_batch_size": 1,
                                      "batch_stat_weight": 0.1,
                                      "running_var_estimator": "unbiased"}, (), True),
    ("eval-indivisible", (5, 3, 2), {"training": False, "ghost_batch_size": 2},
     ("weight", "bias"), True),
]


def _inputs(shape: tuple[int, ...], hyper: Mapping[str, Any], affine: tuple[str, ...],
            state: bool, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    channels = shape[hyper.get("channel_axis", 1) % len(shape)]
    out = {"x": _levels(rng, shape, hyper["ghost_batch_size"])
           if hyper["training"] else rng.standard_normal(shape)}
    for name in affine:
        out[name] = rng.normal(1.0 if name == "weight" else 0.0, 0.5, channels)
    if state:
        out["running_mean"] = rng.normal(0.0, 1.0, channels)
        out["running_var"] = rng.uniform(0.5, 2.0, channels)
    return out


def _reference(check: str, inputs: Mapping[str, np.ndarray], hyper: Mapping[str, Any],
               g: np.ndarray, t: Mapping[str, np.ndarray]) -> Any:
    kw = {**inputs, **hyper, "eps": 1e-5}
    if check == "forward":
        return ref.forward(**kw)
    if check == "vjp":
        return ref.vjp(**kw, cotangent=g)
    if check == "jvp":
        return ref.jvp(**kw, tangent=t)
    return ref.second_order(**kw, cotangent=g, tangent=t)


def _call(adapter: Adapter, check: str, inputs: Mapping[str, np.ndarray],
          hyper: Mapping[str, Any], g: np.ndarray, t: Mapping[str, np.ndarray],
          dtype: str = "float64") -> Any:
    h = {**hyper, "eps": 1e-5}
    kw = {"dtype": dtype, "device": "cpu"}
    if check == "forward":
        return adapter.forward(METHOD, inputs, h, **kw)
    if check == "vjp":
        return adapter.vjp(METHOD, inputs, h, g, **kw)
    if check == "jvp":
        return adapter.jvp(METHOD, inputs, h, t, **kw)
    return adapter.second_order(METHOD, inputs, h, g, t, **kw)


def _close(got: np.ndarray, want: np.ndarray, what: str, rtol: float = RTOL64) -> None:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    scale = max(float(np.max(np.abs(want))), 1e-300)
    err = float(np.max(np.abs(got - want)))
    assert err <= rtol * scale, f"{what}: max abs error {err:.3g}, scale {scale:.3g}"


@pytest.mark.parametrize("check", ["forward", "vjp", "jvp", "second_order"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("name", ADAPTERS)
def test_float64_agrees_with_the_reference(name: str, case: tuple[Any, ...], check: str) -> None:
    adapter = _adapter(name)
    _, shape, hyper, affine, state = case
    inputs = _inputs(shape, hyper, affine, state)
    rng = np.random.default_rng(1)
    g = rng.standard_normal(shape)
    t = {k: rng.standard_normal(v.shape) for k, v in inputs.items() if k not in STATE}
    got = _call(adapter, check, inputs, hyper, g, t)
    want = _reference(check, inputs, hyper, g, t)
    if check == "jvp":
        _close(got, want, "jvp")
        return
    if check == "forward":
        assert "y" in got
        assert set(got) <= set(want), sorted(set(got) - set(want))
        if state and hyper["training"]:
            assert set(STATE) <= set(got), "the updated running statistics are required"
    else:
        assert set(got) == set(want)
    for key, value in got.items():
        _close(value, np.reshape(want[key], np.shape(value)), f"{check}/{key}")


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
@pytest.mark.parametrize("name", ADAPTERS)
def test_five_step_trajectory_threads_the_adapters_own_state(name: str, estimator: str) -> None:
    adapter = _adapter(name)
    rng = np.random.default_rng(5)
    hyper = {"training": True, "eps": 1e-5, "ghost_batch_size": 2, "batch_stat_weight": 0.3,
             "running_var_estimator": estimator}
    mine = {"running_mean": np.zeros(3), "running_var": np.ones(3)}
    theirs = dict(mine)
    for step in range(5):
        count = step  # num_batches_tracked before this step
        x = _levels(rng, (6, 3, 4), 2) * (1.0 + step) + step
        want = ref.forward(x, **hyper, **theirs, num_batches_tracked=count)
        got = adapter.forward(METHOD, {"x": x, **mine,
                                       "num_batches_tracked": np.array(count)},
                              hyper, dtype="float64", device="cpu")
        for key in STATE:
            _close(got[key], want[key], f"step {step + 1} {key}")
        mine = {k: np.asarray(got[k], dtype=np.float64) for k in STATE}
        theirs = {k: want[k] for k in STATE}
    x = rng.standard_normal((5, 3, 4))  # evaluation: no split, any batch size
    got = adapter.forward(METHOD, {"x": x, **mine}, {**hyper, "training": False},
                          dtype="float64", device="cpu")
    _close(got["y"], ref.forward(x, **{**hyper, "training": False}, **theirs)["y"], "eval y")


@pytest.mark.parametrize("name", ADAPTERS)
def test_indivisible_batch_is_refused_in_training(name: str) -> None:
    adapter = _adapter(name)
    with pytest.raises(ValueError, match="ghost_batch_size"):
        adapter.forward(METHOD, {"x": np.zeros((5, 3))},
                        {"training": True, "eps": 1e-5, "ghost_batch_size": 2},
                        dtype="float64", device="cpu")


@pytest.mark.parametrize(("name", "kind"), [("numpy", "native"),
                                            pytest.param("torch", "composed",
                                                          marks=pytest.mark.torch),
                                            pytest.param("jax", "composed",
                                                         marks=pytest.mark.jax)])
def test_support_labels_the_frameworks_compositions(name: str, kind: str) -> None:
    support = _adapter(name).support(METHOD, "float32", "cpu")
    assert (support.supported, support.kind) == (True, kind), support.reason


# --- the facts the compositions rely on ---------------------------------------------------


@pytest.mark.torch
def test_torch_batch_norm_running_var_on_the_ghost_view_divides_by_the_ghost_count() -> None:
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    rng = np.random.default_rng(3)
    b, k, length = 3, 4, 5  # (B, G*C, L): each of the K channels holds B * L values
    x = torch.tensor(rng.standard_normal((b, k, length)))
    rm, rv = torch.zeros(k, dtype=torch.float64), torch.zeros(k, dtype=torch.float64)
    F.batch_norm(x, rm, rv, training=True, momentum=1.0, eps=1e-5)
    flat = x.numpy().transpose(1, 0, 2).reshape(k, -1)
    np.testing.assert_allclose(rm.numpy(), flat.mean(axis=1), rtol=1e-14)
    np.testing.assert_allclose(rv.numpy(), flat.var(axis=1, ddof=1), rtol=1e-13)


@pytest.mark.jax
def test_flax_batch_norm_on_the_ghost_view_reduces_each_ghost_channel() -> None:
    pytest.importorskip("jax")
    nn = pytest.importorskip("flax.linen")
    import jax.numpy as jnp
    from normspec.adapters.jax_adapter import _runtime

    _runtime.enable_x64()  # what the adapter does on its first use
    rng = np.random.default_rng(4)
    b, k, length = 3, 8, 5  # (B, G*C, L): each of the K features holds B * L values
    x = jnp.asarray(rng.standard_normal((b, k, length)))
    layer = nn.BatchNorm(use_running_average=False, axis=1, momentum=0.0, epsilon=1e-5,
                         use_scale=False, use_bias=False, use_fast_variance=False,
                         dtype=jnp.float64, param_dtype=jnp.float64)
    stats = {"mean": jnp.zeros(k), "var": jnp.ones(k)}
    y, new = layer.apply({"batch_stats": stats}, x, mutable=["batch_stats"])
    xn = np.asarray(x)
    mean, var = xn.mean(axis=(0, 2)), xn.var(axis=(0, 2))  # Flax stores the biased variance
    np.testing.assert_allclose(np.asarray(new["batch_stats"]["mean"]), mean, rtol=1e-13)
    np.testing.assert_allclose(np.asarray(new["batch_stats"]["var"]), var, rtol=1e-12)
    want = (xn - mean[None, :, None]) / np.sqrt(var[None, :, None] + 1e-5)
    np.testing.assert_allclose(np.asarray(y), want, rtol=1e-12, atol=1e-12)
