"""batch_renorm: r and d, their clipping, their constancy in the gradient, the update order.

Expected values are written from the spec page's equations with plain NumPy, or are
finite differences; the reference is never its own oracle here.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from normspec.reference import batch_norm as bn
from normspec.reference import batch_renorm as br
from oracles import ProofCase
from oracles import batch_renorm as oracle
from test_reference_derivatives import MAX_REL, rel_error, richardson

EPS = 1e-5
CASES = oracle.proof_cases()


def _view(p: np.ndarray, ndim: int, channel_axis: int) -> np.ndarray:
    shape = [1] * ndim
    shape[channel_axis] = p.size
    return p.reshape(shape)


def _axes(ndim: int, channel_axis: int) -> tuple[int, ...]:
    return tuple(i for i in range(ndim) if i != channel_axis % ndim)


def _hand(x: np.ndarray, rm: np.ndarray, rv: np.ndarray, eps: float, rmax: float, dmax: float,
          channel_axis: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``z``, ``r`` and ``d`` straight from the spec's equations (NumPy)."""
    axes = _axes(x.ndim, channel_axis)
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    sigma, sigma_running = np.sqrt(var + eps), np.sqrt(rv + eps)
    r = np.clip(sigma / sigma_running, 1 / rmax, rmax)
    d = np.clip((mean - rm) / sigma_running, -dmax, dmax)
    z = (x - _view(mean, x.ndim, channel_axis)) / _view(sigma, x.ndim, channel_axis)
    return z, r, d


# --- the definition ------------------------------------------------------------------------


@pytest.mark.parametrize("channel_axis", [1, -1], ids=["channels-first", "channels-last"])
def test_forward_matches_the_equations(channel_axis: int) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(1.0, 2.0, (4, 3, 5))
    c = x.shape[channel_axis]
    w, b = rng.normal(1.0, 0.3, c), rng.normal(0.0, 0.5, c)
    rm, rv = rng.normal(1.0, 1.0, c), rng.uniform(0.5, 8.0, c)
    out = br.forward(x, w, b, training=True, eps=EPS, channel_axis=channel_axis,
                     running_mean=rm, running_var=rv, batch_stat_weight=0.1,
                     running_var_estimator="unbiased", rmax=1.7, dmax=0.6)
    z, r, d = _hand(x, rm, rv, EPS, 1.7, 0.6, channel_axis)
    nd = x.ndim
    want = (z * _view(r, nd, channel_axis) + _view(d, nd, channel_axis)) * _view(
        w, nd, channel_axis) + _view(b, nd, channel_axis)
    np.testing.assert_allclose(out["r"], r, rtol=1e-14)
    np.testing.assert_allclose(out["d"], d, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(out["y"], want, rtol=1e-13, atol=1e-13)
    assert set(out) == {"y", *br.STATS}


def test_r_and_d_use_the_running_statistics_from_before_the_update() -> None:
    """With batch_stat_weight = 1 the updated statistics are the batch's own: r and d
    computed from them would be 1 and 0. The spec takes the ones passed in."""
    rng = np.random.default_rng(5)
    x = rng.normal(3.0, 2.0, (6, 2))
    rm, rv = np.array([0.0, 5.0]), np.array([1.0, 9.0])
    out = br.forward(x, training=True, eps=EPS, running_mean=rm, running_var=rv,
                     batch_stat_weight=1.0, running_var_estimator="biased", rmax=10.0,
                     dmax=10.0)
    _, r, d = _hand(x, rm, rv, EPS, 10.0, 10.0)
    np.testing.assert_allclose(out["r"], r, rtol=1e-14)
    np.testing.assert_allclose(out["d"], d, rtol=1e-13)
    _, r_after, d_after = _hand(x, out["running_mean"], out["running_var"], EPS, 10.0, 10.0)
    np.testing.assert_allclose(r_after, 1.0, rtol=1e-12)
    np.testing.assert_allclose(d_after, 0.0, atol=1e-12)
    assert not np.allclose(out["r"], r_after)
    assert not np.allclose(out["d"], d_after)


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_state_update_is_batch_norms(estimator: str) -> None:
    rng = np.random.default_rng(9)
    x = rng.normal(-1.0, 3.0, (3, 4, 5))
    state: dict[str, Any] = {"running_mean": rng.normal(size=4),
                             "running_var": rng.uniform(1.0, 2.0, 4), "num_batches_tracked": 2}
    common: dict[str, Any] = {"training": True, "eps": EPS, "batch_stat_weight": "cumulative",
                              "running_var_estimator": estimator, **state}
    got = br.forward(x, rmax=2.0, dmax=1.0, **common)
    want = bn.forward(x, **common)
    for key in ("mean", "var", "rstd", "running_mean", "running_var", "num_batches_tracked"):
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_five_step_trajectory_with_a_schedule_matches_hand_recursion() -> None:
    """rmax and dmax relaxed step by step, as the paper's schedule does; hand recursion in
    NumPy with the update of the spec page."""
    rng = np.random.default_rng(11)
    schedule = [(1.0, 0.0), (1.25, 0.25), (1.5, 1.0), (2.0, 2.0), (3.0, 5.0)]
    rm, rv = np.zeros(3), np.ones(3)
    hand_rm, hand_rv = rm.copy(), rv.copy()
    count = 0
    f = 0.25
    for step, (rmax, dmax) in enumerate(schedule):
        x = rng.normal(0.5 * step, 1.0 + step, (4, 3, 2))
        out = br.forward(x, training=True, eps=EPS, running_mean=rm, running_var=rv,
                         num_batches_tracked=count, batch_stat_weight=f,
                         running_var_estimator="unbiased", rmax=rmax, dmax=dmax)
        z, r, d = _hand(x, hand_rm, hand_rv, EPS, rmax, dmax)
        np.testing.assert_allclose(out["y"], z * _view(r, 3, 1) + _view(d, 3, 1), rtol=1e-12,
                                   atol=1e-12)
        axes = (0, 2)
        hand_rm = (1 - f) * hand_rm + f * x.mean(axis=axes)
        hand_rv = (1 - f) * hand_rv + f * x.var(axis=axes, ddof=1)
        rm, rv = out["running_mean"], out["running_var"]
        count = int(out["num_batches_tracked"])
        np.testing.assert_allclose(rm, hand_rm, rtol=1e-13)
        np.testing.assert_allclose(rv, hand_rv, rtol=1e-13)
    assert count == len(schedule)
    x = rng.normal(size=(4, 3, 2))
    y = br.forward(x, training=False, eps=EPS, running_mean=rm, running_var=rv)["y"]
    np.testing.assert_allclose(y, (x - _view(hand_rm, 3, 1)) / np.sqrt(_view(hand_rv, 3, 1) + EPS),
                               rtol=1e-12)


def test_evaluation_is_batch_norms_and_ignores_the_bounds() -> None:
    rng = np.random.default_rng(13)
    x = rng.normal(size=(5, 3, 2))
    w, b = rng.normal(size=3), rng.normal(size=3)
    kw: dict[str, Any] = {"training": False, "eps": EPS, "running_mean": rng.normal(size=3),
                          "running_var": rng.uniform(0.5, 2.0, 3)}
    g, t = rng.normal(size=x.shape), {"x": rng.normal(size=x.shape), "weight": rng.normal(size=3)}
    for fn, extra in (("forward", {}), ("vjp", {"cotangent": g}), ("jvp", {"tangent": t}),
                      ("second_order", {"cotangent": g, "tangent": t})):
        got = getattr(br, fn)(x, w, b, rmax=1.5, dmax=0.5, **kw, **extra)
        want = getattr(bn, fn)(x, w, b, **kw, **extra)
        if isinstance(want, dict):
            assert set(got) == set(want)
            for key in want:
                np.testing.assert_array_equal(got[key], want[key])
        else:
            np.testing.assert_array_equal(got, want)


def test_proof_cases_cover_clipped_and_unclipped_r_and_d() -> None:
    """The regimes named by the proof cases are the ones they get (channels with a spread)."""
    seen: set[str] = set()
    for case in CASES:
        regime = next(iter(case.tags & set(oracle.REGIMES)))
        if regime in ("eval", "identity") or not {"normal", "offset_1e3"} & case.tags:
            continue
        out = br.forward(**case.primals, **case.hyper)
        rmax, dmax = case.hyper["rmax"], case.hyper["dmax"]
        r_clipped = bool(np.all((out["r"] == rmax) | (out["r"] == 1 / rmax)))
        r_inside = bool(np.all((out["r"] < rmax) & (out["r"] > 1 / rmax)))
        d_clipped = bool(np.all(np.abs(out["d"]) == dmax))
        d_inside = bool(np.all(np.abs(out["d"]) < dmax))
        want_r, want_d = {"unclipped": (False, False), "r_clipped": (True, False),
                          "d_clipped": (False, True), "both_clipped": (True, True),
                          "no_bounds": (False, False)}[regime]
        assert (r_clipped, r_inside) == (want_r, not want_r), case.name
        assert (d_clipped, d_inside) == (want_d, not want_d), case.name
        seen.add(regime)
    assert seen == {"unclipped", "r_clipped", "d_clipped", "both_clipped", "no_bounds"}


# --- r and d are constants in the gradient ---------------------------------------------------


def _frozen(case: ProofCase) -> tuple[np.ndarray, np.ndarray, int]:
    out = br.forward(**case.primals, **case.hyper)
    return out["r"], out["d"], case.hyper["channel_axis"]


def _frozen_forward(case: ProofCase, p: dict[str, np.ndarray | None]) -> np.ndarray:
    """``y`` with r and d fixed at the case's own values: batch norm's z, scaled and shifted."""
    r, d, ca = _frozen(case)
    x = p["x"]
    assert x is not None
    z = bn.forward(x, training=True, eps=case.hyper["eps"], channel_axis=ca)["y"]
    y = z * _view(r, x.ndim, ca) + _view(d, x.ndim, ca)
    if p.get("weight") is not None:
        y = y * _view(p["weight"], x.ndim, ca)  # type: ignore[arg-type]
    if p.get("bias") is not None:
        y = y + _view(p["bias"], x.ndim, ca)  # type: ignore[arg-type]
    return y


def _directions(case: ProofCase) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(zlib.crc32(case.name.encode()))
    x = case.primals["x"]
    assert x is not None
    g = rng.standard_normal(x.shape)
    t = {k: rng.standard_normal(v.shape) for k, v in case.primals.items() if v is not None}
    return g, t


def _shifted(case: ProofCase, t: dict[str, np.ndarray], s: float) -> dict[str, Any]:
    return {k: None if v is None else v + s * t[k] for k, v in case.primals.items()}


MOVING = [c for c in CASES if {"normal", "offset_1e3"} & c.tags and c.primals["x"].size <= 64
          and c.tags & {"unclipped", "r_clipped", "d_clipped", "no_bounds"}]
"""Smooth cases where r or d (or both) depend on x: the spec's derivatives hold them fixed."""


def test_there_are_cases_with_moving_r_or_d() -> None:
    assert len(MOVING) >= 8


@pytest.mark.parametrize("case", MOVING, ids=[c.name for c in MOVING])
def test_vjp_is_the_frozen_functions_and_not_the_unfrozen_one(case: ProofCase) -> None:
    g, _ = _directions(case)
    got = br.vjp(**case.primals, cotangent=g, **case.hyper)
    unfrozen_err = 0.0
    for key in sorted(got):
        base = case.primals[key]
        assert base is not None
        frozen = np.empty(base.shape)
        unfrozen = np.empty(base.shape)
        for idx in np.ndindex(*base.shape):
            e = {k: np.zeros_like(v) for k, v in case.primals.items() if v is not None}
            e[key][idx] = 1.0
            frozen[idx] = np.sum(g * richardson(
                lambda s, e=e: _frozen_forward(case, _shifted(case, e, s)), case.fd_step))
            unfrozen[idx] = np.sum(g * richardson(
                lambda s, e=e: br.forward(**_shifted(case, e, s), **case.hyper)["y"],
                case.fd_step))
        assert rel_error(got[key], frozen) <= MAX_REL, key
        unfrozen_err = max(unfrozen_err, rel_error(got[key], unfrozen))
    # differentiating through r and d gives another gradient, far beyond rounding
    assert unfrozen_err > 1e-4


@pytest.mark.parametrize("case", MOVING, ids=[c.name for c in MOVING])
def test_jvp_is_the_frozen_functions_and_not_the_unfrozen_one(case: ProofCase) -> None:
    _, t = _directions(case)
    got = br.jvp(**case.primals, tangent=t, **case.hyper)
    frozen = richardson(lambda s: _frozen_forward(case, _shifted(case, t, s)), case.fd_step)
    unfrozen = richardson(lambda s: br.forward(**_shifted(case, t, s), **case.hyper)["y"],
                          case.fd_step)
    assert rel_error(got, frozen) <= MAX_REL
    assert rel_error(got, unfrozen) > 1e-4


@pytest.mark.parametrize("case", MOVING, ids=[c.name for c in MOVING])
def test_second_order_differentiates_the_frozen_vjp(case: ProofCase) -> None:
    """The frozen function is batch norm with weight * r and bias + weight * d; its VJP
    (r and d fixed) is differenced along the tangent."""
    r, d, ca = _frozen(case)
    g, t = _directions(case)
    w0 = case.primals.get("weight")
    got = br.second_order(**case.primals, cotangent=g, tangent=t, **case.hyper)

    def frozen_vjp(s: float, key: str) -> np.ndarray:
        p = _shifted(case, t, s)
        w = p["weight"] if w0 is not None else np.ones_like(r)
        b = p["bias"] if p.get("bias") is not None else np.zeros_like(r)
        grads = bn.vjp(p["x"], w * r, w * d + b, cotangent=g, training=True,
                       eps=case.hyper["eps"], channel_axis=ca)
        if key == "weight":  # chain rule through weight * r and weight * d
            return r * grads["weight"] + d * grads["bias"]
        return grads[key]

    for key in got:
        numeric = richardson(lambda s, key=key: frozen_vjp(s, key), case.fd_step)
        if not np.any(numeric):
            assert not np.any(got[key]), key
            continue
        assert rel_error(got[key], numeric) <= MAX_REL, key


# --- batch norm as the special case ----------------------------------------------------------

PROPERTY = settings(max_examples=40, deadline=None)
VALUES = st.floats(-100.0, 100.0, allow_nan=False, allow_infinity=False, width=64)


@st.composite
def batches(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    shape = tuple(draw(st.lists(st.integers(2, 4), min_size=2, max_size=4)))
    return draw(arrays(np.float64, shape, elements=VALUES)), draw(st.sampled_from([1, -1]))


@PROPERTY
@given(batches(), st.data())
def test_rmax_1_and_dmax_0_is_batch_norm_in_training(batch: tuple[np.ndarray, int],
                                                    data: st.DataObject) -> None:
    x, ca = batch
    c = x.shape[ca]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    w, b = rng.normal(size=c), rng.normal(size=c)
    kw: dict[str, Any] = {
        "training": True, "eps": 1e-3, "channel_axis": ca,
        "running_mean": rng.normal(0.0, 50.0, c), "running_var": rng.uniform(0.0, 1e3, c),
        "batch_stat_weight": data.draw(st.sampled_from([0.0, 0.1, 1.0, "cumulative"])),
        "running_var_estimator": data.draw(st.sampled_from(["biased", "unbiased"]))}
    g = rng.normal(size=x.shape)
    t = {"x": rng.normal(size=x.shape), "weight": rng.normal(size=c),
         "bias": rng.normal(size=c)}
    got = br.forward(x, w, b, rmax=1.0, dmax=0.0, **kw)
    want = bn.forward(x, w, b, **kw)
    np.testing.assert_array_equal(got["r"], np.ones(c))
    np.testing.assert_array_equal(got["d"], np.zeros(c))
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    for fn, extra in (("vjp", {"cotangent": g}), ("jvp", {"tangent": t}),
                      ("second_order", {"cotangent": g, "tangent": t})):
        a = getattr(br, fn)(x, w, b, rmax=1.0, dmax=0.0, **kw, **extra)
        e = getattr(bn, fn)(x, w, b, **kw, **extra)
        for key in (e if isinstance(e, dict) else {"y": e}):
            np.testing.assert_allclose(a[key] if isinstance(a, dict) else a,
                                       e[key] if isinstance(e, dict) else e,
                                       rtol=1e-13, atol=1e-13, err_msg=f"{fn} {key}")


# --- precision, NaN and Inf ---------------------------------------------------------------


def test_d_keeps_full_precision_at_a_1e8_offset() -> None:
    """mean - running_mean is formed from one exact sum: a 1e8 offset with unit spread still
    gives d to a few ulp (the difference of two rounded means would be off by ~1e-8)."""
    x = 1e8 + np.arange(-3.0, 4.0).reshape(7, 1) / 4  # mean 1e8, exact in float64
    rm = np.array([1e8 - 0.3])
    out = br.forward(x, training=True, eps=0.0, running_mean=rm, running_var=np.array([4.0]),
                     batch_stat_weight=0.0, running_var_estimator="biased", rmax=5.0, dmax=5.0)
    want = (1e8 - rm[0]) / 2.0  # exact offset: 1e8 - rm is exact (Sterbenz)
    np.testing.assert_allclose(out["d"], [want], rtol=4e-16)


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_non_finite_input_poisons_its_channel_only(bad: float) -> None:
    rng = np.random.default_rng(17)
    clean = rng.normal(size=(4, 3, 2))
    x = clean.copy()
    x[1, 2, 0] = bad
    kw: dict[str, Any] = {"training": True, "eps": EPS, "running_mean": np.zeros(3),
                          "running_var": np.ones(3), "batch_stat_weight": 0.1,
                          "running_var_estimator": "unbiased", "rmax": 3.0, "dmax": 5.0}
    got, ref = br.forward(x, **kw), br.forward(clean, **kw)
    assert np.isnan(got["y"][:, 2]).all()
    assert np.isnan(got["r"][2])  # sigma is NaN (inf - inf in the variance)
    np.testing.assert_array_equal(got["y"][:, :2], ref["y"][:, :2])
    for key in ("r", "d", "running_mean", "running_var"):
        np.testing.assert_array_equal(got[key][:2], ref[key][:2], err_msg=key)


def test_zero_running_variance_with_zero_eps_clips_as_ieee_says() -> None:
    """sigma_running = 0: sigma / 0 = +inf clips to rmax; (mean - running_mean) / 0 = +-inf
    clips to +-dmax."""
    x = np.array([[1.0, 2.0], [3.0, 6.0]])
    out = br.forward(x, training=True, eps=0.0, running_mean=np.array([0.0, 10.0]),
                     running_var=np.zeros(2), batch_stat_weight=0.1,
                     running_var_estimator="biased", rmax=2.0, dmax=0.5)
    np.testing.assert_array_equal(out["r"], [2.0, 2.0])
    np.testing.assert_array_equal(out["d"], [0.5, -0.5])


# --- bad input ----------------------------------------------------------------------------

X = np.arange(12.0).reshape(4, 3)
TRAIN: dict[str, Any] = {"training": True, "eps": EPS, "running_mean": np.zeros(3),
                         "running_var": np.ones(3), "batch_stat_weight": 0.1,
                         "running_var_estimator": "biased", "rmax": 2.0, "dmax": 1.0}
BAD_INPUT: list[tuple[str, dict[str, Any], type[Exception], tuple[str, ...]]] = [
    ("rmax-below-1", {"rmax": 0.5}, ValueError, ("'rmax'", "0.5", ">= 1")),
    ("rmax-nan", {"rmax": float("nan")}, ValueError, ("'rmax'", "nan")),
    ("rmax-bool", {"rmax": True}, TypeError, ("'rmax'", "True")),
    ("rmax-string", {"rmax": "3"}, TypeError, ("'rmax'", "'3'")),
    ("rmax-missing", {"rmax": None}, ValueError, ("'rmax'", "None", "training=True")),
    ("dmax-negative", {"dmax": -0.1}, ValueError, ("'dmax'", "-0.1", ">= 0")),
    ("dmax-missing", {"dmax": None}, ValueError, ("'dmax'", "None")),
    ("dmax-minus-inf", {"dmax": float("-inf")}, ValueError, ("'dmax'", "-inf")),
    ("training-without-running-stats", {"running_mean": None, "running_var": None},
     ValueError, ("'running_mean'", "None", "training=True")),
    ("running_var-without-running_mean", {"running_mean": None}, ValueError,
     ("'running_mean'", "None")),
    ("batch_stat_weight-missing", {"batch_stat_weight": None}, ValueError,
     ("'batch_stat_weight'", "None")),
    ("running_var_estimator-missing", {"running_var_estimator": None}, ValueError,
     ("'running_var_estimator'", "None")),
    ("weight-shape", {"weight": np.ones(2)}, ValueError, ("'weight'", "(2,)", "(3,)")),
    ("bias-shape", {"bias": np.ones(4)}, ValueError, ("'bias'", "(4,)", "(3,)")),
    ("eval-rmax-below-1", {"training": False, "rmax": 0.9}, ValueError, ("'rmax'", "0.9")),
    ("eval-without-running-stats", {"training": False, "running_mean": None,
                                    "running_var": None}, ValueError, ("'running_mean'",)),
    ("eps-negative", {"eps": -1.0}, ValueError, ("'eps'", "-1.0")),
    ("training-not-bool", {"training": "yes"}, TypeError, ("'training'", "'yes'")),
]


@pytest.mark.parametrize(("overrides", "error", "fragments"),
                         [case[1:] for case in BAD_INPUT], ids=[case[0] for case in BAD_INPUT])
@pytest.mark.parametrize("function", ["forward", "vjp", "jvp", "second_order"])
def test_bad_input_names_argument_and_value(function: str, overrides: dict[str, Any],
                                            error: type[Exception],
                                            fragments: tuple[str, ...]) -> None:
    kw: dict[str, Any] = {"x": X, **TRAIN, **overrides}
    if function in ("vjp", "second_order"):
        kw["cotangent"] = np.ones_like(X)
    if function in ("jvp", "second_order"):
        kw["tangent"] = {"x": np.ones_like(X)}
    with pytest.raises(error) as info:
        getattr(br, function)(**kw)
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} missing from: {info.value}"


def test_infinite_bounds_mean_no_clipping() -> None:
    rng = np.random.default_rng(23)
    x = rng.normal(5.0, 3.0, (6, 2))
    rm, rv = np.array([-100.0, 100.0]), np.array([1e-4, 1e4])
    out = br.forward(x, training=True, eps=EPS, running_mean=rm, running_var=rv,
                     batch_stat_weight=0.1, running_var_estimator="biased", rmax=np.inf,
                     dmax=np.inf)
    _, r, d = _hand(x, rm, rv, EPS, np.inf, np.inf)
    np.testing.assert_allclose(out["r"], r, rtol=1e-14)
    np.testing.assert_allclose(out["d"], d, rtol=1e-14)
