"""ONNX deviations behind ledger errata O1-O8, in plain onnx / onnxruntime (no normspec code).

Each test asserts that the deviation is still there, next to a control that shows what the spec
asks for. When a release fixes one, its test fails: then rerun the conformance suite,
regenerate the ledgers with tests/tools/onnx_ledger.py and update docs/errata/onnx.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the errata repros need the 'onnx' extra")
ort = pytest.importorskip("onnxruntime", reason="the errata repros need the 'onnx' extra")
from onnx import TensorProto, helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

F32, F64 = TensorProto.FLOAT, TensorProto.DOUBLE


def _model(op: str, inputs: dict[str, tuple[int, list[int]]], outputs: dict[str, int],
           **attrs: Any) -> Any:
    node = helper.make_node(op, list(inputs), list(outputs), **attrs)
    graph = helper.make_graph(
        [node], "repro", [helper.make_tensor_value_info(n, t, s) for n, (t, s) in inputs.items()],
        [helper.make_tensor_value_info(n, t, None) for n, t in outputs.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])


def _ort(model: Any, **feeds: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    out: list[np.ndarray] = session.run(None, feeds)
    return out


def _ref(model: Any, **feeds: np.ndarray) -> list[np.ndarray]:
    with np.errstate(all="ignore"):
        out: list[np.ndarray] = ReferenceEvaluator(model).run(None, feeds)
    return out


# --- O1: float attributes are float32 ---------------------------------------------------------


def test_o1_epsilon_attribute_is_float32_in_a_float64_model() -> None:
    model = _model("BatchNormalization", {"X": (F64, [1, 2])}
                   | {n: (F64, [2]) for n in ("s", "b", "m", "v")}, {"Y": F64}, epsilon=1e-5)
    stored = model.graph.node[0].attribute[0].f
    assert stored == float(np.float32(1e-5))
    assert stored != 1e-5
    x = np.array([[1.0, 1.0]])
    ones, zeros = np.ones(2), np.zeros(2)
    y = _ort(model, X=x, s=ones, b=zeros, m=zeros, v=np.full(2, 1e-300))[0]
    # var ~ 0: y = 1/sqrt(eps). The runtime uses float32(1e-5), not 1e-5.
    assert y[0, 0] == pytest.approx(1 / np.sqrt(float(np.float32(1e-5))), rel=1e-15)
    assert abs(y[0, 0] * np.sqrt(1e-5) - 1) > 1e-9


def test_o1_momentum_attribute_is_float32() -> None:
    model = _model("BatchNormalization", {"X": (F64, [2, 1])}
                   | {n: (F64, [1]) for n in ("s", "b", "m", "v")},
                   {"Y": F64, "rm": F64, "rv": F64}, epsilon=1e-5, momentum=0.9, training_mode=1)
    one, zero = np.ones(1), np.zeros(1)
    rm = _ort(model, X=np.array([[1.0], [1.0]]), s=one, b=zero, m=zero, v=one)[1]
    # running_mean = 0 * momentum + 1 * (1 - momentum): 0.1 exactly would be 1e-1.
    assert rm[0] == 1.0 - float(np.float32(0.9))
    assert abs(rm[0] - 0.1) > 2e-8


# --- O2: GroupNormalization's one-pass variance ------------------------------------------------


def _group_norm_offset(run: Any) -> np.ndarray:
    x = (1e4 + np.linspace(-1.0, 1.0, 16)).astype(np.float32).reshape(1, 2, 8)
    model = _model("GroupNormalization", {"X": (F32, [1, 2, 8]), "s": (F32, [2]),
                                          "b": (F32, [2])}, {"Y": F32},
                   num_groups=1, epsilon=1e-5, stash_type=1)
    out: np.ndarray = run(model, X=x, s=np.ones(2, np.float32), b=np.zeros(2, np.float32))[0]
    return out


@pytest.mark.parametrize("run", [_ort, _ref], ids=["onnxruntime", "reference"])
def test_o2_group_norm_one_pass_variance_at_offset_1e4(run: Any) -> None:
    y = _group_norm_offset(run)
    x = (1e4 + np.linspace(-1.0, 1.0, 16)).astype(np.float32).astype(np.float64)
    exact = (x - x.mean()) / np.sqrt(x.var() + 1e-5)
    # Two-pass float32 is accurate to ~1e-6 here; the one-pass variance cancels to 0 and y is
    # (x - mean) / sqrt(eps), about 194 times too large.
    assert not np.allclose(y.ravel(), exact, atol=1e-2, equal_nan=False)


# --- O3: LayerNormalization's Mean is NaN for a row holding inf -------------------------------


def test_o3_layer_norm_mean_is_nan_for_an_infinite_row() -> None:
    model = _model("LayerNormalization", {"X": (F32, [1, 3]), "s": (F32, [3])},
                   {"Y": F32, "M": F32, "R": F32}, axis=1, epsilon=1e-5)
    x = np.array([[1.0, np.inf, 2.0]], np.float32)
    mean = _ort(model, X=x, s=np.ones(3, np.float32))[1]
    assert np.isnan(mean[0, 0])  # the spec's mean is +inf
    assert np.mean(x) == np.inf


# --- O4: LRN's running sum poisons channels outside the window --------------------------------


def test_o4_lrn_nan_poisons_channels_outside_its_window() -> None:
    model = _model("LRN", {"X": (F32, [1, 6, 1, 1])}, {"Y": F32}, size=3, alpha=1e-4,
                   beta=0.75, bias=1.0)
    x = np.ones((1, 6, 1, 1), np.float32)
    x[0, 0] = np.nan
    y = _ort(model, X=x)[0].ravel()
    # Channel 0's window reaches channel 1 only; channels 2-5 must stay finite.
    assert np.all(np.isnan(y[2:]))
    assert np.all(np.isfinite(_ref(model, X=np.ones((1, 6, 1, 1), np.float32))[0]))


def test_o4_lrn_large_square_leaves_a_residue_in_later_windows() -> None:
    model = _model("LRN", {"X": (F32, [1, 6, 1, 1])}, {"Y": F32}, size=3, alpha=1.0,
                   beta=0.75, bias=0.01)
    x = np.array([1000, 0.1, 0.1, 0.1, 0.1, 0.1], np.float32).reshape(1, 6, 1, 1)
    y = _ort(model, X=x)[0].ravel()
    # Channels 2-5 never see the 1000 (size 3): spec 1.8803016 (2-4) and 2.1558247 (5).
    assert not np.any(np.isfinite(y[2:]))
    sq = np.pad(x.ravel().astype(np.float64) ** 2, 1)
    spec = x.ravel() * (0.01 + (sq[:-2] + sq[1:-1] + sq[2:]) / 3) ** -0.75
    assert np.allclose(spec[2:], [1.8803016, 1.8803016, 1.8803016, 2.1558247], rtol=1e-6)


# --- O5: even LRN sizes are rejected ----------------------------------------------------------


def test_o5_onnxruntime_rejects_an_even_lrn_size() -> None:
    model = _model("LRN", {"X": (F32, [1, 4, 1, 1])}, {"Y": F32}, size=2, alpha=1e-4,
                   beta=0.75, bias=1.0)
    with pytest.raises(Exception, match=r"size_ % 2 == 1"):
        _ort(model, X=np.ones((1, 4, 1, 1), np.float32))


# --- O6: the reference LRN loops over the batch axis ------------------------------------------


def test_o6_reference_lrn_leaves_channels_beyond_the_batch_size_unnormalized() -> None:
    model = _model("LRN", {"X": (F32, [1, 3, 1, 1])}, {"Y": F32}, size=1, alpha=1.0,
                   beta=1.0, bias=1.0)
    x = np.full((1, 3, 1, 1), 2.0, np.float32)
    y = _ref(model, X=x)[0].ravel()
    # size 1: y = x / (1 + x^2) = 0.4 on every channel; channels 1 and 2 get x / 1 instead.
    assert y[0] == pytest.approx(0.4)
    assert y[1:].tolist() == [2.0, 2.0]
    assert _ort(model, X=x)[0].ravel() == pytest.approx([0.4, 0.4, 0.4])


# --- O7: the reference LpNormalization sums x^p without abs -----------------------------------


def test_o7_reference_l1_norm_is_the_signed_sum() -> None:
    model = _model("LpNormalization", {"X": (F64, [1, 3])}, {"Y": F64}, axis=1, p=1)
    x = np.array([[1.0, -2.0, 2.0]])
    assert _ref(model, X=x)[0].tolist() == [[1.0, -2.0, 2.0]]  # divided by 1 - 2 + 2
    assert _ort(model, X=x)[0].ravel() == pytest.approx([0.2, -0.4, 0.4])


# --- O8: the reference evaluator computes in the half dtype -----------------------------------


def test_o8_reference_rms_norm_squares_in_float16() -> None:
    model = _model("RMSNormalization", {"X": (TensorProto.FLOAT16, [1, 4]),
                                        "s": (TensorProto.FLOAT16, [4])},
                   {"Y": TensorProto.FLOAT16}, axis=1, epsilon=1e-5, stash_type=1)
    x = np.full((1, 4), 300.0, np.float16)
    y = _ref(model, X=x, s=np.ones(4, np.float16))[0]
    # stash_type=1 asks for float32: 300^2 fits and y = 1. In float16 300^2 overflows to inf.
    assert y.ravel().tolist() == [0.0, 0.0, 0.0, 0.0]
    assert _ort(model, X=x, s=np.ones(4, np.float16))[0].ravel().tolist() == [1.0] * 4
