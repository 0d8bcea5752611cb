"""The built-in numpy adapter: contract, precision model, and agreement with the reference."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from normspec.adapters.numpy_adapter import ADAPTER, METHODS
from normspec.adapters.protocol import CALLS, DTYPES, Adapter
from normspec.reference import METHODS as REFERENCE_METHODS

STORAGE = {"float64": np.float64, "float32": np.float32, "float16": np.float16,
           "bfloat16": ml_dtypes.bfloat16}
COMPUTE = {"float64": np.float64, "float32": np.float32, "float16": np.float32,
           "bfloat16": np.float32}
UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "float16": 2.0**-11,
                 "bfloat16": 2.0**-8}
PARAMS = ("x", "weight", "bias")


@dataclass(frozen=True)
class Case:
    method: str
    name: str
    inputs: dict[str, np.ndarray]
    hyper: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.method}[{self.name}]"

    def rounded(self, dtype: str) -> Case:
        """The case with inputs rounded to ``dtype`` (as the golden vectors store them)."""
        cast = {k: np.asarray(v).astype(STORAGE[dtype]).astype(np.float64)
                for k, v in self.inputs.items()}
        return Case(self.method, self.name, cast, self.hyper)


def _cases() -> list[Case]:
    rng = np.random.default_rng(20240611)
    n = rng.standard_normal
    rm, rv = n(3), rng.uniform(0.5, 2.0, 3)
    track = {"training": True, "eps": 1e-5, "num_batches_tracked": 2}
    return [
        Case("layer_norm", "affine-axis=-1", {"x": n((3, 5)), "weight": n(5), "bias": n(5)},
             {"axis": -1, "eps": 1e-5}),
        Case("layer_norm", "plain-axis=1", {"x": n((2, 3, 4))}, {"axis": 1, "eps": 0.1}),
        Case("layer_norm", "offset-weight", {"x": n((4, 9)) + 10.0, "weight": n(9)},
             {"axis": -1, "eps": 1e-6}),
        Case("rms_norm", "weight-axis=-1", {"x": n((3, 6)), "weight": n(6)},
             {"axis": -1, "eps": 1e-6}),
        Case("rms_norm", "plain-axis=-2", {"x": n((2, 3, 4))}, {"axis": -2, "eps": 1e-2}),
        Case("instance_norm", "affine", {"x": n((2, 3, 5)), "weight": n(3), "bias": n(3)},
             {"eps": 1e-5}),
        Case("instance_norm", "channels-last", {"x": n((2, 4, 3, 2))},
             {"channel_axis": -1, "eps": 1e-3}),
        Case("group_norm", "affine-groups=3", {"x": n((2, 6, 4)), "weight": n(6), "bias": n(6)},
             {"groups": 3, "eps": 1e-5}),
        Case("group_norm", "channels-last-groups=2", {"x": n((2, 3, 2, 4)), "weight": n(4)},
             {"groups": 2, "channel_axis": -1, "eps": 1e-5}),
        Case("batch_norm", "train-tracked-unbiased",
             {"x": n((4, 3, 5)), "weight": n(3), "bias": n(3), "running_mean": rm,
              "running_var": rv},
             {**track, "batch_stat_weight": 0.1, "running_var_estimator": "unbiased"}),
        Case("batch_norm", "train-cumulative-biased-channels-last",
             {"x": n((5, 2, 3)), "running_mean": rm, "running_var": rv},
             {**track, "channel_axis": -1, "batch_stat_weight": "cumulative",
              "running_var_estimator": "biased"}),
        Case("batch_norm", "train-untracked", {"x": n((6, 3)), "bias": n(3)},
             {"training": True, "eps": 1e-5}),
        Case("batch_norm", "eval", {"x": n((4, 3, 2)), "weight": n(3), "bias": n(3),
                                    "running_mean": rm, "running_var": rv},
             {"training": False, "eps": 1e-5}),
        Case("lp_norm", "p=2-axis=-1", {"x": n((3, 7))}, {"p": 2.0, "axis": -1, "eps": 1e-12}),
        Case("lp_norm", "p=3-axis=0", {"x": n((5, 4))}, {"p": 3.0, "axis": 0, "eps": 1e-12}),
        Case("lp_norm", "p=1-clamped-row", {"x": np.vstack([n((2, 6)), 1e-4 * n((1, 6))])},
             {"p": 1.0, "axis": 1, "eps": 1.0}),
        Case("local_response_norm", "size=3", {"x": n((2, 6, 4))},
             {"size": 3, "alpha": 0.5, "beta": 0.75, "k": 1.0}),
        Case("local_response_norm", "size=4", {"x": n((2, 7, 3))},
             {"size": 4, "alpha": 0.2, "beta": 0.5, "k": 2.0}),
        Case("local_response_norm", "size=2-channels-last", {"x": n((2, 3, 5))},
             {"size": 2, "alpha": 1.0, "beta": 0.75, "k": 1.0, "channel_axis": -1}),
    ]


CASES = _cases()
CASE_IDS = [c.id for c in CASES]


def _primals(case: Case) -> list[str]:
    return [k for k in PARAMS if k in case.inputs]


def _directions(case: Case, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    g = rng.standard_normal(case.inputs["x"].shape)
    t = {k: rng.standard_normal(np.shape(case.inputs[k])) for k in _primals(case)}
    return g, t


def _call(case: Case, check: str, dtype: str, g: np.ndarray, t: dict[str, np.ndarray]
          ) -> dict[str, np.ndarray]:
    kw = {"dtype": dtype, "device": "cpu"}
    if check == "forward":
        return ADAPTER.forward(case.method, case.inputs, case.hyper, **kw)
    if check == "vjp":
        return ADAPTER.vjp(case.method, case.inputs, case.hyper, g, **kw)
    if check == "jvp":
        return {"y": ADAPTER.jvp(case.method, case.inputs, case.hyper, t, **kw)}
    return ADAPTER.second_order(case.method, case.inputs, case.hyper, g, t, **kw)


def _reference(method: str) -> ModuleType:
    try:
        return importlib.import_module(f"normspec.reference.{method}")
    except ModuleNotFoundError:
        pytest.skip(f"normspec.reference.{method} is not written yet")


def _call_reference(case: Case, check: str, g: np.ndarray, t: dict[str, np.ndarray]
                    ) -> dict[str, np.ndarray]:
    ref = _reference(case.method)
    primals = [case.inputs.get(p) for p in ref.PRIMALS]
    state = {k: v for k, v in case.inputs.items() if k not in ref.PRIMALS}
    kw = {**state, **case.hyper}
    if check == "forward":
        return dict(ref.forward(*primals, **kw))
    if check == "vjp":
        return dict(ref.vjp(*primals, cotangent=g, **kw))
    if check == "jvp":
        return {"y": ref.jvp(*primals, tangent=t, **kw)}
    return dict(ref.second_order(*primals, cotangent=g, tangent=t, **kw))


def test_adapter_satisfies_the_protocol() -> None:
    assert isinstance(ADAPTER, Adapter)
    assert ADAPTER.name == "numpy"
    assert ADAPTER.devices() == ("cpu",)
    versions = ADAPTER.versions()
    assert set(versions) == {"numpy", "ml_dtypes"}
    assert all(isinstance(v, str) and v for v in versions.values())


def test_implements_every_reference_method() -> None:
    assert set(METHODS) == set(REFERENCE_METHODS)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", REFERENCE_METHODS)
def test_supports_every_method_and_dtype_natively_on_cpu(method: str, dtype: str) -> None:
    support = ADAPTER.support(method, dtype, "cpu")
    assert support.supported, support.reason
    assert support.kind == "native"


@pytest.mark.parametrize(("method", "dtype", "device", "needle"), [
    ("no_such_norm", "float32", "cpu", "no_such_norm"),
    ("layer_norm", "float8", "cpu", "float8"),
    ("layer_norm", "float32", "cuda", "cuda"),
])
def test_support_declines_unknown_combinations_without_raising(
        method: str, dtype: str, device: str, needle: str) -> None:
    support = ADAPTER.support(method, dtype, device)
    assert not support.supported
    assert needle in support.reason


@pytest.mark.parametrize("check", CALLS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_agrees_with_reference_in_float64(case: Case, check: str) -> None:
    g, t = _directions(case, seed=1)
    expected = _call_reference(case, check, g, t)
    got = _call(case, check, "float64", g, t)
    assert set(got) == set(expected)
    for key, want in expected.items():
        have = got[key]
        assert have.dtype == np.float64
        assert have.shape == np.shape(want), key
        scale = float(np.max(np.abs(want))) if np.size(want) else 0.0
        error = float(np.max(np.abs(have - want))) if np.size(want) else 0.0
        assert error <= 1e-12 * scale, f"{key}: max abs error {error:.3g}, scale {scale:.3g}"


def _expected_shapes(case: Case, check: str) -> dict[str, tuple[int, ...]]:
    shapes = {k: np.shape(v) for k, v in case.inputs.items()}
    if check == "jvp":
        return {"y": shapes["x"]}
    return {k: shapes[k] for k in _primals(case)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("check", CALLS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_results_are_float64_arrays_of_dtype_values(case: Case, check: str, dtype: str) -> None:
    rounded = case.rounded(dtype)
    g, t = _directions(case, seed=2)
    g = g.astype(STORAGE[dtype]).astype(np.float64)
    t = {k: v.astype(STORAGE[dtype]).astype(np.float64) for k, v in t.items()}
    got = _call(rounded, check, dtype, g, t)
    if check == "forward":
        assert got["y"].shape == case.inputs["x"].shape
    else:
        assert {k: v.shape for k, v in got.items()} == _expected_shapes(case, check)
    for key, value in got.items():
        assert isinstance(value, np.ndarray)
        assert value.dtype == np.float64
        if key == "num_batches_tracked":
            assert value == case.hyper["num_batches_tracked"] + 1
            continue
        # outputs and gradients are dtype values; statistics and state stay in the compute
        # type (float32 for half inputs)
        held = STORAGE[dtype] if check != "forward" or key == "y" else COMPUTE[dtype]
        back = value.astype(held).astype(np.float64)
        np.testing.assert_array_equal(back, value, err_msg=f"{key} is not a {held} value")


def test_forward_reports_the_running_state_and_counter() -> None:
    case = next(c for c in CASES if c.name == "train-tracked-unbiased").rounded("float16")
    out = ADAPTER.forward(case.method, case.inputs, case.hyper, dtype="float16", device="cpu")
    assert {"y", "mean", "var", "rstd", "running_mean", "running_var",
            "num_batches_tracked"} <= set(out)
    assert out["running_mean"].shape == (3,)
    assert out["num_batches_tracked"] == 3.0


def test_half_precision_accumulates_in_float32() -> None:
    # |x| ~ 300: squares overflow float16 (max 65504), so only a float32 accumulation stays
    # finite; the float16 result is then the reference rounded once (within one unit roundoff).
    rng = np.random.default_rng(5)
    x = (300.0 * rng.standard_normal((2, 64))).astype(np.float16).astype(np.float64)
    hyper = {"axis": -1, "eps": 1e-5}
    got = ADAPTER.forward("layer_norm", {"x": x}, hyper, dtype="float16", device="cpu")["y"]
    want = _reference("layer_norm").forward(x, **hyper)["y"]
    assert np.all(np.isfinite(got))
    assert np.max(np.abs(got - want)) <= UNIT_ROUNDOFF["float16"] * np.max(np.abs(want))


def test_float32_is_computed_in_float32() -> None:
    # A mean offset of 1e3 costs a two-pass float32 kernel about |mean|/std * u32 of accuracy:
    # visible against float64, far below what a one-pass variance would lose.
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((4, 256)) + 1e3).astype(np.float32).astype(np.float64)
    hyper = {"axis": -1, "eps": 1e-5}
    got = ADAPTER.forward("layer_norm", {"x": x}, hyper, dtype="float32", device="cpu")["y"]
    want = ADAPTER.forward("layer_norm", {"x": x}, hyper, dtype="float64", device="cpu")["y"]
    error = np.max(np.abs(got - want)) / np.max(np.abs(want))
    assert UNIT_ROUNDOFF["float32"] / 2 < error < 1e4 * UNIT_ROUNDOFF["float32"]


def _finite_difference(f: Callable[[float], np.ndarray], step: float) -> np.ndarray:
    # fourth-order central difference
    return (8 * (f(step) - f(-step)) - (f(2 * step) - f(-2 * step))) / (12 * step)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_jvp_and_vjp_match_finite_differences_of_forward(case: Case) -> None:
    # Independent of the reference, so it covers methods whose reference is not written yet.
    g, t = _directions(case, seed=3)
    kw = {"dtype": "float64", "device": "cpu"}

    def moved(s: float) -> np.ndarray:
        shifted = {k: (v + s * t[k] if k in t else v) for k, v in case.inputs.items()}
        return ADAPTER.forward(case.method, shifted, case.hyper, **kw)["y"]

    fd = _finite_difference(moved, 1e-3)
    jvp = ADAPTER.jvp(case.method, case.inputs, case.hyper, t, **kw)
    np.testing.assert_allclose(jvp, fd, rtol=0, atol=1e-8 * np.max(np.abs(fd)))
    vjp = ADAPTER.vjp(case.method, case.inputs, case.hyper, g, **kw)
    pairing = sum(float(np.sum(vjp[k] * t[k])) for k in t)
    assert pairing == pytest.approx(float(np.sum(g * jvp)), rel=1e-10)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_second_order_matches_finite_differences_of_vjp(case: Case) -> None:
    g, t = _directions(case, seed=4)
    kw = {"dtype": "float64", "device": "cpu"}
    so = ADAPTER.second_order(case.method, case.inputs, case.hyper, g, t, **kw)
    for key in _primals(case):
        def moved(s: float, key: str = key) -> np.ndarray:
            shifted = {k: (v + s * t[k] if k in t else v) for k, v in case.inputs.items()}
            return ADAPTER.vjp(case.method, shifted, case.hyper, g, **kw)[key]

        fd = _finite_difference(moved, 1e-3)
        np.testing.assert_allclose(so[key], fd, rtol=0, atol=1e-7 * max(np.max(np.abs(fd)), 1.0),
                                   err_msg=key)


@pytest.mark.parametrize("check", CALLS)
def test_bad_method_name_raises_value_error_naming_it(check: str) -> None:
    case = Case("no_such_norm", "any", {"x": np.ones((2, 3))})
    g, t = _directions(case, seed=0)
    with pytest.raises(ValueError, match="argument 'method': got 'no_such_norm'"):
        _call(case, check, "float32", g, t)


def test_unrepresentable_input_raises_value_error_naming_the_argument() -> None:
    x = np.array([[1.0, 2.0, 1.0 + 2.0**-20]])
    with pytest.raises(ValueError, match=r"inputs\['x'\].*float16"):
        ADAPTER.forward("layer_norm", {"x": x}, {"axis": -1, "eps": 0.0},
                        dtype="float16", device="cpu")


def test_missing_hyperparameter_raises_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match="'eps'"):
        ADAPTER.forward("layer_norm", {"x": np.ones((2, 3))}, {"axis": -1},
                        dtype="float32", device="cpu")


def test_nan_propagates_without_warnings() -> None:
    x = np.array([[1.0, np.nan, 3.0], [1.0, 2.0, 4.0]])
    y = ADAPTER.forward("layer_norm", {"x": x}, {"axis": -1, "eps": 1e-5},
                        dtype="float32", device="cpu")["y"]
    assert np.all(np.isnan(y[0]))
    assert np.all(np.isfinite(y[1]))
