"""The onnxruntime and onnx-reference adapters: contract, conventions, probing, declines."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx", reason="the ONNX adapters need the 'onnx' extra")
pytest.importorskip("onnxruntime", reason="the ONNX adapters need the 'onnx' extra")

from normspec import reference
from normspec.adapters.onnx_adapter import make_onnxruntime, make_reference
from normspec.adapters.onnx_adapter.translate import onnx_momentum
from normspec.adapters.protocol import DERIVATIVE_CHECKS, Adapter

pytestmark = pytest.mark.onnx
RNG = np.random.default_rng(7)
ORT = make_onnxruntime()
REF = make_reference()


def _x(*shape: int) -> np.ndarray:
    """Standard normal values representable in float32 (and so in float64)."""
    return RNG.standard_normal(shape).astype(np.float32).astype(np.float64)


@pytest.mark.parametrize("adapter", [ORT, REF], ids=["onnxruntime", "onnx-reference"])
def test_satisfies_the_protocol_and_is_forward_only(adapter: Adapter) -> None:
    assert isinstance(adapter, Adapter)
    assert adapter.devices()[0] == "cpu"
    support = adapter.support("batch_norm", "float32", "cpu")
    assert support.supported
    assert support.kind == "native"
    assert set(support.not_implemented) == set(DERIVATIVE_CHECKS)
    assert "computes no derivatives" in support.not_implemented["vjp"]
    with pytest.raises(NotImplementedError, match="no derivatives"):
        adapter.vjp("lp_norm", {"x": _x(2, 3)}, {"p": 2.0, "axis": -1, "eps": 0.0},
                    np.ones((2, 3)), dtype="float32", device="cpu")


@pytest.mark.parametrize("adapter", [ORT, REF], ids=["onnxruntime", "onnx-reference"])
@pytest.mark.parametrize(("method", "dtype", "device"), [
    ("softmax_norm", "float32", "cpu"), ("layer_norm", "int8", "cpu"),
    ("layer_norm", "float32", "tpu")])
def test_unknown_combinations_are_unsupported_not_errors(adapter: Adapter, method: str,
                                                         dtype: str, device: str) -> None:
    support = adapter.support(method, dtype, device)
    assert not support.supported
    assert repr(method if method == "softmax_norm" else dtype if dtype == "int8" else device) \
        in support.reason


def test_versions_name_onnx_onnxruntime_and_opset() -> None:
    assert {"onnx", "onnxruntime", "opset"} <= set(ORT.versions())
    assert {"onnx", "opset"} <= set(REF.versions())


def test_probe_finds_the_missing_kernels_and_shows_them_in_support() -> None:
    # onnxruntime 1.32's CPU provider has no float64 InstanceNormalization and no bfloat16
    # BatchNormalization; it has float32 kernels for both.
    assert ORT.probe("instance_norm", "float32", "cpu") is None
    for method, dtype in (("instance_norm", "float64"), ("batch_norm", "bfloat16")):
        failure = ORT.probe(method, dtype, "cpu")
        assert failure is not None
        assert "NOT_IMPLEMENTED" in failure
        support = ORT.support(method, dtype, "cpu")
        assert not support.supported
        assert "probed" in support.reason
    # The reference evaluator refuses stash_type=11 for RMSNormalization.
    assert "stash_type" in str(REF.probe("rms_norm", "float64", "cpu"))


FORWARD_CASES = [
    ("layer_norm", {"x": _x(3, 4, 5), "weight": _x(4, 5), "bias": _x(4, 5)},
     {"axis": 1, "eps": 0.0}, "float32"),
    ("rms_norm", {"x": _x(3, 7), "weight": _x(7)}, {"axis": -1, "eps": 0.0}, "float64"),
    ("instance_norm", {"x": _x(2, 5, 3, 3), "weight": None, "bias": _x(3)},
     {"channel_axis": -1, "eps": 0.0}, "float32"),
    ("group_norm", {"x": _x(2, 6, 5), "weight": _x(6), "bias": None},
     {"groups": 3, "eps": 0.0}, "float64"),
    ("batch_norm", {"x": _x(4, 3, 2), "running_mean": _x(3), "running_var": 1 + _x(3) ** 2},
     {"training": False, "eps": 0.0}, "float64"),
    ("lp_norm", {"x": _x(3, 5)}, {"p": 1.0, "axis": 0, "eps": 0.0}, "float64"),
    ("local_response_norm", {"x": _x(2, 6, 3)},
     {"size": 3, "alpha": 0.5, "beta": 0.75, "k": 2.0}, "float32"),
    ("local_response_norm", {"x": _x(2, 3, 7)},
     {"size": 4, "alpha": 0.5, "beta": 1.0, "k": 2.0, "channel_axis": -1}, "float32"),
]


@pytest.mark.parametrize(("method", "inputs", "hyper", "dtype"), FORWARD_CASES,
                         ids=[f"{c[0]}-{c[3]}" for c in FORWARD_CASES])
def test_forward_agrees_with_the_reference(method: str, inputs: dict[str, np.ndarray | None],
                                           hyper: dict[str, object], dtype: str) -> None:
    # eps = 0 (or exact float32 attributes) keeps ONNX's float32 attributes out of the float64
    # comparison; the error bound is a few units of roundoff of the dtype.
    cast = np.float32 if dtype == "float32" else np.float64
    inputs = {k: None if v is None else v.astype(cast).astype(np.float64)
              for k, v in inputs.items()}
    rtol = 1e-5 if dtype == "float32" else 1e-12
    primals = {k: v for k, v in inputs.items() if not k.startswith("running")}
    state = {k: v for k, v in inputs.items() if k.startswith("running")}
    expected = reference.get(method).forward(**primals, **state, **hyper)
    adapters = [ORT, REF]
    if method == "local_response_norm":
        adapters = [REF] if hyper["size"] % 2 == 0 else [ORT]  # O5, O6
        inputs = {"x": inputs["x"][:6] if hyper["size"] % 2 else inputs["x"]}
        expected = reference.get(method).forward(**inputs, **hyper)
        if adapters == [REF]:  # O6: exact only with N == C (N > C raises IndexError)
            inputs = {"x": np.concatenate([inputs["x"]] * 4, axis=0)[:7]}  # N == C
            expected = reference.get(method).forward(**inputs, **hyper)
    if method == "lp_norm":
        adapters = [ORT]  # O7
    for adapter in adapters:
        if not adapter.support(method, dtype, "cpu").supported:
            continue
        got = adapter.forward(method, inputs, hyper, dtype=dtype, device="cpu")
        for key, value in got.items():
            assert value.dtype == np.float64
            np.testing.assert_allclose(value, expected[key], rtol=rtol, atol=rtol,
                                       err_msg=f"{adapter.name} {key}")


def test_layer_norm_returns_mean_and_rstd_from_the_op() -> None:
    x = _x(2, 3, 4).astype(np.float32).astype(np.float64)
    got = ORT.forward("layer_norm", {"x": x}, {"axis": 1, "eps": 0.0}, dtype="float32",
                      device="cpu")
    want = reference.layer_norm.forward(x, axis=1, eps=0.0)
    assert got["mean"].shape == (2,)
    assert got["rstd"].shape == (2,)
    np.testing.assert_allclose(got["mean"], want["mean"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["rstd"], want["rstd"], rtol=1e-5)


def test_momentum_direction_weights_the_new_batch_by_batch_stat_weight() -> None:
    assert onnx_momentum(0.25) == 0.75
    # Values where float32(1 - f) is exact, so the comparison is exact too.
    x = np.array([[1.0], [3.0]])
    hyper = {"training": True, "eps": 0.0, "batch_stat_weight": 0.25,
             "running_var_estimator": "biased"}
    inputs = {"x": x, "running_mean": np.array([10.0]), "running_var": np.array([4.0])}
    for adapter in (ORT, REF):
        got = adapter.forward("batch_norm", inputs, hyper, dtype="float64", device="cpu")
        # new mean 2, biased var 1: 0.75 * old + 0.25 * new
        assert got["running_mean"].tolist() == [0.75 * 10 + 0.25 * 2]
        assert got["running_var"].tolist() == [0.75 * 4 + 0.25 * 1]


def test_lrn_alpha_is_divided_by_size_as_in_the_spec() -> None:
    x = np.array([[1.0, 2.0, 3.0]])[..., None]  # (N, C, 1)
    got = ORT.forward("local_response_norm", {"x": x},
                      {"size": 3, "alpha": 3.0, "beta": 1.0, "k": 1.0}, dtype="float32",
                      device="cpu")["y"]
    # scale = 1 + (3/3) * window sum of squares = [6, 15, 14] (the reference's doctest)
    np.testing.assert_allclose(got.ravel(), [1 / 6, 2 / 15, 3 / 14], rtol=1e-6)


def test_unbiased_running_variance_is_declared_not_produced() -> None:
    inputs = {"x": _x(4, 3), "running_mean": np.zeros(3), "running_var": np.ones(3),
              "num_batches_tracked": np.array(2.0)}
    hyper = {"training": True, "eps": 1e-5, "batch_stat_weight": 0.1,
             "running_var_estimator": "unbiased"}
    support = ORT.case_support("batch_norm", inputs, hyper, dtype="float32", device="cpu")
    assert support.supported
    assert "biased estimator" in support.not_produced["forward/running_var"]
    got = ORT.forward("batch_norm", inputs, hyper, dtype="float32", device="cpu")
    assert "running_var" not in got
    assert "running_mean" in got


@pytest.mark.parametrize(("method", "inputs", "hyper", "needle"), [
    ("batch_norm", {"x": _x(4, 3), "running_mean": np.zeros(3), "running_var": np.ones(3)},
     {"training": True, "eps": 1e-5, "batch_stat_weight": "cumulative",
      "running_var_estimator": "biased"}, "cumulative"),
    ("lp_norm", {"x": _x(2, 3)}, {"p": 3.0, "axis": -1, "eps": 0.0}, "p = 3"),
    ("lp_norm", {"x": 0.1 * np.ones((2, 3))}, {"p": 2.0, "axis": -1, "eps": 1.0}, "no eps"),
    ("lp_norm", {"x": np.zeros((2, 3))}, {"p": 2.0, "axis": -1, "eps": 0.0}, "zero vector"),
], ids=["cumulative", "p=3", "clamped", "zero-eps=0"])
def test_inexpressible_cases_are_declined(method: str, inputs: dict[str, np.ndarray],
                                          hyper: dict[str, object], needle: str) -> None:
    support = ORT.case_support(method, inputs, hyper, dtype="float32", device="cpu")
    assert not support.supported
    assert needle in support.reason
    with pytest.raises(ValueError, match="does not run"):
        ORT.forward(method, inputs, hyper, dtype="float32", device="cpu")


def test_zero_vector_with_positive_eps_is_run_because_both_give_zero() -> None:
    inputs = {"x": np.zeros((2, 3))}
    hyper = {"p": 2.0, "axis": -1, "eps": 1e-12}
    assert ORT.case_support("lp_norm", inputs, hyper, dtype="float32", device="cpu").supported
    got = ORT.forward("lp_norm", inputs, hyper, dtype="float32", device="cpu")["y"]
    assert got.tolist() == reference.lp_norm.forward(np.zeros((2, 3)), **hyper)["y"].tolist()


def test_float64_layer_norm_is_declined_for_its_stash_type() -> None:
    for adapter in (ORT, REF):
        support = adapter.support("layer_norm", "float64", "cpu")
        assert not support.supported
        assert "stash_type" in support.reason


def test_models_are_cached_per_node() -> None:
    adapter = make_onnxruntime()
    hyper = {"p": 2.0, "axis": -1, "eps": 0.0}
    for _ in range(3):
        adapter.forward("lp_norm", {"x": _x(2, 5)}, hyper, dtype="float32", device="cpu")
    builds = adapter.backend.cache.builds  # type: ignore[attr-defined]
    adapter.forward("lp_norm", {"x": _x(3, 5)}, hyper, dtype="float32", device="cpu")
    assert adapter.backend.cache.builds == builds + 1  # type: ignore[attr-defined]


def test_bad_input_names_the_argument() -> None:
    with pytest.raises(ValueError, match=r"inputs.*'running_mean'"):
        ORT.forward("layer_norm", {"x": _x(2, 3), "running_mean": np.zeros(3)},
                    {"axis": -1, "eps": 0.0}, dtype="float32", device="cpu")
    with pytest.raises(ValueError, match="not representable in float16"):
        ORT.forward("lp_norm", {"x": np.array([[0.1, 0.2]])}, {"p": 2.0, "axis": -1,
                                                               "eps": 0.0},
                    dtype="float16", device="cpu")
