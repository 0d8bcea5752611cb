"""gradient_normalization: the VJP against mpmath, and what can be proved of a method defined by
its backward pass (the forward is exactly the identity; the VJP has unit norm over the axes,
keeps the gradient's direction and does not depend on x); JVP and second order are declared
not applicable."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from normspec.conformance.vectors.catalog import not_applicable
from normspec.reference import gradient_normalization as gn
from oracles import DPS, ProofCase
from oracles import gradient_normalization as oracle

MAX_ULP = 4.0
CASES = oracle.cases()
IDS = [c.name for c, _ in CASES]


def _ulp_error(got: np.ndarray, exact: np.ndarray) -> float:
    """Max |got - exact| in float64 ulp of max|exact| (finite part); NaN positions agree."""
    with np.errstate(all="ignore"):  # NaN is a value to compare here
        exact_f = np.vectorize(float, otypes=[np.float64])(exact)
    assert np.array_equal(np.isnan(got), np.isnan(exact_f)), "NaN positions differ"
    finite = np.isfinite(exact_f)
    if not finite.any():
        return 0.0
    scale = float(np.max(np.abs(exact_f[finite])))
    if scale == 0.0:
        return float(np.max(np.abs(got[finite]))) / float(np.finfo(np.float64).smallest_subnormal)
    worst = mpmath.mpf(0)
    with mpmath.workdps(DPS):
        for r, e in zip(got[finite].tolist(), exact[finite].tolist(), strict=True):
            worst = max(worst, abs(mpmath.mpf(r) - e))
    return float(worst / mpmath.mpf(float(np.spacing(scale))))


def test_enough_proof_cases() -> None:
    assert len(CASES) >= 50


@pytest.mark.parametrize(("case", "g"), CASES, ids=IDS)
def test_vjp_matches_mpmath(case: ProofCase, g: np.ndarray) -> None:
    got = gn.vjp(**case.primals, cotangent=g, **case.hyper)
    assert set(got) == {"x"}
    exact = oracle.mp_vjp(case.primals, case.hyper, g)["x"]
    err = _ulp_error(got["x"], exact)
    assert err <= MAX_ULP, f"{err:.2f} ulp"


@pytest.mark.parametrize(("case", "g"), CASES, ids=IDS)
def test_forward_is_exactly_the_identity(case: ProofCase, g: np.ndarray) -> None:
    x = case.primals["x"]
    assert x is not None
    y = gn.forward(x, **case.hyper)["y"]
    assert y.dtype == np.float64
    assert y is not x
    assert np.array_equal(y, x, equal_nan=True)
    assert np.array_equal(np.signbit(y), np.signbit(x))


def _rows(a: np.ndarray, axis: object) -> np.ndarray:
    return gn.layout(a.shape, axis=axis).to_rows(a)  # type: ignore[arg-type]


@pytest.mark.parametrize(("case", "g"), CASES, ids=IDS)
def test_unit_norm_and_direction(case: ProofCase, g: np.ndarray) -> None:
    eps = case.hyper["eps"]
    out = _rows(gn.vjp(**case.primals, cotangent=g, **case.hyper)["x"], case.hyper["axis"])
    g2 = _rows(g, case.hyper["axis"])
    for row, grow in zip(out, g2, strict=True):
        if not np.isfinite(grow).all():
            continue
        top = float(np.abs(grow).max())
        norm = top * math.sqrt(math.fsum((float(v) / top) ** 2 for v in grow)) if top else 0.0
        if norm == 0.0:
            assert (np.isnan(row).all() if eps == 0 else not row.any())
            continue
        # direction: the same signs, one positive factor per row (or an underflow to 0)
        assert np.all((np.sign(row) == np.sign(grow)) | (row == 0))
        if norm >= eps:
            scale = float(np.abs(row).max())
            unit = math.sqrt(math.fsum(float(v) ** 2 for v in row / scale)) * scale
            assert abs(unit - 1.0) <= 4 * np.finfo(np.float64).eps * math.sqrt(row.size)
        else:
            np.testing.assert_array_equal(row, grow / eps)


def test_the_vjp_does_not_depend_on_x() -> None:
    rng = np.random.default_rng(5)
    g = rng.standard_normal((3, 4))
    a = gn.vjp(rng.standard_normal((3, 4)), cotangent=g, axis=[1], eps=1e-12)["x"]
    b = gn.vjp(np.full((3, 4), np.nan), cotangent=g, axis=[1], eps=1e-12)["x"]
    np.testing.assert_array_equal(a, b)


def test_the_vjp_is_scale_invariant_and_the_axes_matter() -> None:
    rng = np.random.default_rng(6)
    g = rng.standard_normal((2, 3, 4))
    base = gn.vjp(g, cotangent=g, axis=[1, 2], eps=1e-12)["x"]
    np.testing.assert_array_equal(gn.vjp(g, cotangent=2.0**-600 * g, axis="1,2",
                                         eps=0.0)["x"], base)
    whole = gn.vjp(g, cotangent=g, axis=[0, 1, 2], eps=1e-12)["x"]
    assert np.sum(whole**2) == pytest.approx(1.0, rel=1e-14)
    assert np.sum(base**2) == pytest.approx(2.0, rel=1e-14)  # one unit row per sample
    assert not np.allclose(whole, base)


def test_zero_gradient() -> None:
    z = np.zeros((2, 3))
    assert not gn.vjp(z, cotangent=z, axis=[1], eps=1e-12)["x"].any()
    assert np.isnan(gn.vjp(z, cotangent=z, axis=[1], eps=0.0)["x"]).all()


def test_jvp_and_second_order_are_declared_not_applicable() -> None:
    assert set(not_applicable(gn)) == {"jvp", "second_order"}
    x = np.ones((2, 3))
    with pytest.raises(NotImplementedError, match="defined by its backward pass"):
        gn.jvp(x, tangent={"x": x}, axis=[1], eps=1e-12)
    with pytest.raises(NotImplementedError, match="nonlinear function of the cotangent"):
        gn.second_order(x, cotangent=x, tangent={"x": x}, axis=[1], eps=1e-12)


@pytest.mark.parametrize(("kw", "error", "text"), [
    ({"axis": [2]}, ValueError, "axis"),
    ({"axis": [1, 1]}, ValueError, "distinct axes"),
    ({"axis": []}, TypeError, "non-empty list"),
    ({"eps": -1.0}, ValueError, "eps"),
    ({"eps": float("nan")}, ValueError, "eps"),
])
def test_argument_errors_name_the_argument(kw: dict[str, object], error: type[Exception],
                                           text: str) -> None:
    args: dict[str, object] = {"axis": [1], "eps": 1e-12, **kw}
    x = np.ones((2, 3))
    with pytest.raises(error, match=text):
        gn.vjp(x, cotangent=x, **args)  # type: ignore[arg-type]
    with pytest.raises(error, match=text):
        gn.forward(x, **args)  # type: ignore[arg-type]


def test_the_cotangent_must_have_x_shape() -> None:
    with pytest.raises(ValueError, match="cotangent"):
        gn.vjp(np.ones((2, 3)), cotangent=np.ones((3, 2)), axis=[1], eps=1e-12)
