"""sequence_batch_norm: padding is invisible, the valid frames are batch_norm, state, bad input.

Expected values come from batch_norm's reference on the gathered valid frames or from plain
NumPy means over them, never from sequence_batch_norm itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from normspec.reference import batch_norm as bn
from normspec.reference import sequence_batch_norm as sbn

EPS = 1e-5
LENGTHS = [5, 3, 0, 2]  # an empty sequence, uneven lengths; frames 3 and 4 have one element


def _mask(lengths: list[int], steps: int) -> np.ndarray:
    return np.arange(steps)[None, :] < np.asarray(lengths)[:, None]


def _case(seed: int = 0, lengths: list[int] = LENGTHS, steps: int = 5, channels: int = 3
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(1.0, 2.0, (len(lengths), steps, channels))
    return x, _mask(lengths, steps), rng.normal(1.0, 0.3, channels), rng.normal(0, 0.5, channels)


def _all(x: np.ndarray, w: np.ndarray, b: np.ndarray, g: np.ndarray, t: dict[str, np.ndarray],
         **hyper: Any) -> dict[str, Any]:
    """Every output of the four functions, keyed by function."""
    return {"forward": sbn.forward(x, w, b, **hyper),
            "vjp": sbn.vjp(x, w, b, cotangent=g, **hyper),
            "jvp": {"y": sbn.jvp(x, w, b, tangent=t, **hyper)},
            "second_order": sbn.second_order(x, w, b, cotangent=g, tangent=t, **hyper)}


def _tracking(statistics: str, shape: tuple[int, ...]) -> dict[str, Any]:
    stat = shape[1:] if statistics == "frame" else (shape[-1],)
    rng = np.random.default_rng(9)
    return {"running_mean": rng.normal(0, 1, stat), "running_var": rng.uniform(0.5, 2, stat),
            "batch_stat_weight": 0.1, "running_var_estimator": "biased",
            "num_batches_tracked": 3}


MODES = ["train", "track", "eval"]


def _hyper(mode: str, statistics: str, mask: np.ndarray, shape: tuple[int, ...]
           ) -> dict[str, Any]:
    hyper: dict[str, Any] = {"mask": mask, "statistics": statistics, "eps": EPS,
                             "training": mode != "eval"}
    if mode != "train":
        hyper.update(_tracking(statistics, shape))
    if mode == "eval":
        for key in ("batch_stat_weight", "running_var_estimator", "num_batches_tracked"):
            hyper.pop(key)
    return hyper


# --- padding is invisible ------------------------------------------------------------------


@pytest.mark.parametrize("junk", [np.nan, np.inf, -np.inf, 1e300, -1e308, 0.0])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("statistics", ["frame", "sequence"])
def test_padded_values_change_nothing(statistics: str, mode: str, junk: float) -> None:
    x, mask, w, b = _case()
    rng = np.random.default_rng(1)
    g, tx, tw, tb = (rng.standard_normal(s) for s in (x.shape, x.shape, w.shape, b.shape))
    hyper = _hyper(mode, statistics, mask, x.shape)
    clean = _all(x, w, b, g, {"x": tx, "weight": tw, "bias": tb}, **hyper)
    pad = ~mask[:, :, None]
    # padding in x, in the cotangent and in the x-tangent: none of it is read
    dirty = _all(np.where(pad, junk, x), w, b, np.where(pad, -junk, g),
                 {"x": np.where(pad, junk, tx), "weight": tw, "bias": tb}, **hyper)
    for fn, outs in clean.items():
        for key, value in outs.items():
            assert np.array_equal(value, dirty[fn][key], equal_nan=True), (fn, key)


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(0, 6), min_size=1, max_size=5),
       statistics=st.sampled_from(["frame", "sequence"]),
       junk=st.floats(allow_nan=True, allow_infinity=True))
def test_padded_values_never_reach_any_output(lengths: list[int], statistics: str,
                                              junk: float) -> None:
    x, mask, w, b = _case(2, lengths, steps=6, channels=2)
    hyper = {"mask": mask, "statistics": statistics, "eps": EPS, "training": True}
    g = np.random.default_rng(3).standard_normal(x.shape)
    clean = sbn.vjp(x, w, b, cotangent=g, **hyper)
    dirty = sbn.vjp(np.where(mask[:, :, None], x, junk), w, b, cotangent=g, **hyper)
    for key in clean:
        assert np.array_equal(clean[key], dirty[key], equal_nan=True)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("statistics", ["frame", "sequence"])
def test_padded_outputs_and_gradients_are_zero(statistics: str, mode: str) -> None:
    x, mask, w, b = _case(4, lengths=[5, 5, 0, 2])  # every frame has 0 or >= 2 valid entries
    rng = np.random.default_rng(5)
    g, tx = rng.standard_normal(x.shape), rng.standard_normal(x.shape)
    hyper = _hyper(mode, statistics, mask, x.shape)
    out = _all(x, w, b, g, {"x": tx, "weight": np.ones(3), "bias": np.ones(3)}, **hyper)
    pad = ~mask
    for arr in (out["forward"]["y"], out["vjp"]["x"], out["jvp"]["y"], out["second_order"]["x"]):
        assert np.all(arr[pad] == 0.0)
        assert np.all(arr[mask] != 0.0)


# --- the valid frames are batch_norm --------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_sequence_wise_equals_batch_norm_on_the_gathered_frames(mode: str) -> None:
    x, mask, w, b = _case(6)
    g = np.random.default_rng(7).standard_normal(x.shape)
    hyper = _hyper(mode, "sequence", mask, x.shape)
    got = sbn.forward(x, w, b, **hyper)
    grads = sbn.vjp(x, w, b, cotangent=g, **hyper)
    bn_hyper = {k: v for k, v in hyper.items() if k not in ("mask", "statistics")}
    want = bn.forward(x[mask], w, b, channel_axis=1, **bn_hyper)
    want_grads = bn.vjp(x[mask], w, b, cotangent=g[mask], channel_axis=1, **bn_hyper)
    np.testing.assert_array_equal(got["y"][mask], want["y"])
    for key in want:
        if key != "y":
            np.testing.assert_array_equal(got[key], want[key])
    np.testing.assert_array_equal(grads["x"][mask], want_grads["x"])
    for key in ("weight", "bias"):
        np.testing.assert_allclose(grads[key], want_grads[key], rtol=1e-14)


@pytest.mark.parametrize("mode", MODES)
def test_frame_wise_equals_batch_norm_per_time_step(mode: str) -> None:
    x, mask, w, b = _case(8, lengths=[5, 3, 4, 2, 5])
    g = np.random.default_rng(9).standard_normal(x.shape)
    hyper = _hyper(mode, "frame", mask, x.shape)
    got = sbn.forward(x, w, b, **hyper)
    grads = sbn.vjp(x, w, b, cotangent=g, **hyper)
    dweight = np.zeros(3)
    for t in range(x.shape[1]):
        v = mask[:, t]
        step = {k: (val[t] if k in ("running_mean", "running_var") else val)
                for k, val in hyper.items() if k not in ("mask", "statistics")}
        want = bn.forward(x[v, t], w, b, channel_axis=1, **step)
        np.testing.assert_array_equal(got["y"][v, t], want["y"])
        for key in want:
            if key not in ("y", "num_batches_tracked"):
                np.testing.assert_array_equal(got[key][t], want[key])
        want_grads = bn.vjp(x[v, t], w, b, cotangent=g[v, t], channel_axis=1, **step)
        np.testing.assert_array_equal(grads["x"][v, t], want_grads["x"])
        dweight += want_grads["weight"]
    np.testing.assert_allclose(grads["weight"], dweight, rtol=1e-13)


@pytest.mark.parametrize("mode", MODES)
def test_full_mask_sequence_wise_is_batch_norm_over_batch_and_time(mode: str) -> None:
    x, mask, w, b = _case(10, lengths=[4, 4, 4], steps=4)
    g = np.random.default_rng(11).standard_normal(x.shape)
    hyper = _hyper(mode, "sequence", mask, x.shape)
    bn_hyper = {k: v for k, v in hyper.items() if k not in ("mask", "statistics")}
    got, want = sbn.forward(x, w, b, **hyper), bn.forward(x, w, b, channel_axis=-1, **bn_hyper)
    assert set(got) == set(want)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
    got_g = sbn.vjp(x, w, b, cotangent=g, **hyper)
    want_g = bn.vjp(x, w, b, cotangent=g, channel_axis=-1, **bn_hyper)
    for key in want_g:
        np.testing.assert_allclose(got_g[key], want_g[key], rtol=1e-14, atol=1e-15)


def test_full_mask_frame_wise_is_batch_norm_of_each_time_and_channel() -> None:
    x, mask, _, _ = _case(12, lengths=[3, 3, 3, 3], steps=3)
    got = sbn.forward(x, mask=mask, statistics="frame", training=True, eps=EPS)
    want = bn.forward(x.reshape(4, -1), training=True, eps=EPS, channel_axis=1)
    np.testing.assert_array_equal(got["y"], want["y"].reshape(x.shape))
    np.testing.assert_array_equal(got["var"], want["var"].reshape(3, 3))


# --- layout ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("statistics", ["frame", "sequence"])
def test_channels_first_is_the_transposed_channels_last(statistics: str, mode: str) -> None:
    x, mask, w, b = _case(13)
    g = np.random.default_rng(14).standard_normal(x.shape)
    hyper = _hyper(mode, statistics, mask, x.shape)
    first = dict(hyper, channel_axis=1)
    for key in ("running_mean", "running_var"):
        if key in first and statistics == "frame":
            first[key] = first[key].T
    last_out = _all(x, w, b, g, {"x": g}, **hyper)
    first_out = _all(np.swapaxes(x, 1, 2), w, b, np.swapaxes(g, 1, 2),
                     {"x": np.swapaxes(g, 1, 2)}, **first)
    for fn, outs in last_out.items():
        for key, value in outs.items():
            other = first_out[fn][key]
            if value.ndim == 3 or (value.ndim == 2 and statistics == "frame"):
                other = np.swapaxes(other, -1, -2)
            np.testing.assert_array_equal(value, other, err_msg=f"{fn}/{key}")


# --- statistics and state -------------------------------------------------------------------


def test_trajectory_with_empty_frames_matches_hand_recursion() -> None:
    rng = np.random.default_rng(15)
    masks = [_mask([4, 2, 1], 5), _mask([5, 5, 3], 5), _mask([2, 0, 2], 5)]
    f = 0.25
    hand_mean, hand_var = np.zeros((5, 2)), np.ones((5, 2))
    state: dict[str, Any] = {"running_mean": hand_mean.copy(), "running_var": hand_var.copy(),
                             "num_batches_tracked": 0}
    for k, mask in enumerate(masks):
        x = rng.normal(k, 1.0 + k, (3, 5, 2))
        for t in range(5):
            v = x[mask[:, t], t]
            if len(v) >= 2:  # unbiased: frames with one element would be rejected
                hand_mean[t] = (1 - f) * hand_mean[t] + f * v.mean(axis=0)
                hand_var[t] = (1 - f) * hand_var[t] + f * v.var(axis=0, ddof=1)
        if k != 0:  # batch 0 has a frame with one valid element: biased estimator there
            out = sbn.forward(x, mask=mask, statistics="frame", training=True, eps=EPS,
                              batch_stat_weight=f, running_var_estimator="unbiased", **state)
        else:
            with pytest.raises(ValueError, match="one valid frame"):
                sbn.forward(x, mask=mask, statistics="frame", training=True, eps=EPS,
                            batch_stat_weight=f, running_var_estimator="unbiased", **state)
            hand_mean, hand_var = state["running_mean"].copy(), state["running_var"].copy()
            continue
        state = {"running_mean": out["running_mean"], "running_var": out["running_var"],
                 "num_batches_tracked": int(out["num_batches_tracked"])}
        empty = ~mask.any(axis=0)
        assert np.all(np.isnan(out["mean"][empty]))
        assert np.all(np.isnan(out["rstd"][empty]))
    np.testing.assert_allclose(state["running_mean"], hand_mean, rtol=1e-13)
    np.testing.assert_allclose(state["running_var"], hand_var, rtol=1e-13)
    assert state["num_batches_tracked"] == 2


def test_sequence_wise_unbiased_uses_the_valid_count() -> None:
    x, mask, _, _ = _case(16)
    out = sbn.forward(x, mask=mask, statistics="sequence", training=True, eps=EPS,
                      running_mean=np.zeros(3), running_var=np.zeros(3), batch_stat_weight=1.0,
                      running_var_estimator="unbiased")
    np.testing.assert_allclose(out["running_var"], x[mask].var(axis=0, ddof=1), rtol=1e-13)
    np.testing.assert_allclose(out["mean"], x[mask].mean(axis=0), rtol=1e-13)


def test_all_padded_batch_has_nan_statistics_and_keeps_running_state() -> None:
    x, _, w, b = _case(17)
    mask = np.zeros(x.shape[:2], dtype=bool)
    rm, rv = np.arange(3.0), np.ones(3)
    out = sbn.forward(x, w, b, mask=mask, statistics="sequence", training=True, eps=EPS,
                      running_mean=rm, running_var=rv, batch_stat_weight=0.5,
                      running_var_estimator="biased")
    assert np.all(out["y"] == 0)
    assert np.all(np.isnan(out["mean"]))
    np.testing.assert_array_equal(out["running_mean"], rm)
    np.testing.assert_array_equal(out["running_var"], rv)
    assert float(out["num_batches_tracked"]) == 1.0
    grads = sbn.vjp(x, w, b, cotangent=np.ones_like(x), mask=mask, statistics="sequence",
                    training=True, eps=EPS)
    assert all(np.all(v == 0) for v in grads.values())


def test_cumulative_rejects_a_row_without_valid_frames() -> None:
    x, mask, _, _ = _case(18, steps=6)  # no sequence reaches the last time step
    with pytest.raises(ValueError, match=r"argument 'mask': got a time step with no valid frame"):
        sbn.forward(x, mask=mask, statistics="frame", training=True, eps=EPS,
                    running_mean=np.zeros((6, 3)), running_var=np.ones((6, 3)),
                    batch_stat_weight="cumulative", running_var_estimator="biased")
    # sequence-wise the batch has valid frames: accepted
    sbn.forward(x, mask=mask, statistics="sequence", training=True, eps=EPS,
                running_mean=np.zeros(3), running_var=np.ones(3),
                batch_stat_weight="cumulative", running_var_estimator="unbiased")


# --- bad input ------------------------------------------------------------------------------


def _call(**change: Any) -> None:
    x, mask, _, _ = _case(19)
    kw: dict[str, Any] = {"mask": mask, "statistics": "sequence", "training": True, "eps": EPS}
    kw.update(change)
    sbn.forward(change.pop("x", x), **{k: v for k, v in kw.items() if k != "x"})


@pytest.mark.parametrize(("change", "error", "match"), [
    ({"mask": None}, ValueError, r"argument 'mask': got None, expected a bool array of shape"),
    ({"mask": np.ones((4, 5), dtype=np.int64)}, TypeError,
     r"argument 'mask': got dtype int64, expected a bool array"),
    ({"mask": np.ones((5, 4), dtype=bool)}, ValueError,
     r"argument 'mask': got shape \(5, 4\), expected shape \(4, 5\)"),
    ({"statistics": "time"}, ValueError,
     r"argument 'statistics': got 'time', expected one of \['frame', 'sequence'\]"),
    ({"channel_axis": 0}, ValueError, r"argument 'channel_axis': got 0, expected 1"),
    ({"x": np.zeros((4, 5))}, ValueError, r"argument 'x': got an array of shape \(4, 5\)"),
    ({"training": False}, ValueError, r"argument 'running_mean': got None with training=False"),
    ({"running_mean": np.zeros((5, 3)), "running_var": np.ones((5, 3))}, ValueError,
     r"argument 'running_mean': got shape \(5, 3\), expected shape \(3,\)"),
    ({"running_mean": np.zeros(3)}, ValueError,
     r"argument 'running_var': got None while 'running_mean' was given"),
    ({"running_mean": np.zeros(3), "running_var": np.ones(3)}, ValueError,
     r"argument 'batch_stat_weight': got None while updating"),
])
def test_bad_input_names_the_argument(change: dict[str, Any], error: type[Exception],
                                      match: str) -> None:
    with pytest.raises(error, match=match):
        _call(**change)


def test_frame_wise_running_statistics_have_the_shape_of_one_sample() -> None:
    x, mask, _, _ = _case(20)
    with pytest.raises(ValueError, match=r"argument 'running_mean': got shape \(3,\), expected "
                                         r"shape \(5, 3\)"):
        sbn.forward(x, mask=mask, statistics="frame", training=False, eps=EPS,
                    running_mean=np.zeros(3), running_var=np.ones(3))


# --- the golden vectors ---------------------------------------------------------------------


def _vector_cases() -> list[Any]:
    from normspec.conformance.vectors import load_manifest

    manifest = load_manifest()
    return [case for dtype in manifest.dtypes("sequence_batch_norm")
            for case in manifest.cases("sequence_batch_norm", dtype)]


def test_nonfinite_vector_inputs_sit_only_at_padded_positions() -> None:
    """The pad_nan/pad_inf cases' seeds put every NaN/Inf at padding (and no output is
    non-finite because of them): a sampler change that moves one is caught here."""
    seen = 0
    for case in _vector_cases():
        if "x" not in case.inputs:  # a trajectory: its batches are drawn per step
            continue
        x, mask = case.inputs["x"], case.inputs["mask"]
        valid = mask[:, None, :] if case.hyper.get("channel_axis", -1) % 3 == 1 else \
            mask[:, :, None]
        bad = ~np.isfinite(x)
        assert not np.any(bad & np.broadcast_to(valid, x.shape)), case.name
        seen += int(bad.any())
        if bad.any():
            assert np.all(np.isfinite(case.expected["forward/y"])), case.name
    assert seen >= 4 * 3, "the catalog lost its NaN/Inf padding cases"
