"""Properties of the gradnorm reference (GradNorm's task-weight step, Chen et al. 2018)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from normspec.reference import gradnorm as G
from oracles import gradnorm as O
from test_reference_derivatives import richardson
from test_reference_forward import MAX_ULP, _ulp_error

PROOFS = O.proof_cases()
FD = [c for c in PROOFS if c.fd]


def _rng() -> np.random.Generator:
    return np.random.default_rng(12)


def _inputs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.stack([rng.uniform(0.2, 3.0, n), rng.uniform(0.2, 2.0, n)])
    return x, rng.uniform(0.5, 3.0, n), rng.uniform(0.5, 1.5, n)


# The generic proofs (tests/test_reference_forward.py, test_reference_derivatives.py) pick the
# method up once it is in METHODS; these run the same checks on the oracle's cases directly.
@pytest.mark.parametrize("case", PROOFS, ids=[c.name for c in PROOFS])
def test_forward_matches_the_mpmath_oracle(case: O.ProofCase) -> None:
    got = G.forward(**case.primals, **case.hyper)
    exact = O.mp_forward(case.primals, case.hyper)
    assert set(got) == set(exact)
    for key, value in exact.items():
        err = _ulp_error(np.asarray(got[key], dtype=np.float64), np.asarray(value, dtype=object))
        assert err <= MAX_ULP, f"{key}: {err:.2f} ulp"


def test_enough_proof_and_fd_cases() -> None:
    assert len(PROOFS) >= 50
    assert len(FD) >= 5


@pytest.mark.parametrize("case", FD, ids=[c.name for c in FD])
def test_derivatives_match_richardson(case: O.ProofCase) -> None:
    rng = np.random.default_rng(3)
    prim = {k: v for k, v in case.primals.items() if v is not None}
    cot = rng.standard_normal(prim["x"].shape[1])
    tan = {k: rng.standard_normal(v.shape) for k, v in prim.items()}

    def shifted(s: float, t: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v + s * t[k] for k, v in prim.items()}

    y_num = richardson(lambda s: G.forward(**shifted(s, tan), **case.hyper)["y"], case.fd_step)
    np.testing.assert_allclose(G.jvp(**prim, tangent=tan, **case.hyper), y_num,
                               rtol=0, atol=1e-8 * max(np.max(np.abs(y_num)), 1e-300))
    got = G.vjp(**prim, cotangent=cot, **case.hyper)
    for key, base in prim.items():
        numeric = np.empty(base.shape)
        for idx in np.ndindex(*base.shape):
            e = {k: np.zeros_like(v) for k, v in prim.items()}
            e[key][idx] = 1.0
            dy = richardson(lambda s, e=e: G.forward(**shifted(s, e), **case.hyper)["y"],
                            case.fd_step)
            numeric[idx] = float(np.sum(cot * dy))
        assert np.max(np.abs(got[key] - numeric)) <= 1e-8 * max(np.max(np.abs(numeric)), 1.0)
    second = G.second_order(**prim, cotangent=cot, tangent=tan, **case.hyper)
    for key in second:
        numeric = richardson(
            lambda s, key=key: G.vjp(**shifted(s, tan), cotangent=cot, **case.hyper)[key],
            case.fd_step)
        scale = max(float(np.max(np.abs(numeric))), 1e-300)
        assert np.max(np.abs(second[key] - numeric)) <= 1e-8 * scale


@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("alpha", [0.0, 0.12, 1.5])
def test_weights_sum_to_t_after_every_step(n: int, alpha: float) -> None:
    x, init, w = _inputs(n, seed=n)
    rng = _rng()
    for _ in range(6):
        out = G.forward(x, init, training=True, weights=w, alpha=alpha, lr=0.1)
        assert abs(out["weights"].sum() - n) <= 8 * n * np.finfo(float).eps
        np.testing.assert_array_equal(out["y"], out["weights"])
        w = out["weights"]
        x = x * rng.uniform(0.8, 1.1, x.shape)


def test_alpha_zero_targets_the_mean_gradient_norm() -> None:
    x, init, w = _inputs(4)
    out = G.forward(x, init, training=True, weights=w, alpha=0.0, lr=0.1)
    np.testing.assert_array_equal(out["targets"], np.full(4, out["weighted_norms"].mean()))


def test_a_task_at_its_target_gets_zero_gradient() -> None:
    x, init, w = O._at_target()
    for alpha in (0.0, 0.12, 1.0, 1.5, 3.0):
        out = G.forward(x, init, training=True, weights=w, alpha=alpha, lr=0.1)
        assert out["targets"][1] == out["weighted_norms"][1] == 2.0
        assert out["weight_grad"].tolist() == [-1.0, 0.0, 3.0]


def test_the_step_is_sign_descent_then_renormalization() -> None:
    x, init, w = _inputs(3, seed=4)
    out = G.forward(x, init, training=True, weights=w, alpha=1.5, lr=0.05)
    sign = np.sign(out["weighted_norms"] - out["targets"])
    np.testing.assert_array_equal(out["weight_grad"], sign * x[0])
    v = w - 0.05 * sign * x[0]
    np.testing.assert_allclose(out["y"], 3 * v / v.sum(), rtol=1e-15)
    np.testing.assert_allclose(out["grad_norm_loss"],
                               np.sum(np.abs(out["weighted_norms"] - out["targets"])), rtol=1e-14)


def test_the_target_is_a_constant_for_the_update() -> None:
    # Differentiating the target too would add -sum_j sign_j r_j^alpha g_i / T to each d_i.
    x, init, w = _inputs(3, seed=6)
    out = G.forward(x, init, training=True, weights=w, alpha=1.5, lr=0.05)
    assert np.all(np.abs(out["weight_grad"]) == x[0])


def test_loss_ratios_are_relative_to_their_mean() -> None:
    x, init, w = _inputs(3, seed=7)
    out = G.forward(x, init, training=True, weights=w, alpha=1.0, lr=0.05)
    ratio = x[1] / init
    np.testing.assert_allclose(out["targets"], out["weighted_norms"].mean() * ratio / ratio.mean(),
                               rtol=1e-15)
    # scaling every loss (or every initial loss) leaves the step unchanged
    again = G.forward(x * np.array([[1.0], [8.0]]), init / 4, training=True, weights=w,
                      alpha=1.0, lr=0.05)
    np.testing.assert_allclose(again["y"], out["y"], rtol=1e-15)


def test_a_zero_gradient_norm_leaves_the_weight_before_renormalization() -> None:
    x, init, w = _inputs(3, seed=8)
    x[0, 0] = 0.0
    out = G.forward(x, init, training=True, weights=w, alpha=0.12, lr=0.1)
    assert out["weight_grad"][0] == 0.0
    assert out["weighted_norms"][0] == 0.0
    v = w - 0.1 * out["weight_grad"]
    assert v[0] == w[0]


def test_evaluation_returns_the_weights_unchanged_with_zero_derivatives() -> None:
    x, init, w = _inputs(3)
    hyper: dict[str, Any] = {"training": False, "weights": w, "alpha": 1.5, "lr": 0.1}
    out = G.forward(x, init, **hyper)
    np.testing.assert_array_equal(out["y"], w)
    assert "weights" not in out
    cot = np.ones(3)
    assert not np.any(G.vjp(x, init, cotangent=cot, **hyper)["x"])
    assert not np.any(G.jvp(x, init, tangent={"x": np.ones_like(x)}, **hyper))


def test_losses_and_initial_losses_have_zero_derivative() -> None:
    x, init, w = _inputs(4, seed=9)
    got = G.vjp(x, init, cotangent=np.arange(4.0), training=True, weights=w, alpha=1.5, lr=0.1)
    assert not np.any(got["x"][1])
    assert not np.any(got["initial_losses"])
    assert np.any(got["x"][0])


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"x": np.ones((3, 2))}, "'x'"),
    ({"x": np.array([[1.0, -1.0], [1.0, 1.0]])}, "gradient norm"),
    ({"x": np.array([[1.0, 1.0], [0.0, 0.0]])}, "every loss 0"),
    ({"x": np.array([[1.0, 1.0], [1.0, np.nan]])}, "a loss"),
    ({"initial_losses": np.array([1.0, 0.0])}, "initial_losses"),
    ({"initial_losses": np.ones(3)}, "initial_losses"),
    ({"weights": np.array([1.0, 0.0])}, "weights"),
    ({"weights": None}, "weights"),
    ({"alpha": -0.5}, "alpha"),
    ({"lr": 0.0}, "lr"),
])
def test_argument_errors_name_the_argument(kwargs: dict[str, Any], needle: str) -> None:
    base: dict[str, Any] = {"x": np.ones((2, 2)), "initial_losses": np.ones(2), "training": True,
                            "weights": np.ones(2), "alpha": 1.0, "lr": 0.1}
    with pytest.raises(ValueError, match=needle):
        G.forward(**{**base, **kwargs})
