"""sync_batch_norm: the merge of per-worker moments, the invariant, the global count, bad input.

The invariant of spec/methods/sync_batch_norm.md: W shards give the same output, gradients and
running statistics as batch_norm on their concatenation, for uneven and empty shards. The
reference computes through batch_norm on the whole batch, so the tests here prove the other
half: that merging the workers' own (count, mean, M2) with ``merge_moments`` gives the same
statistics, and that a worker-by-worker evaluation with the merged statistics gives the same
output and running statistics. Expected values are written from the spec's formulas.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from normspec.reference import batch_norm as bn
from normspec.reference import sync_batch_norm as sbn

EPS = 1e-5


def _ulps(got: np.ndarray, want: np.ndarray) -> float:
    """Max |got - want| in ulp of the largest |want| (the forward proofs' measure)."""
    scale = float(np.max(np.abs(want)))
    return float(np.max(np.abs(got - want))) / float(np.spacing(scale)) if scale else 0.0


@st.composite
def _sharded(draw: st.DrawFn) -> tuple[np.ndarray, list[int], int]:
    """A batch, a split of its batch axis into 1-5 shards (empty ones allowed), a channel axis."""
    workers = draw(st.integers(1, 5))
    sizes = draw(st.lists(st.integers(0, 4), min_size=workers, max_size=workers))
    if sum(sizes) == 0:
        sizes[draw(st.integers(0, workers - 1))] = 1
    spatial = draw(st.sampled_from([(), (3,), (2, 2)]))
    channels = draw(st.integers(1, 3))
    channel_axis = draw(st.sampled_from([1, -1]))
    shape = (sum(sizes), channels, *spatial) if channel_axis == 1 else (
        sum(sizes), *spatial, channels)
    seed = draw(st.integers(0, 2**32 - 1))
    offset = draw(st.sampled_from([0.0, 1e3, -1e6]))
    x = offset + np.random.default_rng(seed).standard_normal(shape)
    return x, sizes, channel_axis


# --- the merge --------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(_sharded())
def test_merged_worker_moments_are_the_statistics_of_the_concatenation(
        case: tuple[np.ndarray, list[int], int]) -> None:
    x, sizes, channel_axis = case
    counts, means, m2s = sbn.shard_moments(x, shard_sizes=sizes, channel_axis=channel_axis)
    n, mean, m2 = sbn.merge_moments(counts, means, m2s)
    whole = bn.forward(x, training=True, eps=EPS, channel_axis=channel_axis)
    assert n == x.size // x.shape[channel_axis]
    # The merge is exact; what it is given is not: each worker's mean carries ~1 ulp of its
    # magnitude, and the spread term n_i (mean_i - mean)^2 turns that into an error of
    # ~ulp(|mean|) * std in the variance (the kappa = |mean|/std amplification of the
    # tolerance model), on top of a few ulp of the variance itself.
    std = np.sqrt(whole["var"])
    size = np.abs(whole["mean"]) + std
    assert np.all(np.abs(mean - whole["mean"]) <= 4 * np.spacing(size))
    bound = 8 * np.spacing(whole["var"]) + 8 * np.spacing(size) * std
    assert np.all(np.abs(m2 / n - whole["var"]) <= bound)


def _closed_form(counts: list[int], means: list[Fraction], m2s: list[Fraction]
                 ) -> tuple[Fraction, Fraction]:
    """The spec's closed form: mean = sum n_i mean_i / n, M2 = sum(M2_i + n_i (mean_i - mean)^2)."""
    n = sum(counts)
    mean = sum((Fraction(k) * m for k, m in zip(counts, means, strict=True)), Fraction(0)) / n
    m2 = sum((q + k * (m - mean) ** 2 for k, m, q in zip(counts, means, m2s, strict=True)),
             Fraction(0))
    return mean, m2


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.floats(-1e6, 1e6), st.floats(0, 1e6)),
                min_size=1, max_size=6))
def test_pairwise_merge_is_the_closed_form_rounded_once(
        workers: list[tuple[int, float, float]]) -> None:
    if not any(k for k, _, _ in workers):
        workers = [(1, *workers[0][1:]), *workers[1:]]
    counts = [k for k, _, _ in workers]
    means, m2s = [m for _, m, _ in workers], [q for _, _, q in workers]
    n, mean, m2 = sbn.merge_moments(counts, np.array(means)[:, None], np.array(m2s)[:, None])
    live = [i for i, k in enumerate(counts) if k]
    want_mean, want_m2 = _closed_form([counts[i] for i in live],
                                      [Fraction(means[i]) for i in live],
                                      [Fraction(m2s[i]) for i in live])
    assert n == sum(counts)
    assert mean[0] == float(want_mean)
    assert m2[0] == float(want_m2)


def test_merge_does_not_depend_on_the_order_of_the_workers() -> None:
    rng = np.random.default_rng(3)
    counts = np.array([3, 0, 7, 1, 5])
    means = 1e4 + rng.standard_normal((5, 4))
    m2s = rng.uniform(0.0, 10.0, (5, 4))
    base = sbn.merge_moments(counts, means, m2s)
    for perm in ([4, 3, 2, 1, 0], [2, 0, 4, 1, 3]):
        got = sbn.merge_moments(counts[perm], means[perm], m2s[perm])
        assert got[0] == base[0]
        assert np.array_equal(got[1], base[1])
        assert np.array_equal(got[2], base[2])


def test_empty_workers_are_skipped_even_with_nan_moments() -> None:
    n, mean, m2 = sbn.merge_moments([0, 2, 0], np.array([[np.nan], [5.0], [np.inf]]),
                                    np.array([[np.nan], [8.0], [np.nan]]))
    assert (n, mean.tolist(), m2.tolist()) == (2, [5.0], [8.0])


def test_merge_weights_by_count_not_by_worker() -> None:
    # one value 0 on worker A, three values 4 on worker B: the mean is 3, not (0 + 4) / 2
    n, mean, m2 = sbn.merge_moments([1, 3], np.array([[0.0], [4.0]]), np.array([[0.0], [0.0]]))
    assert (n, mean.tolist(), m2.tolist()) == (4, [3.0], [12.0])


def test_merge_propagates_nan_and_inf_of_a_worker_that_holds_values() -> None:
    _, mean, m2 = sbn.merge_moments([2, 2], np.array([[1.0, np.inf], [np.nan, 1.0]]),
                                    np.array([[0.0, 0.0], [0.0, 0.0]]))
    assert np.isnan(mean[0])
    assert np.isnan(m2[0])
    assert mean[1] == np.inf
    assert np.isnan(m2[1])


@pytest.mark.parametrize(("counts", "means", "m2s", "match"), [
    ([0, 0], [[0.0], [0.0]], [[0.0], [0.0]], r"argument 'counts': got \[0, 0\], expected"),
    ([1, -1], [[0.0], [0.0]], [[0.0], [0.0]], r"argument 'counts': got \[1, -1\]"),
    ([1, 2], [[0.0]], [[0.0]], r"argument 'means': got shape \(1, 1\), expected a leading axis"),
    ([1, 2], [[0.0], [1.0]], [[0.0, 1.0], [1.0, 1.0]], r"argument 'm2s': got shape \(2, 2\)"),
])
def test_merge_rejects_bad_input_naming_the_argument(counts: Any, means: Any, m2s: Any,
                                                     match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sbn.merge_moments(counts, np.array(means), np.array(m2s))


def test_merge_rejects_float_counts() -> None:
    with pytest.raises(TypeError, match=r"argument 'counts': got dtype float64"):
        sbn.merge_moments(np.array([1.0, 2.0]), np.zeros((2, 1)), np.zeros((2, 1)))


# --- the invariant ----------------------------------------------------------------------------


def _workers_forward(x: np.ndarray, sizes: list[int], channel_axis: int, weight: np.ndarray,
                     bias: np.ndarray, state: dict[str, Any]) -> dict[str, Any]:
    """What W workers compute: merged statistics, each shard normalized, the state updated."""
    counts, means, m2s = sbn.shard_moments(x, shard_sizes=sizes, channel_axis=channel_axis)
    n, mean, m2 = sbn.merge_moments(counts, means, m2s)
    var = m2 / n
    rstd = 1.0 / np.sqrt(var + EPS)
    view = [1] * x.ndim
    view[channel_axis] = -1
    ys = [(part - mean.reshape(view)) * rstd.reshape(view) * weight.reshape(view)
          + bias.reshape(view) for part in sbn.shards(x, shard_sizes=sizes)]
    f = state["batch_stat_weight"]
    running = {"running_mean": (1 - f) * state["running_mean"] + f * mean,
               "running_var": (1 - f) * state["running_var"] + f * var * n / (n - 1)}
    return {"y": np.concatenate(ys), **running}


@pytest.mark.parametrize(("sizes", "channel_axis"), [
    ([3, 5], 1), ([1, 4, 2], -1), ([2, 0, 6], 1), ([0, 8, 0, 0], -1), ([8], 1)])
def test_workers_match_batch_norm_on_the_concatenation(sizes: list[int],
                                                       channel_axis: int) -> None:
    rng = np.random.default_rng(sum(sizes) + len(sizes))
    shape = (sum(sizes), 3, 4) if channel_axis == 1 else (sum(sizes), 4, 3)
    x = 100.0 + rng.standard_normal(shape)
    weight, bias = rng.normal(1.0, 0.3, 3), rng.normal(0.0, 0.3, 3)
    state = {"running_mean": np.full(3, 100.0), "running_var": np.ones(3),
             "batch_stat_weight": 0.1}
    got = sbn.forward(x, weight, bias, shard_sizes=sizes, training=True, eps=EPS,
                      channel_axis=channel_axis, running_var_estimator="unbiased", **state)
    want = _workers_forward(x, sizes, channel_axis, weight, bias, state)
    # The hand evaluation rounds x - mean at the scale of |x| = 100: kappa = 1 + |mean|/std
    # amplifies its float64 rounding, and nothing else separates the two.
    kappa = 1.0 + float(np.max(np.abs(got["mean"]) * got["rstd"]))
    for key in ("y", "running_mean", "running_var"):
        assert _ulps(got[key], want[key]) <= 4 * kappa, key


@settings(max_examples=25, deadline=None)
@given(_sharded())
def test_every_call_equals_batch_norm_on_the_concatenation(
        case: tuple[np.ndarray, list[int], int]) -> None:
    x, sizes, channel_axis = case
    channels = x.shape[channel_axis]
    rng = np.random.default_rng(len(sizes))
    w, b = rng.normal(1.0, 0.5, channels), rng.normal(0.0, 0.5, channels)
    g = rng.standard_normal(x.shape)
    t = {"x": rng.standard_normal(x.shape), "weight": rng.standard_normal(channels)}
    common: dict[str, Any] = {"training": True, "eps": EPS, "channel_axis": channel_axis,
                              "running_mean": np.zeros(channels),
                              "running_var": np.ones(channels), "batch_stat_weight": 0.3,
                              "running_var_estimator": "biased"}
    pairs = [(sbn.forward(x, w, b, shard_sizes=sizes, **common),
              bn.forward(x, w, b, **common)),
             (sbn.vjp(x, w, b, cotangent=g, shard_sizes=sizes, **common),
              bn.vjp(x, w, b, cotangent=g, **common)),
             ({"y": sbn.jvp(x, w, b, tangent=t, shard_sizes=sizes, **common)},
              {"y": bn.jvp(x, w, b, tangent=t, **common)}),
             (sbn.second_order(x, w, b, cotangent=g, tangent=t, shard_sizes=sizes, **common),
              bn.second_order(x, w, b, cotangent=g, tangent=t, **common))]
    for got, want in pairs:
        assert got.keys() == want.keys()
        for key in got:
            assert np.array_equal(got[key], want[key], equal_nan=True), key


def test_the_split_does_not_change_anything() -> None:
    x = np.random.default_rng(5).standard_normal((6, 2, 3))
    outs = [sbn.forward(x, shard_sizes=s, training=True, eps=EPS)
            for s in ([6], [3, 3], [1, 2, 3], [0, 6, 0], [1, 1, 1, 1, 1, 1])]
    for out in outs[1:]:
        for key in outs[0]:
            assert np.array_equal(out[key], outs[0][key])


# --- the global count -------------------------------------------------------------------------


def test_unbiased_correction_uses_the_global_count() -> None:
    x = np.array([[1.0], [2.0], [6.0]])
    out = sbn.forward(x, shard_sizes=[1, 2], training=True, eps=0.0, batch_stat_weight=1.0,
                      running_mean=np.zeros(1), running_var=np.zeros(1),
                      running_var_estimator="unbiased")
    # n = 3: var = 14/3, unbiased 7 (a worker's own count, 1 or 2, would give inf or 9.33)
    assert out["running_var"].tolist() == [7.0]


def test_one_value_per_worker_is_fine_when_the_global_count_is_above_one() -> None:
    x = np.array([[1.0], [3.0]])
    out = sbn.forward(x, shard_sizes=[1, 1], training=True, eps=0.0, batch_stat_weight=1.0,
                      running_mean=np.zeros(1), running_var=np.zeros(1),
                      running_var_estimator="unbiased")
    assert out["running_var"].tolist() == [2.0]


def test_unbiased_with_one_value_in_the_whole_batch_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"argument 'x': got shape \(1, 2\) with one value per "
                                         r"channel \(n=1\)"):
        sbn.forward(np.ones((1, 2)), shard_sizes=[0, 1], training=True, eps=EPS,
                    running_mean=np.zeros(2), running_var=np.ones(2), batch_stat_weight=0.1,
                    running_var_estimator="unbiased")


def test_evaluation_uses_the_running_statistics_on_every_shard() -> None:
    x = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    out = sbn.forward(x, shard_sizes=[2, 0, 1], training=False, eps=0.0,
                      running_mean=np.array([1.0, 2.0]), running_var=np.array([4.0, 1.0]))
    assert out["y"].tolist() == [[0.0, 0.0], [1.0, 2.0], [2.0, 4.0]]


def test_nan_in_one_shard_poisons_its_channel_on_every_worker() -> None:
    x = np.random.default_rng(2).standard_normal((5, 2))
    x[4, 1] = np.nan
    y = sbn.forward(x, shard_sizes=[2, 3], training=True, eps=EPS)["y"]
    assert np.isnan(y[:, 1]).all()
    assert np.isfinite(y[:, 0]).all()


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("sizes", "error", "match"), [
    ([3, 3], ValueError, r"argument 'shard_sizes': got \[3, 3\] \(sum 6\), expected sizes that "
                         r"sum to the batch size x.shape\[0\] = 5"),
    ([6, -1], ValueError, r"argument 'shard_sizes': got \[6, -1\], expected entries >= 0"),
    ([], ValueError, r"argument 'shard_sizes': got shape \(0,\), expected a 1-d array"),
    ([[2, 3]], ValueError, r"argument 'shard_sizes': got shape \(1, 2\), expected a 1-d array"),
    ([2.0, 3.0], TypeError, r"argument 'shard_sizes': got dtype float64, expected integers"),
    ([True, False], TypeError, r"argument 'shard_sizes': got dtype bool, expected integers"),
])
def test_bad_shard_sizes_are_rejected(sizes: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        sbn.forward(np.ones((5, 2)), shard_sizes=sizes, training=True, eps=EPS)


def test_the_batch_axis_cannot_be_the_channel_axis() -> None:
    with pytest.raises(ValueError, match=r"argument 'channel_axis': got 0, expected an axis "
                                         r"other than 0: axis 0 is the batch axis"):
        sbn.forward(np.ones((4, 2)), shard_sizes=[2, 2], training=True, eps=EPS, channel_axis=0)
    with pytest.raises(ValueError, match=r"argument 'channel_axis': got -2"):
        sbn.vjp(np.ones((4, 2)), cotangent=np.ones((4, 2)), shard_sizes=[4], training=True,
                eps=EPS, channel_axis=-2)


def test_shard_sizes_are_required() -> None:
    with pytest.raises(TypeError, match="shard_sizes"):
        sbn.forward(np.ones((4, 2)), training=True, eps=EPS)  # type: ignore[call-arg]


def test_layout_is_batch_norms_and_refuses_the_batch_axis() -> None:
    assert sbn.layout((4, 3, 2), channel_axis=1) == bn.layout((4, 3, 2), channel_axis=1)
    with pytest.raises(ValueError, match=r"argument 'channel_axis': got 0"):
        sbn.layout((4, 3), channel_axis=0)


def test_input_shapes_are_per_channel() -> None:
    assert sbn.input_shapes((6, 2, 5), {"channel_axis": -1}) == dict.fromkeys(
        ("weight", "bias", "running_mean", "running_var"), (5,))
