"""Proof (b): closed-form VJP, JVP and second order match Richardson-extrapolated differences.

Central differences at steps h, h/2 and h/4 are combined by two Richardson steps, which cancels
the h^2 and h^4 error terms. The VJP is checked element by element (a full numerical Jacobian
contracted with the cotangent), the JVP along a random tangent of every primal, and the second
order by differencing the closed-form VJP along that tangent. The bound is a relative error of
1e-8 against the largest magnitude of the quantity.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np
import pytest
from normspec.reference import METHODS, get
from oracles import ProofCase, oracle

MAX_REL = 1e-8

Array = np.ndarray


def richardson(f: Callable[[float], Array], h: float) -> Array:
    d = [(f(h / 2**k) - f(-h / 2**k)) / (2 * h / 2**k) for k in range(3)]
    r1 = [(4 * d[k + 1] - d[k]) / 3 for k in range(2)]
    return (16 * r1[1] - r1[0]) / 15


def rel_error(got: Array, want: Array) -> float:
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    diff = float(np.max(np.abs(got - want))) if want.size else 0.0
    return diff / scale if scale > 0 else diff


def _fd_cases() -> list[tuple[str, ProofCase]]:
    out = []
    for method in METHODS:
        try:
            mod = oracle(method)
        except ModuleNotFoundError:
            continue
        out.extend((method, c) for c in mod.proof_cases() if c.fd)
    return out


CASES = _fd_cases()
IDS = [f"{m}[{c.name}]" for m, c in CASES]


def _directions(case: ProofCase, y_shape: tuple[int, ...]) -> tuple[Array, dict[str, Array]]:
    rng = np.random.default_rng(zlib.crc32(case.name.encode()))
    g = rng.standard_normal(y_shape)
    t = {k: rng.standard_normal(v.shape) for k, v in case.primals.items() if v is not None}
    return g, t


def _shifted(case: ProofCase, t: dict[str, Array], s: float) -> dict[str, Array | None]:
    return {k: (None if v is None else v + s * t[k]) for k, v in case.primals.items()}


@pytest.mark.parametrize("method", METHODS)
def test_each_method_has_fd_cases(method: str) -> None:
    reason = getattr(oracle(method), "FD_NOT_APPLICABLE", "")
    if reason:  # a method defined by its backward pass: its oracle proves the VJP instead
        assert not any(m == method for m, _ in CASES)
        pytest.skip(reason)
    assert sum(1 for m, _ in CASES if m == method) >= 5


@pytest.mark.parametrize(("method", "case"), CASES, ids=IDS)
def test_jvp_matches_richardson(method: str, case: ProofCase) -> None:
    mod = get(method)
    y = mod.forward(**case.primals, **case.hyper)["y"]
    _, t = _directions(case, y.shape)
    numeric = richardson(lambda s: mod.forward(**_shifted(case, t, s), **case.hyper)["y"],
                         case.fd_step)
    got = mod.jvp(**case.primals, tangent=t, **case.hyper)
    assert rel_error(got, numeric) <= MAX_REL


@pytest.mark.parametrize(("method", "case"), CASES, ids=IDS)
def test_vjp_matches_richardson_elementwise(method: str, case: ProofCase) -> None:
    mod = get(method)
    y = mod.forward(**case.primals, **case.hyper)["y"]
    g, _ = _directions(case, y.shape)
    got = mod.vjp(**case.primals, cotangent=g, **case.hyper)
    present = {k for k, v in case.primals.items() if v is not None}
    assert set(got) == present, "the VJP must return exactly the primals that were given"
    for key in sorted(present):
        base = case.primals[key]
        assert base is not None
        numeric = np.empty(base.shape)
        for idx in np.ndindex(*base.shape):
            e = {k: np.zeros_like(v) for k, v in case.primals.items() if v is not None}
            e[key][idx] = 1.0
            dy = richardson(lambda s, e=e: mod.forward(**_shifted(case, e, s), **case.hyper)["y"],
                            case.fd_step)
            numeric[idx] = float(np.sum(g * dy))
        err = rel_error(got[key], numeric)
        assert err <= MAX_REL, f"d/d{key}: relative error {err:.3g}"


@pytest.mark.parametrize(("method", "case"), CASES, ids=IDS)
def test_second_order_matches_richardson(method: str, case: ProofCase) -> None:
    mod = get(method)
    y = mod.forward(**case.primals, **case.hyper)["y"]
    g, t = _directions(case, y.shape)
    got = mod.second_order(**case.primals, cotangent=g, tangent=t, **case.hyper)
    for key in got:
        numeric = richardson(
            lambda s, key=key: mod.vjp(**_shifted(case, t, s), cotangent=g, **case.hyper)[key],
            case.fd_step)
        err = rel_error(got[key], numeric)
        if not np.any(numeric):
            assert not np.any(got[key]), f"{key}: expected an exactly zero second order"
            continue
        assert err <= MAX_REL, f"d(vjp_{key}): relative error {err:.3g}"
