"""Bad array arguments to the reference: each error names the argument and what was expected.

Every method converts its arrays through the same checks, so one method per kind of argument
would do; all methods are exercised to prove that no module bypasses them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from normspec import reference

# The smallest valid call of each method: x and the hyperparameters it requires.
CALLS: dict[str, tuple[tuple[int, ...], dict[str, Any]]] = {
    "batch_norm": ((4, 3), {"training": True, "eps": 1e-5}),
    "layer_norm": ((2, 3), {"axis": -1, "eps": 1e-5}),
    "rms_norm": ((2, 3), {"axis": -1, "eps": 1e-5}),
    "power_norm": ((2, 3), {"p": 3.0, "axis": -1, "eps": 1e-5}),
    "instance_norm": ((2, 3, 4), {"eps": 1e-5}),
    "group_norm": ((2, 4, 3), {"groups": 2, "eps": 1e-5}),
    "lp_norm": ((2, 3), {"p": 2, "axis": -1, "eps": 1e-12}),
    "gradient_normalization": ((2, 3), {"axis": [1], "eps": 1e-12}),
    "fix_norm": ((2, 3), {"weight": 1.5, "axis": -1, "eps": 1e-12}),
    "scale_norm": ((2, 3), {"weight": 1.5, "eps": 1e-5}),
    "unit_norm": ((2, 3), {"axis": -1, "eps": 1e-12}),
    "local_response_norm": ((2, 3, 4), {"size": 3, "alpha": 1e-4, "beta": 0.75, "k": 1.0}),
    "ghost_batch_norm": ((4, 3), {"training": True, "eps": 1e-5, "ghost_batch_size": 2}),
    "batch_renorm": ((4, 3), {"training": True, "eps": 1e-5, "running_mean": np.zeros(3),
                              "running_var": np.ones(3), "batch_stat_weight": 0.1,
                              "running_var_estimator": "biased", "rmax": 2.0, "dmax": 1.0}),
    "sequence_batch_norm": ((2, 3, 4), {"mask": np.ones((2, 3), dtype=bool),
                                        "statistics": "sequence", "training": True, "eps": 1e-5}),
    "sync_batch_norm": ((4, 3), {"training": True, "eps": 1e-5, "shard_sizes": [1, 3]}),
    "mixed_eval_batch_norm": ((4, 3), {"running_mean": np.zeros(3), "running_var": np.ones(3),
                                      "alpha": 0.5, "eps": 1e-5}),
    "batch_instance_norm": ((2, 3, 4), {"rho": np.full(3, 0.5), "training": True, "eps": 1e-5}),
    "adaptive_layer_norm": ((2, 3), {"cond": np.ones((2, 2)), "weight": np.zeros((2, 6)),
                                     "gated": False, "activation": "silu", "eps": 1e-5}),
    "adaptive_instance_norm": ((2, 3, 4), {"style": np.ones((2, 3, 5)),
                                           "variance_estimator": "unbiased", "eps": 1e-5}),
    "conditional_instance_norm": ((2, 3, 4), {"weight": np.ones((4, 3)), "bias": np.zeros((4, 3)),
                                              "style": [3, 0], "eps": 1e-5}),
    "standardize": ((4, 3), {"training": True, "axis": [0], "ddof": 0, "eps": 0.0,
                             "eps_placement": "inside_sqrt",
                             "zero_variance": "unit_scale"}),
    "global_response_norm": ((2, 3, 4), {"weight": np.ones(4), "bias": np.zeros(4),
                                         "channel_axis": -1, "eps": 1e-6}),
    "min_max_scale": ((4, 3), {"training": True, "axis": [0], "range_min": 0.0,
                               "range_max": 1.0, "clip": False}),
    "spectral_norm": ((4, 3), {"dim": 0, "mode": "exact", "training": True}),
    # qk_norm: queries x and keys k (B, H, T, Dh); Tk = Tq = Dh keeps the logits x-shaped
    "qk_norm": ((1, 2, 2, 2), {"k": np.ones((1, 2, 2, 2)), "variant": "rms", "layout": "bhtd",
                               "norm_axes": "head", "logit_scale": 0.5, "eps": 1e-6}),
    # gradnorm: x is (2, T), gradient norms and losses (>= 0); y is one weight per task
    "gradnorm": ((2, 3), {"initial_losses": np.ones(3), "training": True,
                          "weights": np.ones(3), "alpha": 1.5, "lr": 0.1}),
    "weight_norm": ((4, 3), {"g": np.ones((4, 1)), "kept_axis": 0, "eps": 0.0}),
    "weight_standardization": ((4, 3), {"kept_axis": 0, "eps": 1e-6}),
}


def _x(method: str) -> np.ndarray:
    shape, _ = CALLS[method]
    if method == "gradnorm":  # gradient norms and losses are >= 0
        return np.abs(np.random.default_rng(0).standard_normal(shape))
    return np.random.default_rng(0).standard_normal(shape)


def _forward(method: str) -> Callable[..., Any]:
    fn: Callable[..., Any] = reference.get(method).forward
    return fn


def test_every_method_has_a_call() -> None:
    assert set(CALLS) == set(reference.METHODS)


@pytest.mark.parametrize("method", reference.METHODS)
def test_valid_calls_are_accepted(method: str) -> None:
    out = _forward(method)(_x(method), **CALLS[method][1])
    hook = getattr(reference.get(method), "output_shape", None)
    shape = _x(method).shape if hook is None else hook(_x(method).shape, CALLS[method][1])
    assert out["y"].shape == shape


# --- masked arrays -------------------------------------------------------------------------


@pytest.mark.parametrize("method", reference.METHODS)
def test_masked_x_is_rejected_naming_the_argument(method: str) -> None:
    x = _x(method)
    masked = np.ma.masked_array(x, mask=np.zeros(x.shape, dtype=bool))
    masked.mask.flat[0] = True
    with pytest.raises(TypeError, match=r"argument 'x': got a numpy masked array, expected a "
                                        r"plain float array-like"):
        _forward(method)(masked, **CALLS[method][1])


def test_masked_weight_and_cotangent_are_rejected() -> None:
    x = _x("layer_norm")
    weight = np.ma.masked_array(np.ones(3), mask=[False, True, False])
    with pytest.raises(TypeError, match=r"argument 'weight': got a numpy masked array"):
        reference.get("layer_norm").forward(x, weight, axis=-1, eps=1e-5)
    with pytest.raises(TypeError, match=r"argument 'cotangent': got a numpy masked array"):
        reference.get("layer_norm").vjp(x, cotangent=np.ma.masked_array(x), axis=-1, eps=1e-5)


def test_masked_tangent_is_rejected() -> None:
    x = _x("rms_norm")
    with pytest.raises(TypeError, match=r"argument \"tangent\['x'\]\": got a numpy masked"):
        reference.get("rms_norm").jvp(x, tangent={"x": np.ma.masked_array(x)}, axis=-1,
                                      eps=1e-5)


def test_masked_running_statistics_are_rejected() -> None:
    x = _x("batch_norm")
    with pytest.raises(TypeError, match=r"argument 'running_var': got a numpy masked array"):
        reference.get("batch_norm").forward(
            x, training=False, eps=1e-5, running_mean=np.zeros(3),
            running_var=np.ma.masked_array(np.ones(3), mask=[True, False, False]))


# --- ragged sequences ----------------------------------------------------------------------


@pytest.mark.parametrize("method", reference.METHODS)
def test_ragged_list_is_rejected_naming_the_argument(method: str) -> None:
    ragged = [[1.0, 2.0, 3.0], [4.0, 5.0]]
    with pytest.raises(ValueError, match=r"argument 'x': got a list that is not rectangular .*"
                                         r"expected a float array-like whose nested sequences "
                                         r"all have the same length"):
        _forward(method)(ragged, **CALLS[method][1])


def test_ragged_weight_is_rejected_naming_the_argument() -> None:
    with pytest.raises(ValueError, match=r"argument 'weight': got a list that is not "
                                         r"rectangular"):
        reference.get("layer_norm").forward(_x("layer_norm"), [1.0, [2.0, 3.0], 4.0],
                                            axis=-1, eps=1e-5)


def test_rectangular_lists_are_still_accepted() -> None:
    out = reference.get("layer_norm").forward([[1.0, 2.0, 4.0]], axis=-1, eps=0.0)
    want = reference.get("layer_norm").forward(np.array([[1.0, 2.0, 4.0]]), axis=-1, eps=0.0)
    assert np.array_equal(out["y"], want["y"])


# --- tensors that NumPy cannot read ---------------------------------------------------------


class _GradTensor:
    """What matters of a torch tensor with requires_grad=True: NumPy conversion raises."""

    shape = (2, 3)

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        raise RuntimeError("Can't call numpy() on Tensor that requires grad.")

    def detach(self) -> _GradTensor:  # pragma: no cover - only its presence matters
        return self


def test_tensor_that_numpy_cannot_read_is_rejected_with_the_fix() -> None:
    with pytest.raises(TypeError, match=r"argument 'x': got a .*_GradTensor of shape \(2, 3\) "
                                        r"that NumPy cannot convert .*expected a float "
                                        r"array-like; for a tensor, pass "
                                        r"tensor\.detach\(\)\.cpu\(\)\.numpy\(\)"):
        reference.get("layer_norm").forward(_GradTensor(), axis=-1, eps=1e-5)


@pytest.mark.parametrize("method", reference.METHODS)
def test_torch_tensor_requiring_grad_is_rejected(method: str) -> None:
    torch = pytest.importorskip("torch")
    x = torch.tensor(_x(method), requires_grad=True)
    with pytest.raises(TypeError, match=r"argument 'x': got a torch\.Tensor of shape .* "
                                        r"tensor\.detach\(\)\.cpu\(\)\.numpy\(\)"):
        _forward(method)(x, **CALLS[method][1])


def test_torch_weight_requiring_grad_is_rejected() -> None:
    torch = pytest.importorskip("torch")
    weight = torch.ones(3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(TypeError, match=r"argument 'weight': got a torch\.Tensor"):
        reference.get("rms_norm").forward(_x("rms_norm"), weight, axis=-1, eps=1e-5)


def test_torch_tensor_without_grad_is_accepted() -> None:
    torch = pytest.importorskip("torch")
    x = _x("layer_norm")
    got = reference.get("layer_norm").forward(torch.tensor(x), axis=-1, eps=1e-5)["y"]
    want = reference.get("layer_norm").forward(x, axis=-1, eps=1e-5)["y"]
    assert np.array_equal(got, want)


# --- tangents ------------------------------------------------------------------------------


@pytest.mark.parametrize("check", ["jvp", "second_order"])
@pytest.mark.parametrize("method", reference.METHODS)
def test_tangent_given_as_an_array_is_rejected(method: str, check: str) -> None:
    x = _x(method)
    fn = getattr(reference.get(method), check)
    kw: dict[str, Any] = dict(CALLS[method][1])
    if check == "second_order":
        kw["cotangent"] = np.ones_like(x)
    with pytest.raises(TypeError, match=r"argument 'tangent': got a numpy\.ndarray of shape "
                                        r".*, expected a mapping from primal names to arrays"):
        fn(x, tangent=x, **kw)


@pytest.mark.parametrize("check", ["jvp", "second_order"])
@pytest.mark.parametrize("method", reference.METHODS)
def test_unknown_tangent_keys_are_rejected(method: str, check: str) -> None:
    x = _x(method)
    fn = getattr(reference.get(method), check)
    kw: dict[str, Any] = dict(CALLS[method][1])
    if check == "second_order":
        kw["cotangent"] = np.ones_like(x)
    with pytest.raises(ValueError, match=r"argument 'tangent': got keys \['gamma'\] that are "
                                         r"not differentiable inputs"):
        fn(x, tangent={"x": x, "gamma": x}, **kw)


def test_tangent_keys_of_mixed_types_are_reported() -> None:
    x = _x("layer_norm")
    with pytest.raises(ValueError, match=r"got keys \['y', 0\]"):
        reference.get("layer_norm").jvp(x, tangent={0: x, "y": x}, axis=-1, eps=1e-5)


def test_tangent_for_an_absent_primal_is_rejected() -> None:
    x = _x("layer_norm")
    with pytest.raises(ValueError, match=r"got keys \['weight'\] .*expected a subset of "
                                         r"\['x'\]"):
        reference.get("layer_norm").jvp(x, tangent={"weight": np.ones(3)}, axis=-1, eps=1e-5)
