"""Proof (c) for the moment family: properties of layer_norm, rms_norm, instance_norm, group_norm.

Inputs are dyadic (integers / 1024), and shifts and scale factors are chosen so that the
transformed input is exactly representable. Both sides of each identity are then exact functions
of exactly the same real numbers, and the reference is proved to be within 4 ulp of the output's
scale (test_reference_forward.py), so two evaluations may differ by at most 8 ulp of that scale.
That is the only tolerance used here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from normspec.reference import group_norm, instance_norm, layer_norm, rms_norm

PROPERTY = settings(max_examples=50, deadline=None)
ULPS = 8.0

Array = np.ndarray
Forward = Callable[..., dict[str, Array]]


def assert_ulp_close(got: Array, want: Array, what: str) -> None:
    """``|got - want| <= ULPS`` ulp of ``max |want|`` elementwise (the per-tensor scale)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    tol = ULPS * float(np.spacing(scale)) if scale > 0 else 0.0
    np.testing.assert_allclose(got, want, rtol=0, atol=tol, err_msg=what)


def dyadic(shape: tuple[int, ...]) -> st.SearchStrategy[Array]:
    """float64 arrays of k / 1024 with |k| <= 2^13: 14 significant bits, exact under the
    shifts and scalings below."""
    ints = hnp.arrays(np.int64, shape, elements=st.integers(-(2**13), 2**13))
    return ints.map(lambda a: a / 1024.0)


EPS = st.sampled_from([2.0**-20, 2.0**-10, 0.5])
"""Powers of two (so eps * a^2 is exact) and positive (so constant sets stay finite)."""


def shapes(min_dims: int, max_dims: int, max_side: int = 5) -> st.SearchStrategy[tuple[int, ...]]:
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=max_side)


@st.composite
def moment_inputs(draw: st.DrawFn, method: str) -> tuple[Forward, dict[str, Any], dict[str, Any]]:
    """A method's forward, its primals (x and maybe an affine) and its hyperparameters."""
    if method in ("layer_norm", "rms_norm"):
        shape = draw(shapes(1, 4))
        axis = draw(st.integers(-len(shape), len(shape) - 1))
        pshape = shape[axis % len(shape):]
        hyper: dict[str, Any] = {"axis": axis}
    else:
        shape = draw(shapes(3 if method == "instance_norm" else 2, 4))
        channel_axis = draw(st.sampled_from([1, -1]))
        channels = shape[channel_axis]
        pshape = (channels,)
        hyper = {"channel_axis": channel_axis}
        if method == "group_norm":
            hyper["groups"] = draw(st.sampled_from(
                [g for g in range(1, channels + 1) if channels % g == 0]))
    hyper["eps"] = draw(EPS)
    primals: dict[str, Any] = {"x": draw(dyadic(shape))}
    if draw(st.booleans()):
        primals["weight"] = draw(dyadic(pshape))
    if method != "rms_norm" and draw(st.booleans()):
        primals["bias"] = draw(dyadic(pshape))
    fwd: Forward = {"layer_norm": layer_norm.forward, "rms_norm": rms_norm.forward,
                    "instance_norm": instance_norm.forward,
                    "group_norm": group_norm.forward}[method]
    return fwd, primals, hyper


CENTERED = ["layer_norm", "instance_norm", "group_norm"]
ALL = ["layer_norm", "rms_norm", "instance_norm", "group_norm"]


# -- invariances ---------------------------------------------------------------------------------

@pytest.mark.parametrize("method", CENTERED)
@PROPERTY
@given(data=st.data())
def test_shift_invariance(method: str, data: st.DataObject) -> None:
    fwd, primals, hyper = data.draw(moment_inputs(method))
    # an integer offset up to 2^40 keeps x + shift exact (<= 51 significant bits) while putting
    # |mean|/std near 1e12: the large-offset regime
    shift = float(data.draw(st.integers(-(2**40), 2**40)))
    base = fwd(**primals, **hyper)
    moved = fwd(**{**primals, "x": primals["x"] + shift}, **hyper)
    assert_ulp_close(moved["y"], base["y"], "y")
    assert_ulp_close(moved["var"], base["var"], "var")
    assert_ulp_close(moved["rstd"], base["rstd"], "rstd")
    assert_ulp_close(moved["mean"], base["mean"] + shift, "mean")


@pytest.mark.parametrize("method", ALL)
@PROPERTY
@given(data=st.data())
def test_positive_scale_invariance(method: str, data: st.DataObject) -> None:
    fwd, primals, hyper = data.draw(moment_inputs(method))
    # a = odd * 2^e: a * x and eps * a^2 stay exact (14 + 8 and 16 significant bits)
    a = data.draw(st.integers(0, 127)) * 2 + 1.0
    a = float(np.ldexp(a, data.draw(st.integers(-40, 40))))
    base = fwd(**primals, **hyper)
    scaled = fwd(**{**primals, "x": primals["x"] * a}, **{**hyper, "eps": hyper["eps"] * a * a})
    assert_ulp_close(scaled["y"], base["y"], "y")
    if method == "rms_norm":
        assert_ulp_close(scaled["mean_square"], base["mean_square"] * (a * a), "mean_square")
        assert_ulp_close(scaled["rrms"], base["rrms"] / a, "rrms")
    else:
        assert_ulp_close(scaled["mean"], base["mean"] * a, "mean")
        assert_ulp_close(scaled["var"], base["var"] * (a * a), "var")
        assert_ulp_close(scaled["rstd"], base["rstd"] / a, "rstd")


# -- permutation equivariance along the axes that are not normalized -----------------------------

@pytest.mark.parametrize("method", ["layer_norm", "rms_norm"])
@PROPERTY
@given(data=st.data())
def test_leading_axis_permutation_equivariance(method: str, data: st.DataObject) -> None:
    fwd, primals, hyper = data.draw(moment_inputs(method))
    x = primals["x"]
    lead = hyper["axis"] % x.ndim
    assume(lead > 0)  # otherwise every axis is normalized and there is nothing to permute
    k = data.draw(st.integers(0, lead - 1))
    perm = np.array(data.draw(st.permutations(range(x.shape[k]))))
    base = fwd(**primals, **hyper)
    moved = fwd(**{**primals, "x": np.take(x, perm, axis=k)}, **hyper)
    for key, value in base.items():
        assert_ulp_close(moved[key], np.take(value, perm, axis=k), key)


def _permute_channels(primals: dict[str, Any], perm: Array, channel_axis: int
                      ) -> dict[str, Any]:
    out = {"x": np.take(primals["x"], perm, axis=channel_axis)}
    out.update({k: v[perm] for k, v in primals.items() if k != "x"})
    return out


@PROPERTY
@given(data=st.data())
def test_instance_norm_batch_and_channel_permutation_equivariance(data: st.DataObject) -> None:
    fwd, primals, hyper = data.draw(moment_inputs("instance_norm"))
    x, ch = primals["x"], hyper["channel_axis"]
    batch_perm = np.array(data.draw(st.permutations(range(x.shape[0]))))
    chan_perm = np.array(data.draw(st.permutations(range(x.shape[ch]))))
    moved = _permute_channels({**primals, "x": x[batch_perm]}, chan_perm, ch)
    base, got = fwd(**primals, **hyper), fwd(**moved, **hyper)
    assert_ulp_close(got["y"], np.take(base["y"][batch_perm], chan_perm, axis=ch), "y")
    for key in instance_norm.STATS:
        assert_ulp_close(got[key], base[key][batch_perm][:, chan_perm], key)


def check_group_preserving_permutation(fwd: Forward, primals: dict[str, Any],
                                       hyper: dict[str, Any], perm: Array) -> None:
    """A channel permutation that maps contiguous groups onto contiguous groups commutes with
    group_norm. Under interleaved grouping (channels read as (C/groups, groups)) it does not."""
    ch = hyper.get("channel_axis", 1)
    base = fwd(**primals, **hyper)["y"]
    got = fwd(**_permute_channels(primals, perm, ch), **hyper)["y"]
    assert_ulp_close(got, np.take(base, perm, axis=ch), "y")


@PROPERTY
@given(data=st.data())
def test_group_norm_group_preserving_permutation_equivariance(data: st.DataObject) -> None:
    fwd, primals, hyper = data.draw(moment_inputs("group_norm"))
    x, ch, groups = primals["x"], hyper["channel_axis"], hyper["groups"]
    size = x.shape[ch] // groups
    group_order = data.draw(st.permutations(range(groups)))
    perm = np.concatenate([g * size + np.array(data.draw(st.permutations(range(size))))
                           for g in group_order])
    check_group_preserving_permutation(fwd, primals, hyper, perm)
    # the batch axis is not normalized either
    batch_perm = np.array(data.draw(st.permutations(range(x.shape[0]))))
    base = fwd(**primals, **hyper)
    got = fwd(**{**primals, "x": x[batch_perm]}, **hyper)
    for key, value in base.items():
        assert_ulp_close(got[key], value[batch_perm], key)


def _interleaved_group_norm(x: Array, weight: Array | None = None, bias: Array | None = None, *,
                            groups: int, channel_axis: int = 1, eps: float) -> dict[str, Array]:
    """A deliberately wrong group_norm (channels-first only): reshapes C as (C/groups, groups),
    so group g holds channels g, g + groups, g + 2*groups, ... The implementer bug of G1."""
    assert channel_axis == 1
    n, c = x.shape[:2]
    xs = x.reshape(n, c // groups, groups, -1)
    mean = xs.mean(axis=(1, 3), keepdims=True)
    var = ((xs - mean) ** 2).mean(axis=(1, 3), keepdims=True)
    y = ((xs - mean) / np.sqrt(var + eps)).reshape(x.shape)
    view = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(view)
    if bias is not None:
        y = y + bias.reshape(view)
    return {"y": y}


@pytest.mark.parametrize("groups", [2, 3])
def test_channel_permutation_check_catches_interleaved_grouping(groups: int) -> None:
    rng = np.random.default_rng(7)
    primals = {"x": rng.standard_normal((2, 6, 4)), "weight": rng.normal(1.0, 0.5, 6),
               "bias": rng.normal(0.0, 0.5, 6)}
    hyper = {"groups": groups, "eps": 1e-5}
    swap = np.array([1, 0, 2, 3, 4, 5])  # stays inside contiguous group 0, crosses interleaved
    check_group_preserving_permutation(group_norm.forward, primals, hyper, swap)
    with pytest.raises(AssertionError):
        check_group_preserving_permutation(_interleaved_group_norm, primals, hyper, swap)


@pytest.mark.parametrize("groups", [1, 6])
def test_interleaved_grouping_is_only_wrong_when_it_matters(groups: int) -> None:
    # With one group or one channel per group the two groupings coincide: the mutant above is
    # caught by its grouping, not by some unrelated defect.
    rng = np.random.default_rng(8)
    x, w, b = rng.standard_normal((2, 6, 4)), rng.normal(1.0, 0.5, 6), rng.normal(0.0, 0.5, 6)
    want = group_norm.forward(x, w, b, groups=groups, eps=1e-5)["y"]
    np.testing.assert_allclose(_interleaved_group_norm(x, w, b, groups=groups, eps=1e-5)["y"],
                               want, rtol=0, atol=1e-14)


@PROPERTY
@given(data=st.data())
def test_group_norm_each_group_is_layer_norm_of_its_channel_slice(data: st.DataObject) -> None:
    _, primals, hyper = data.draw(moment_inputs("group_norm"))
    x = np.moveaxis(primals["x"], hyper["channel_axis"], 1)
    groups, eps = hyper["groups"], hyper["eps"]
    size = x.shape[1] // groups
    got = group_norm.forward(x, groups=groups, eps=eps)
    for g in range(groups):
        want = layer_norm.forward(x[:, g * size:(g + 1) * size], axis=1, eps=eps)
        assert_ulp_close(got["y"][:, g * size:(g + 1) * size], want["y"], f"y of group {g}")
        for key in ("mean", "var", "rstd"):
            assert_ulp_close(got[key][:, g], want[key], f"{key} of group {g}")


# -- equalities between methods ------------------------------------------------------------------

@PROPERTY
@given(x=shapes(2, 4).flatmap(dyadic), channel_axis=st.sampled_from([1, -1]), eps=EPS)
def test_group_norm_with_one_group_is_layer_norm_over_all_but_batch(
        x: Array, channel_axis: int, eps: float) -> None:
    got = group_norm.forward(x, groups=1, channel_axis=channel_axis, eps=eps)
    want = layer_norm.forward(x, axis=1, eps=eps)
    assert_ulp_close(got["y"], want["y"], "y")
    for key in ("mean", "var", "rstd"):
        assert_ulp_close(got[key], want[key][:, None], key)


@PROPERTY
@given(data=st.data())
def test_group_norm_with_one_group_and_broadcast_affine_is_layer_norm(data: st.DataObject) -> None:
    x = data.draw(shapes(3, 4).flatmap(dyadic))
    w, b = data.draw(dyadic((x.shape[1],))), data.draw(dyadic((x.shape[1],)))
    view = (x.shape[1],) + (1,) * (x.ndim - 2)
    full = x.shape[1:]
    got = group_norm.forward(x, w, b, groups=1, eps=0.5)
    want = layer_norm.forward(x, np.broadcast_to(w.reshape(view), full),
                              np.broadcast_to(b.reshape(view), full), axis=1, eps=0.5)
    assert_ulp_close(got["y"], want["y"], "y")


@PROPERTY
@given(data=st.data())
def test_group_norm_with_one_channel_per_group_is_instance_norm(data: st.DataObject) -> None:
    _, primals, hyper = data.draw(moment_inputs("instance_norm"))
    channels = primals["x"].shape[hyper["channel_axis"]]
    got = group_norm.forward(**primals, groups=channels, **hyper)
    want = instance_norm.forward(**primals, **hyper)
    for key in ("y", "mean", "var", "rstd"):
        assert_ulp_close(got[key], want[key], key)


@PROPERTY
@given(data=st.data())
def test_rms_norm_is_layer_norm_on_zero_mean_rows(data: st.DataObject) -> None:
    rows, half = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 6))
    v = data.draw(dyadic((rows, half)))
    # each row holds v and -v in a shuffled order: its mean is exactly zero
    order = np.array(data.draw(st.permutations(range(2 * half))))
    x = np.concatenate([v, -v], axis=1)[:, order]
    trailing = data.draw(st.sampled_from([(2 * half,), (2, half)]))
    x = x.reshape((rows, *trailing))
    weight = data.draw(dyadic(trailing)) if data.draw(st.booleans()) else None
    eps = data.draw(EPS)
    rms = rms_norm.forward(x, weight, axis=1, eps=eps)
    ln = layer_norm.forward(x, weight, axis=1, eps=eps)
    assert_ulp_close(rms["y"], ln["y"], "y")
    assert_ulp_close(rms["mean_square"], ln["var"], "mean_square vs var")
    assert_ulp_close(rms["rrms"], ln["rstd"], "rrms vs rstd")
    assert_ulp_close(ln["mean"], np.zeros(rows), "mean")


# -- NaN and Inf propagation ---------------------------------------------------------------------

def _set_mask(method: str, shape: tuple[int, ...], pos: tuple[int, ...], hyper: dict[str, Any]
              ) -> tuple[Array, tuple[int, ...]]:
    """Boolean mask of the reduction set holding ``pos``, and that set's statistics index."""
    idx = np.indices(shape)
    if method in ("layer_norm", "rms_norm"):
        lead = hyper["axis"] % len(shape)
        mask = np.all([idx[k] == pos[k] for k in range(lead)], axis=0)
        return np.broadcast_to(mask, shape), pos[:lead]
    ch = hyper["channel_axis"] % len(shape)
    size = shape[ch] // hyper.get("groups", shape[ch]) if method == "group_norm" else 1
    mask = (idx[0] == pos[0]) & (idx[ch] // size == pos[ch] // size)
    return mask, (pos[0], pos[ch] // size)


@pytest.mark.parametrize("method", ALL)
@PROPERTY
@given(data=st.data())
def test_nan_poisons_only_its_reduction_set(method: str, data: st.DataObject) -> None:
    fwd, primals, hyper = data.draw(moment_inputs(method))
    x = primals["x"]
    pos = tuple(data.draw(st.integers(0, s - 1)) for s in x.shape)
    bad = x.copy()
    bad[pos] = np.nan
    clean, got = fwd(**primals, **hyper), fwd(**{**primals, "x": bad}, **hyper)
    mask, stat_index = _set_mask(method, x.shape, pos, hyper)
    np.testing.assert_array_equal(np.isnan(got["y"]), mask)
    np.testing.assert_array_equal(got["y"][~mask], clean["y"][~mask])
    for key in clean.keys() - {"y"}:
        assert np.isnan(got[key][stat_index]), key
        others = np.ones(clean[key].shape, dtype=bool)
        others[stat_index] = False
        np.testing.assert_array_equal(got[key][others], clean[key][others])


@pytest.mark.parametrize("method", ALL)
@PROPERTY
@given(data=st.data())
def test_inf_propagates_as_ieee_arithmetic_says(method: str, data: st.DataObject) -> None:
    fwd, primals, hyper = data.draw(moment_inputs(method))
    sign = data.draw(st.sampled_from([1.0, -1.0]))
    x = primals["x"]
    pos = tuple(data.draw(st.integers(0, s - 1)) for s in x.shape)
    bad = x.copy()
    bad[pos] = sign * np.inf
    clean = fwd(**primals, **hyper)
    with np.errstate(invalid="ignore"):  # inf - inf and 0 * inf are the point of this test
        got = fwd(**{**primals, "x": bad}, **hyper)
    mask, stat_index = _set_mask(method, x.shape, pos, hyper)
    np.testing.assert_array_equal(got["y"][~mask], clean["y"][~mask])
    if method == "rms_norm":
        # mean_square = inf, rrms = 1/sqrt(inf) = 0: the infinite element gives inf * 0 = NaN,
        # the finite ones of its set are multiplied by 0
        assert got["mean_square"][stat_index] == np.inf
        assert got["rrms"][stat_index] == 0.0
        np.testing.assert_array_equal(np.isnan(got["y"]), (np.indices(x.shape) ==
                                      np.reshape(pos, (-1,) + (1,) * x.ndim)).all(axis=0))
        assert np.all(got["y"][mask & ~np.isnan(got["y"])] == 0.0)
    else:
        # mean = +-inf, x - mean is inf - inf = NaN at the infinite element, so var, rstd and
        # the whole set's y are NaN
        assert got["mean"][stat_index] == sign * np.inf
        assert np.isnan(got["var"][stat_index])
        assert np.isnan(got["rstd"][stat_index])
        np.testing.assert_array_equal(np.isnan(got["y"]), mask)


# -- bad input -----------------------------------------------------------------------------------

X2 = np.ones((2, 6))
X3 = np.ones((2, 6, 4))
BAD_INPUTS = [
    # (method, args, kwargs, exception, argument name, value as shown in the message)
    ("layer_norm", (np.ones((2, 3), dtype=np.int64),), {"axis": -1, "eps": 1e-5}, TypeError,
     "x", "int64"),
    ("layer_norm", (np.ones((2, 3), dtype=complex),), {"axis": -1, "eps": 1e-5}, TypeError,
     "x", "complex128"),
    ("layer_norm", (np.ones((2, 3), dtype=bool),), {"axis": -1, "eps": 1e-5}, TypeError,
     "x", "bool"),
    ("layer_norm", (np.float64(1.0),), {"axis": 0, "eps": 1e-5}, ValueError, "x", "()"),
    ("layer_norm", (X2,), {"axis": 2, "eps": 1e-5}, ValueError, "axis", "2"),
    ("layer_norm", (X2,), {"axis": -3, "eps": 1e-5}, ValueError, "axis", "-3"),
    ("layer_norm", (X2,), {"axis": 1.0, "eps": 1e-5}, TypeError, "axis", "1.0"),
    ("layer_norm", (X2,), {"axis": -1, "eps": -1e-5}, ValueError, "eps", "-1e-05"),
    ("layer_norm", (X2,), {"axis": -1, "eps": float("nan")}, ValueError, "eps", "nan"),
    ("layer_norm", (X2,), {"axis": -1, "eps": float("inf")}, ValueError, "eps", "inf"),
    ("layer_norm", (X2, np.ones(5)), {"axis": -1, "eps": 1e-5}, ValueError, "weight", "(5,)"),
    ("layer_norm", (X2, None, np.ones((2, 6))), {"axis": -1, "eps": 1e-5}, ValueError,
     "bias", "(2, 6)"),
    ("layer_norm", (np.ones((2, 0)),), {"axis": -1, "eps": 1e-5}, ValueError, "x", "(2, 0)"),
    ("rms_norm", (np.ones((2, 3), dtype=np.int32),), {"axis": -1, "eps": 1e-5}, TypeError,
     "x", "int32"),
    ("rms_norm", (np.ones((2, 3), dtype=np.complex64),), {"axis": -1, "eps": 1e-5}, TypeError,
     "x", "complex64"),
    ("rms_norm", (np.float64(1.0),), {"axis": 0, "eps": 1e-5}, ValueError, "x", "()"),
    ("rms_norm", (X2,), {"axis": 5, "eps": 1e-5}, ValueError, "axis", "5"),
    ("rms_norm", (X2,), {"axis": -1, "eps": -0.5}, ValueError, "eps", "-0.5"),
    ("rms_norm", (X2,), {"axis": -1, "eps": float("inf")}, ValueError, "eps", "inf"),
    ("rms_norm", (X2,), {"axis": -1, "eps": "1e-5"}, TypeError, "eps", "'1e-5'"),
    ("rms_norm", (X2, np.ones((2, 6))), {"axis": 1, "eps": 1e-5}, ValueError, "weight",
     "(2, 6)"),
    ("rms_norm", (np.ones((3, 0)),), {"axis": 1, "eps": 1e-5}, ValueError, "x", "(3, 0)"),
    ("instance_norm", (np.ones((2, 6, 4), dtype=np.int16),), {"eps": 1e-5}, TypeError,
     "x", "int16"),
    ("instance_norm", (X3.astype(complex),), {"eps": 1e-5}, TypeError, "x", "complex128"),
    ("instance_norm", (X2,), {"eps": 1e-5}, ValueError, "x", "(2, 6)"),
    ("instance_norm", (X3,), {"channel_axis": 0, "eps": 1e-5}, ValueError, "channel_axis", "0"),
    ("instance_norm", (X3,), {"channel_axis": -3, "eps": 1e-5}, ValueError, "channel_axis",
     "-3"),
    ("instance_norm", (X3,), {"channel_axis": 3, "eps": 1e-5}, ValueError, "channel_axis", "3"),
    ("instance_norm", (X3,), {"eps": -1.0}, ValueError, "eps", "-1.0"),
    ("instance_norm", (X3,), {"eps": float("nan")}, ValueError, "eps", "nan"),
    ("instance_norm", (X3, np.ones(4)), {"eps": 1e-5}, ValueError, "weight", "(4,)"),
    ("instance_norm", (X3, None, np.ones((6, 4))), {"eps": 1e-5}, ValueError, "bias", "(6, 4)"),
    ("instance_norm", (np.ones((2, 6, 0)),), {"eps": 1e-5}, ValueError, "x", "(2, 6, 0)"),
    ("group_norm", (X3.astype(np.uint8),), {"groups": 2, "eps": 1e-5}, TypeError, "x", "uint8"),
    ("group_norm", (X3.astype(np.complex64),), {"groups": 2, "eps": 1e-5}, TypeError,
     "x", "complex64"),
    ("group_norm", (np.ones(6),), {"groups": 2, "eps": 1e-5}, ValueError, "x", "(6,)"),
    ("group_norm", (X3,), {"groups": 4, "eps": 1e-5}, ValueError, "groups", "4"),
    ("group_norm", (X3,), {"groups": 12, "eps": 1e-5}, ValueError, "groups", "12"),
    ("group_norm", (X3,), {"groups": 0, "eps": 1e-5}, ValueError, "groups", "0"),
    ("group_norm", (X3,), {"groups": -2, "eps": 1e-5}, ValueError, "groups", "-2"),
    ("group_norm", (X3,), {"groups": 2.0, "eps": 1e-5}, TypeError, "groups", "2.0"),
    ("group_norm", (X3,), {"groups": True, "eps": 1e-5}, TypeError, "groups", "True"),
    ("group_norm", (X3,), {"groups": 2, "channel_axis": 0, "eps": 1e-5}, ValueError,
     "channel_axis", "0"),
    ("group_norm", (X3,), {"groups": 2, "channel_axis": 3, "eps": 1e-5}, ValueError,
     "channel_axis", "3"),
    ("group_norm", (X3,), {"groups": 2, "eps": -1e-3}, ValueError, "eps", "-0.001"),
    ("group_norm", (X3,), {"groups": 2, "eps": float("-inf")}, ValueError, "eps", "-inf"),
    # ONNX opset 18 took a per-group scale; the spec's weight is per channel
    ("group_norm", (X3, np.ones(2)), {"groups": 2, "eps": 1e-5}, ValueError, "weight", "(2,)"),
    ("group_norm", (X3, None, np.ones(4)), {"groups": 2, "eps": 1e-5}, ValueError,
     "bias", "(4,)"),
    ("group_norm", (np.ones((2, 0, 3)),), {"groups": 1, "eps": 1e-5}, ValueError,
     "x", "(2, 0, 3)"),
    ("group_norm", (np.ones((2, 6, 0)),), {"groups": 3, "eps": 1e-5}, ValueError,
     "x", "(2, 6, 0)"),
]
MODULES = {"layer_norm": layer_norm, "rms_norm": rms_norm, "instance_norm": instance_norm,
           "group_norm": group_norm}


def _bad_id(case: tuple[Any, ...]) -> str:
    method, _, _, exc, name, value = case
    return f"{method}-{name}={value}-{exc.__name__}"


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[_bad_id(c) for c in BAD_INPUTS])
@pytest.mark.parametrize("entry", ["forward", "vjp", "jvp", "second_order"])
def test_bad_input_is_rejected_with_a_message_naming_it(case: tuple[Any, ...], entry: str
                                                        ) -> None:
    method, args, kwargs, exc, name, value = case
    fn = getattr(MODULES[method], entry)
    extra: dict[str, Any] = {}
    shape = np.shape(args[0])
    if entry in ("vjp", "second_order"):
        extra["cotangent"] = np.ones(shape)
    if entry in ("jvp", "second_order"):
        extra["tangent"] = {}
    with pytest.raises(exc) as info:
        fn(*args, **kwargs, **extra)
    message = str(info.value)
    assert f"argument {name!r}" in message
    assert f"got {value}" in message or f"dtype {value}" in message or \
        f"shape {value}" in message, message
    assert "expected" in message


@pytest.mark.parametrize("method", ALL)
def test_bad_cotangent_and_tangent_are_rejected(method: str) -> None:
    mod = MODULES[method]
    hyper: dict[str, Any] = {"axis": -1} if method in ("layer_norm", "rms_norm") else {}
    if method == "group_norm":
        hyper["groups"] = 2
    x = X3
    with pytest.raises(ValueError, match=r"argument 'cotangent': got shape \(2, 6\)"):
        mod.vjp(x, cotangent=np.ones((2, 6)), eps=1e-5, **hyper)
    with pytest.raises(TypeError, match=r"argument 'cotangent': got dtype int64"):
        mod.vjp(x, cotangent=np.ones(x.shape, dtype=np.int64), eps=1e-5, **hyper)
    with pytest.raises(ValueError, match=r"argument 'tangent': got keys \['weight'\]"):
        mod.jvp(x, tangent={"weight": np.ones(4)}, eps=1e-5, **hyper)
    with pytest.raises(ValueError, match=r"argument \"tangent\['x'\]\": got shape \(6,\)"):
        mod.jvp(x, tangent={"x": np.ones(6)}, eps=1e-5, **hyper)
