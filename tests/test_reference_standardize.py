"""Properties of the standardize reference: fit/apply, the conventions, the state contract."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from normspec.reference import standardize as S

SK: dict[str, Any] = {"axis": [0], "ddof": 0, "eps": 0.0, "eps_placement": "inside_sqrt",
                      "zero_variance": "unit_scale"}
MVN: dict[str, Any] = {"axis": [0, 2, 3], "ddof": 0, "eps": 1e-9,
                       "eps_placement": "outside_sqrt", "zero_variance": "ieee"}


def _rng() -> np.random.Generator:
    return np.random.default_rng(3)


def test_fit_output_has_zero_mean_and_unit_variance() -> None:
    x = _rng().normal(3.0, 2.0, (50, 4))
    y = S.forward(x, training=True, **SK)["y"]
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-14)
    np.testing.assert_allclose(y.var(axis=0), 1.0, rtol=1e-13)


def test_ddof_one_scales_by_sqrt_n_minus_1_over_n() -> None:
    x = _rng().normal(size=(7, 3))
    y0 = S.forward(x, training=True, **SK)["y"]
    y1 = S.forward(x, training=True, **{**SK, "ddof": 1})["y"]
    np.testing.assert_allclose(y1, y0 * np.sqrt(6 / 7), rtol=1e-14)


def test_apply_with_the_fitted_state_reproduces_the_fit() -> None:
    x = _rng().normal(size=(2, 3, 4, 5))
    fit = S.forward(x, training=True, **MVN)
    y = S.forward(x, training=False, **MVN, mean=fit["mean"], var=fit["var"])["y"]
    np.testing.assert_allclose(y, fit["y"], rtol=1e-14, atol=1e-15)


def test_apply_uses_the_given_statistics_not_the_data() -> None:
    x = _rng().normal(size=(5, 2))
    y = S.forward(x, training=False, **SK, mean=np.array([1.0, -2.0]), var=np.array([4.0, 9.0]))
    np.testing.assert_allclose(y["y"], (x - [1.0, -2.0]) / [2.0, 3.0], rtol=1e-15)
    assert set(y) == {"y"}


def test_a_fit_replaces_the_given_state() -> None:
    x = _rng().normal(size=(6, 3))
    plain = S.forward(x, training=True, **SK)
    given = S.forward(x, training=True, **SK, mean=np.full(3, 99.0), var=np.full(3, 7.0))
    for key in ("y", "mean", "var", "rstd"):
        np.testing.assert_array_equal(given[key], plain[key])


def test_eps_placement_matches_onnx_mvn_formula() -> None:
    x = _rng().normal(size=(2, 3, 2, 2)) * 1e-8   # std ~ eps: the placement shows
    y = S.forward(x, training=True, **MVN)["y"]
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    std = np.sqrt(((x - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True))
    np.testing.assert_allclose(y, (x - mean) / (std + 1e-9), rtol=1e-12)
    inside = S.forward(x, training=True, **{**MVN, "eps_placement": "inside_sqrt"})["y"]
    assert not np.allclose(inside, y, rtol=1e-3)


def test_matches_the_installed_onnx_reference_evaluator() -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    node = helper.make_node("MeanVarianceNormalization", ["X"], ["Y"])
    graph = helper.make_graph([node], "mvn",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    # float32: the function body's 1e-9 is a float Constant, so a double X is refused
    # ("Input type mismatch: float64 != float32", operator Add) by onnx 1.23's evaluator
    x = _rng().normal(size=(2, 3, 4, 4)).astype(np.float32)
    (got,) = ReferenceEvaluator(model).run(None, {"X": x})
    want = S.forward(x, training=True, **MVN)["y"]
    assert onnx is not None
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("zero", "eps", "placement", "expected_y", "jacobian_scale"), [
    ("unit_scale", 0.0, "inside_sqrt", 0.0, 1.0),
    ("ieee", 1e-3, "inside_sqrt", 0.0, 1 / np.sqrt(1e-3)),
    ("ieee", 1e-3, "outside_sqrt", 0.0, 1e3),
])
def test_constant_features(zero: str, eps: float, placement: str, expected_y: float,
                           jacobian_scale: float) -> None:
    x = np.full((5, 2), 2.5)
    hyper = {"axis": [0], "ddof": 0, "eps": eps, "eps_placement": placement,
             "zero_variance": zero, "training": True}
    out = S.forward(x, **hyper)
    np.testing.assert_array_equal(out["y"], expected_y)
    np.testing.assert_array_equal(out["var"], 0.0)
    t = _rng().normal(size=x.shape)
    centered = t - t.mean(axis=0)
    np.testing.assert_allclose(S.jvp(x, tangent={"x": t}, **hyper), centered * jacobian_scale,
                               rtol=1e-13, atol=1e-13)
    g = _rng().normal(size=x.shape)
    np.testing.assert_array_equal(
        S.second_order(x, cotangent=g, tangent={"x": t}, **hyper)["x"], 0.0)


def test_constant_feature_without_eps_is_nan() -> None:
    out = S.forward(np.ones((4, 2)), training=True, axis=[0], ddof=0, eps=0.0,
                    eps_placement="inside_sqrt", zero_variance="ieee")
    assert np.isnan(out["y"]).all()


def test_unit_scale_applies_x_minus_mean_to_a_zero_fitted_variance() -> None:
    x = _rng().normal(size=(3, 2))
    y = S.forward(x, training=False, **SK, mean=np.array([1.0, 2.0]), var=np.zeros(2))["y"]
    np.testing.assert_array_equal(y, x - [1.0, 2.0])


def test_nan_stays_in_its_feature() -> None:
    x = _rng().normal(size=(6, 3))
    x[2, 1] = np.nan
    out = S.forward(x, training=True, **SK)
    assert np.isnan(out["y"][:, 1]).all()
    assert np.isfinite(out["y"][:, [0, 2]]).all()
    assert np.isnan(out["mean"][1])
    assert np.isnan(out["var"][1])


def test_apply_derivatives_are_diagonal() -> None:
    x, g = _rng().normal(size=(4, 3)), _rng().normal(size=(4, 3))
    hyper = {**SK, "training": False, "mean": np.zeros(3), "var": np.array([1.0, 4.0, 0.25])}
    np.testing.assert_allclose(S.vjp(x, cotangent=g, **hyper)["x"], g / [1.0, 2.0, 0.5])
    np.testing.assert_array_equal(
        S.second_order(x, cotangent=g, tangent={"x": x}, **hyper)["x"], 0.0)


def test_axis_forms_agree() -> None:
    x = _rng().normal(size=(2, 3, 4))
    base = {"ddof": 0, "eps": 1e-5, "eps_placement": "inside_sqrt", "zero_variance": "ieee",
            "training": True}
    a = S.forward(x, axis=[0, 2], **base)["y"]
    np.testing.assert_array_equal(S.forward(x, axis="0,2", **base)["y"], a)
    np.testing.assert_array_equal(S.forward(x, axis=[-1, 0], **base)["y"], a)
    np.testing.assert_array_equal(S.forward(x, axis=1, **base)["y"],
                                  S.forward(x, axis=[1], **base)["y"])


@pytest.mark.parametrize(("change", "message"), [
    ({"axis": []}, "axis"),
    ({"axis": [0, 0]}, "distinct"),
    ({"axis": [5]}, "axis"),
    ({"axis": "0,x"}, "comma-separated"),
    ({"ddof": 2}, "ddof"),
    ({"ddof": True}, "ddof"),
    ({"eps": -1.0}, "eps"),
    ({"eps_placement": "inside"}, "eps_placement"),
    ({"zero_variance": "one"}, "zero_variance"),
    ({"training": 1}, "training"),
    ({"training": False}, "mean"),
    ({"var": np.full(3, -1.0), "mean": np.zeros(3)}, "var"),
    ({"mean": np.zeros(4)}, "mean"),
])
def test_bad_arguments_name_themselves(change: dict[str, Any], message: str) -> None:
    hyper = {**SK, "training": True, **change}
    with pytest.raises((TypeError, ValueError), match=message):
        S.forward(_rng().normal(size=(4, 3)), **hyper)


def test_one_value_per_feature_with_ddof_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="ddof=1"):
        S.forward(np.ones((1, 3)), training=True, **{**SK, "ddof": 1})
