"""Proof (a): each reference forward matches an independent mpmath evaluation.

The error of every output element is measured in float64 ulp of the output's scale
(the largest finite magnitude in that tensor); the bound is 4 ulp.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from normspec.reference import METHODS, get
from oracles import DPS, ProofCase, oracle

MAX_ULP = 4.0
MIN_CASES = 50


def _ulp_error(ref: np.ndarray, exact: np.ndarray) -> float:
    """Max |ref - exact| in ulp of the scale max|exact|; NaN positions must agree."""
    with np.errstate(all="ignore"):  # NaN and overflow to inf are values to compare here
        exact_f = (np.vectorize(float, otypes=[np.float64])(exact) if exact.size
                   else exact.astype(float))
    nan_ref, nan_exact = np.isnan(ref), np.isnan(exact_f)
    assert np.array_equal(nan_ref, nan_exact), "NaN positions differ from the oracle"
    inf_exact = np.isinf(exact_f)
    assert np.array_equal(ref[inf_exact], exact_f[inf_exact]), "infinities differ"
    finite = ~(nan_exact | inf_exact)
    if not finite.any():
        return 0.0
    scale = float(np.max(np.abs(exact_f[finite])))
    if scale == 0.0:
        return float(np.max(np.abs(ref[finite]))) / float(np.finfo(np.float64).smallest_subnormal)
    worst = mpmath.mpf(0)
    with mpmath.workdps(DPS):
        for r, e in zip(ref[finite].tolist(), exact[finite].tolist(), strict=True):
            worst = max(worst, abs(mpmath.mpf(r) - e))
    return float(worst / mpmath.mpf(float(np.spacing(scale))))


def _cases() -> list[tuple[str, ProofCase]]:
    out = []
    for method in METHODS:
        try:
            mod = oracle(method)
        except ModuleNotFoundError:
            continue
        out.extend((method, case) for case in mod.proof_cases())
    return out


CASES = _cases()


@pytest.mark.parametrize("method", METHODS)
def test_each_method_has_enough_proof_cases(method: str) -> None:
    count = sum(1 for m, _ in CASES if m == method)
    assert count >= MIN_CASES, f"{method}: {count} proof cases, need {MIN_CASES}"


@pytest.mark.parametrize(("method", "case"), CASES, ids=[f"{m}[{c.name}]" for m, c in CASES])
def test_forward_matches_mpmath(method: str, case: ProofCase) -> None:
    got = get(method).forward(**case.primals, **case.hyper)
    exact = oracle(method).mp_forward(case.primals, case.hyper)
    assert exact, "the oracle returned nothing to compare"
    for key, value in exact.items():
        err = _ulp_error(np.asarray(got[key], dtype=np.float64), np.asarray(value, dtype=object))
        assert err <= MAX_ULP, f"{key}: {err:.2f} ulp of scale > {MAX_ULP}"
