"""Properties of the spectral_norm reference beyond the generic proofs (mpmath, differences)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from normspec.reference import spectral_norm as sn

RNG = np.random.default_rng(1201)


def _power(**extra: Any) -> dict[str, Any]:
    return {"dim": 0, "mode": "power_iteration", "training": True, "n_power_iterations": 1,
            "update_order": "v_first", "eps": 1e-12, **extra}


def test_exact_output_has_spectral_norm_one_and_is_scale_free() -> None:
    w = RNG.standard_normal((5, 3, 2))
    y = sn.forward(w, dim=1, mode="exact", training=True)["y"]
    m = np.moveaxis(y, 1, 0).reshape(3, -1)
    assert np.linalg.norm(m, 2) == pytest.approx(1.0, rel=1e-15)
    y2 = sn.forward(w * 1e80, dim=1, mode="exact", training=True)["y"]
    np.testing.assert_allclose(y2, y, rtol=1e-15)


def test_matrix_view_puts_dim_first_and_flattens_the_rest_in_order() -> None:
    w = RNG.standard_normal((3, 4, 2, 2))          # a transposed convolution (I, O, kh, kw)
    sigma = sn.forward(w, dim=1, mode="exact", training=True)["sigma"]
    m = np.transpose(w, (1, 0, 2, 3)).reshape(4, 12)
    assert float(sigma) == pytest.approx(np.linalg.svd(m, compute_uv=False)[0], rel=1e-15)


def test_power_iteration_converges_to_the_exact_sigma_and_pair() -> None:
    w = RNG.standard_normal((6, 4))
    out = sn.forward(w, **_power(n_power_iterations=200, u=RNG.standard_normal(6),
                                 v=RNG.standard_normal(4)))
    uu, s, vt = np.linalg.svd(w)
    assert float(out["sigma"]) == pytest.approx(s[0], rel=1e-14)
    assert abs(out["u"] @ uu[:, 0]) == pytest.approx(1.0, rel=1e-12)
    assert abs(out["v"] @ vt[0]) == pytest.approx(1.0, rel=1e-12)


def test_v_first_is_the_papers_order_and_u_first_its_transpose() -> None:
    w, u0, v0 = RNG.standard_normal((4, 3)), RNG.standard_normal(4), RNG.standard_normal(3)
    out = sn.forward(w, **_power(u=u0, v=v0))
    v = w.T @ u0 / np.linalg.norm(w.T @ u0)
    u = w @ v / np.linalg.norm(w @ v)
    np.testing.assert_allclose(out["v"], v, rtol=1e-14)
    np.testing.assert_allclose(out["u"], u, rtol=1e-14)
    assert float(out["sigma"]) == pytest.approx(np.linalg.norm(w @ v), rel=1e-14)
    # u_first on W is v_first on W^T with the roles of u and v exchanged
    first = sn.forward(w, **_power(update_order="u_first", n_power_iterations=3, u=u0, v=v0))
    other = sn.forward(w.T, **_power(n_power_iterations=3, u=v0, v=u0))
    np.testing.assert_allclose(first["u"], other["v"], rtol=1e-14)
    np.testing.assert_allclose(first["v"], other["u"], rtol=1e-14)
    assert float(first["sigma"]) == pytest.approx(float(other["sigma"]), rel=1e-14)


def test_evaluation_runs_no_iteration_and_returns_no_state() -> None:
    w, u0, v0 = RNG.standard_normal((4, 3)), RNG.standard_normal(4), RNG.standard_normal(3)
    out = sn.forward(w, dim=0, mode="power_iteration", training=False, u=u0, v=v0)
    assert set(out) == {"y", "sigma"}
    assert float(out["sigma"]) == pytest.approx(u0 @ w @ v0, rel=1e-14)


def test_eps_floors_the_norm_in_each_normalization() -> None:
    w, u0 = 1e-3 * RNG.standard_normal((3, 4)), RNG.standard_normal(3)
    out = sn.forward(w, **_power(eps=0.5, u=u0, v=np.ones(4)))
    np.testing.assert_allclose(out["v"], w.T @ u0 / 0.5, rtol=1e-14)
    np.testing.assert_allclose(out["u"], w @ out["v"] / 0.5, rtol=1e-14)


@pytest.mark.parametrize("mode", ["exact", "power_iteration"])
def test_zero_weight_gives_nan(mode: str) -> None:
    hyper = _power(u=np.ones(3), v=np.ones(4)) if mode != "exact" else {
        "dim": 0, "mode": "exact", "training": True}
    out = sn.forward(np.zeros((3, 4)), **hyper)
    assert float(out["sigma"]) == 0.0
    assert np.isnan(out["y"]).all()
    if mode != "exact":
        assert not out["u"].any()
        assert not out["v"].any()


def test_repeated_top_singular_value_is_forward_only() -> None:
    h = np.array([[1.0, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]])
    hyper = {"dim": 0, "mode": "exact", "training": True}
    np.testing.assert_array_equal(sn.forward(h, **hyper)["y"], h / 2)
    with pytest.raises(ValueError, match=r"argument 'x': its top singular value is repeated"):
        sn.vjp(h, cotangent=np.ones((4, 4)), **hyper)
    with pytest.raises(ValueError, match="not differentiable"):
        sn.jvp(h, tangent={"x": np.ones((4, 4))}, **hyper)
    # a repeated *smaller* singular value (rank 1) is differentiable
    r1 = np.outer([1.0, 2.0, -1.0], [1.0, 0.5])
    assert np.isfinite(sn.second_order(r1, cotangent=np.ones((3, 2)),
                                       tangent={"x": np.ones((3, 2))}, **hyper)["x"]).all()


def test_power_derivatives_hold_u_and_v_constant() -> None:
    w, u0, v0 = RNG.standard_normal((4, 3)), RNG.standard_normal(4), RNG.standard_normal(3)
    hyper = _power(u=u0, v=v0)
    out = sn.forward(w, **hyper)
    t = RNG.standard_normal((4, 3))
    frozen = {"dim": 0, "mode": "power_iteration", "training": False, "u": out["u"],
              "v": out["v"]}
    np.testing.assert_allclose(sn.jvp(w, tangent={"x": t}, **hyper),
                               sn.jvp(w, tangent={"x": t}, **frozen), rtol=1e-13)


@pytest.mark.parametrize(("hyper", "match"), [
    ({"dim": 0, "mode": "svd", "training": True}, "argument 'mode'"),
    ({"dim": 2, "mode": "exact", "training": True}, "argument 'dim'"),
    ({"dim": 0, "mode": "exact", "training": 1}, "argument 'training'"),
    (_power(u=None, v=np.ones(4)), "argument 'u'"),
    (_power(u=np.ones(3), v=np.ones(5)), "argument 'v'"),
    (_power(n_power_iterations=0, u=np.ones(3), v=np.ones(4)), "argument 'n_power_iterations'"),
    (_power(update_order="both", u=np.ones(3), v=np.ones(4)), "argument 'update_order'"),
    (_power(eps=-1.0, u=np.ones(3), v=np.ones(4)), "argument 'eps'"),
])
def test_bad_arguments_are_named(hyper: dict[str, Any], match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        sn.forward(np.ones((3, 4)), **hyper)


def test_a_vector_is_not_a_weight_matrix() -> None:
    with pytest.raises(ValueError, match="argument 'x'"):
        sn.forward(np.ones(3), dim=0, mode="exact", training=True)
