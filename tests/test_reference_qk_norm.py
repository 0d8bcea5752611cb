"""Properties of the qk_norm reference: composition, layouts, scale, eps branches, errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from normspec.reference import lp_norm, qk_norm, rms_norm


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _hyper(variant: str = "rms", layout: str = "bhtd", norm_axes: str = "head",
           logit_scale: float = 0.5, eps: float = 1e-6) -> dict[str, Any]:
    return {"variant": variant, "layout": layout, "norm_axes": norm_axes,
            "logit_scale": logit_scale, "eps": eps}


def test_l2_is_lp_norm_then_the_product() -> None:
    rng = _rng(1)
    q, k = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 6, 5))
    out = qk_norm.forward(q, k, gain=np.array(3.0), **_hyper("l2", logit_scale=2.0, eps=1e-12))
    qh = lp_norm.forward(q, p=2, axis=-1, eps=1e-12)["y"]
    kh = lp_norm.forward(k, p=2, axis=-1, eps=1e-12)["y"]
    np.testing.assert_array_equal(out["q_hat"], qh)
    np.testing.assert_allclose(out["y"], 6.0 * qh @ np.swapaxes(kh, -1, -2), rtol=1e-14)
    assert np.all(np.abs(out["y"]) <= 6.0 * (1 + 1e-15))  # cosine similarities times c g


def test_rms_head_shares_the_weight_across_heads() -> None:
    rng = _rng(2)
    q, k, w = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 4, 5)), \
        rng.standard_normal(5)
    out = qk_norm.forward(q, k, w, w, **_hyper())
    for h in range(3):
        np.testing.assert_array_equal(out["q_hat"][:, h],
                                      rms_norm.forward(q[:, h], w, axis=-1, eps=1e-6)["y"])


def test_rms_hidden_normalizes_each_token_over_all_heads() -> None:
    rng = _rng(3)
    q, k, w = rng.standard_normal((2, 4, 3, 5)), rng.standard_normal((2, 4, 3, 5)), \
        rng.standard_normal((3, 5))
    out = qk_norm.forward(q, k, w, w, **_hyper(layout="bthd", norm_axes="hidden"))
    flat = rms_norm.forward(q.reshape(2, 4, 15), w.reshape(15), axis=-1, eps=1e-6)["y"]
    np.testing.assert_array_equal(out["q_hat"], flat.reshape(q.shape))


def test_hidden_with_one_head_is_head() -> None:
    rng = _rng(4)
    q, k, w = rng.standard_normal((2, 1, 3, 5)), rng.standard_normal((2, 1, 4, 5)), \
        rng.standard_normal(5)
    a = qk_norm.forward(q, k, w, w, **_hyper())
    b = qk_norm.forward(q, k, w[None], w[None], **_hyper(norm_axes="hidden"))
    np.testing.assert_allclose(a["y"], b["y"], rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize(("variant", "norm_axes"), [("l2", "head"), ("rms", "head"),
                                                    ("rms", "hidden")])
def test_layouts_agree(variant: str, norm_axes: str) -> None:
    rng = _rng(5)
    q, k = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 6, 5))
    w = None if variant == "l2" else rng.standard_normal((3, 5) if norm_axes == "hidden" else 5)
    g = rng.standard_normal((2, 3, 4, 6))
    a = qk_norm.vjp(q, k, w, w, cotangent=g, **_hyper(variant, norm_axes=norm_axes))
    tq, tk = q.transpose(0, 2, 1, 3), k.transpose(0, 2, 1, 3)
    b = qk_norm.vjp(tq, tk, w, w, cotangent=g, **_hyper(variant, "bthd", norm_axes))
    ya = qk_norm.forward(q, k, w, w, **_hyper(variant, norm_axes=norm_axes))["y"]
    yb = qk_norm.forward(tq, tk, w, w, **_hyper(variant, "bthd", norm_axes))["y"]
    np.testing.assert_array_equal(ya, yb)
    np.testing.assert_allclose(a["x"], b["x"].transpose(0, 2, 1, 3), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(a["k"], b["k"].transpose(0, 2, 1, 3), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("variant", ["l2", "rms"])
def test_scale_invariant_with_eps_zero(variant: str) -> None:
    rng = _rng(6)
    q, k = rng.standard_normal((1, 2, 3, 4)), rng.standard_normal((1, 2, 3, 4))
    a = qk_norm.forward(q, k, **_hyper(variant, eps=0.0))["y"]
    b = qk_norm.forward(q * 2.0**40, k * 2.0**-60, **_hyper(variant, eps=0.0))["y"]
    np.testing.assert_array_equal(a, b)


def test_zero_query_row_l2_clamps() -> None:
    rng = _rng(7)
    q, k = rng.standard_normal((1, 1, 3, 4)), rng.standard_normal((1, 1, 5, 4))
    q[0, 0, 1] = 0.0
    g = rng.standard_normal((1, 1, 3, 5))
    hyper = _hyper("l2", logit_scale=1.0, eps=1e-3)
    out = qk_norm.forward(q, k, **hyper)
    assert np.all(out["y"][0, 0, 1] == 0.0)
    grads = qk_norm.vjp(q, k, cotangent=g, **hyper)
    kh = out["k_hat"][0, 0]
    # the clamped branch is linear: d qhat / d q = I / eps
    np.testing.assert_allclose(grads["x"][0, 0, 1], (g[0, 0, 1] @ kh) / 1e-3, rtol=1e-13)
    nan = qk_norm.forward(q, k, **_hyper("l2", logit_scale=1.0, eps=0.0))["y"]
    assert np.all(np.isnan(nan[0, 0, 1]))
    assert np.all(np.isfinite(nan[0, 0, [0, 2]]))


def test_gain_gradient_is_the_logits_over_gain() -> None:
    rng = _rng(8)
    q, k, g = rng.standard_normal((2, 2, 3, 4)), rng.standard_normal((2, 2, 3, 4)), \
        rng.standard_normal((2, 2, 3, 3))
    hyper = _hyper("l2", logit_scale=1.5, eps=1e-12)
    y = qk_norm.forward(q, k, gain=np.array(2.0), **hyper)["y"]
    grads = qk_norm.vjp(q, k, gain=np.array(2.0), cotangent=g, **hyper)
    np.testing.assert_allclose(grads["gain"], np.sum(g * y) / 2.0, rtol=1e-13)


def test_shapes_helpers_agree_with_forward() -> None:
    for shape, layout in (((2, 3, 5, 4), "bhtd"), ((2, 5, 3, 4), "bthd"), ((1, 2, 4, 8), "bhtd")):
        hyper = _hyper(layout=layout, norm_axes="hidden")
        shapes = qk_norm.input_shapes(shape, hyper)
        rng = _rng(9)
        out = qk_norm.forward(rng.standard_normal(shape), rng.standard_normal(shapes["k"]),
                              np.ones(shapes["q_weight"]), None, **hyper)
        assert out["y"].shape == qk_norm.output_shape(shape, hyper)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"q_weight": np.ones(4), "variant": "l2"}, r"argument 'q_weight'.*expected None"),
    ({"variant": "l2", "norm_axes": "hidden"}, r"argument 'norm_axes'.*'head'"),
    ({"k": np.ones((1, 3, 3, 4))}, r"argument 'k'.*head"),
    ({"q_weight": np.ones(3)}, r"argument 'q_weight'"),
    ({"gain": np.ones(2)}, r"argument 'gain'"),
    ({"layout": "btdh"}, r"argument 'layout'"),
])
def test_argument_errors_name_the_argument(kwargs: dict[str, Any], match: str) -> None:
    call: dict[str, Any] = {"x": np.ones((1, 2, 3, 4)), "k": np.ones((1, 2, 3, 4)), **_hyper()}
    call.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        qk_norm.forward(**call)
