"""The layout helpers the docs draw their figures from say what ``forward`` really reduces.

``reduction_sets(m.layout(shape, **m.NCHW_EXAMPLE))`` labels each element with its reduction
set. Perturbing one element must change exactly the statistic of its own set (and, for local
response normalization, exactly the scales whose window holds its channel).
"""

from __future__ import annotations

import numpy as np
import pytest
from normspec.reference import METHODS, get
from normspec.reference._layout import reduction_sets

# N = 4: ghost_batch_norm's example splits the batch into ghost batches of 2
SHAPE = (4, 6, 2, 3)


def _hyper(method: str) -> dict[str, object]:
    full: dict[str, dict[str, object]] = {
        "batch_norm": {"training": True, "eps": 1e-5},
        "layer_norm": {"eps": 1e-5},
        "rms_norm": {"eps": 1e-5},
        "power_norm": {"p": 3.0, "eps": 1e-5},
        "instance_norm": {"eps": 1e-5},
        "group_norm": {"eps": 1e-5},
        "lp_norm": {"p": 2.0, "eps": 1e-12},
        "fix_norm": {"weight": 2.0, "eps": 1e-12},
        "scale_norm": {"weight": 2.0, "eps": 1e-5},
        "unit_norm": {"eps": 1e-12},
        "local_response_norm": {"alpha": 1e-2, "beta": 0.75, "k": 1.0},
        "ghost_batch_norm": {"training": True, "eps": 1e-5},
        "batch_renorm": {"training": True, "eps": 1e-5, "running_mean": np.zeros(6),
                         "running_var": np.ones(6), "batch_stat_weight": 0.1,
                         "running_var_estimator": "biased", "rmax": 3.0, "dmax": 5.0},
        "sync_batch_norm": {"training": True, "eps": 1e-5, "shard_sizes": [1, 0, SHAPE[0] - 1]},
        "mixed_eval_batch_norm": {"running_mean": np.zeros(6), "running_var": np.ones(6),
                                  "alpha": 0.5, "eps": 1e-5},
        "batch_instance_norm": {"rho": np.full(6, 0.5), "training": True, "eps": 1e-5},
        "adaptive_layer_norm": {"cond": np.ones((4, 2)), "weight": np.full((2, 6), 0.1),
                                "eps": 1e-5},
        "adaptive_instance_norm": {"style": np.ones((4, 6, 3, 3)), "eps": 1e-5,
                                   "variance_estimator": "unbiased"},
        "conditional_instance_norm": {"weight": np.ones((6, 6)), "bias": np.zeros((6, 6)),
                                      "style": [5, 0, 5, 2], "eps": 1e-5},
        "standardize": {"training": True, "ddof": 0, "eps": 1e-9,
                        "eps_placement": "outside_sqrt", "zero_variance": "ieee"},
        "global_response_norm": {"weight": np.ones(6), "bias": np.zeros(6), "eps": 1e-6},
        "min_max_scale": {"training": True, "range_min": 0.0, "range_max": 1.0,
                          "clip": False},
        "weight_norm": {"g": np.ones((4, 1, 1, 1)), "eps": 0.0},
        "weight_standardization": {"eps": 1e-6},
    }
    return {**full[method], **get(method).NCHW_EXAMPLE}


# A method whose statistics depend on more than the axes (a padding mask) states why it has none.
DRAWN = tuple(m for m in METHODS if not hasattr(get(m), "NO_NCHW_EXAMPLE"))


@pytest.mark.parametrize("method", DRAWN)
def test_every_method_has_an_nchw_layout(method: str) -> None:
    mod = get(method)
    labels = reduction_sets(mod.layout(SHAPE, **mod.NCHW_EXAMPLE))
    assert labels.shape == SHAPE
    counts = np.bincount(labels.ravel())
    assert (counts == counts[0]).all()  # every set has the same size n


# min_max_scale: an extreme moves only when the perturbed element is or becomes one
# a method without statistics (gradient_normalization's identity forward) has none to move
_STATISTICAL = tuple(m for m in DRAWN if getattr(get(m), "STATS", ()))


@pytest.mark.parametrize("method", [m for m in _STATISTICAL
                                    if m not in ("local_response_norm", "min_max_scale")])
def test_a_perturbed_element_moves_only_its_own_sets_statistic(method: str) -> None:
    mod = get(method)
    labels = reduction_sets(mod.layout(SHAPE, **mod.NCHW_EXAMPLE))
    x = np.random.default_rng(0).standard_normal(SHAPE)
    stat = mod.STATS[0]
    base = np.asarray(mod.forward(x, **_hyper(method))[stat]).ravel()
    for index in [(0, 0, 0, 0), (1, 3, 1, 2), (2, 5, 0, 1)]:
        moved = x.copy()
        moved[index] += 1.0
        changed = np.flatnonzero(np.asarray(mod.forward(moved, **_hyper(method))[stat]).ravel()
                                 != base)
        assert changed.tolist() == [labels[index]], (method, index)


def test_local_response_norm_window_is_what_forward_sums() -> None:
    mod = get("local_response_norm")
    size = mod.NCHW_EXAMPLE["size"]
    x = np.random.default_rng(1).standard_normal(SHAPE)
    base = mod.forward(x, **_hyper("local_response_norm"))["scale"]
    for c in range(SHAPE[1]):
        moved = x.copy()
        moved[1, c, 1, 1] += 1.0
        scale = mod.forward(moved, **_hyper("local_response_norm"))["scale"]
        changed = np.argwhere(scale != base)
        # only that (n, h, w) fiber, and exactly the channels whose window holds c
        assert {(int(n), int(h), int(w)) for n, _, h, w in changed} == {(1, 1, 1)}
        holders = {int(ch) for ch in changed[:, 1]}
        assert holders == {d for d in range(SHAPE[1])
                           if c in mod.window(d, channels=SHAPE[1], size=size)}


@pytest.mark.parametrize(("size", "expected"), [
    (1, [(0,), (1,), (2,), (3,)]),
    (2, [(0,), (0, 1), (1, 2), (2, 3)]),
    (3, [(0, 1), (0, 1, 2), (1, 2, 3), (2, 3)]),
    (4, [(0, 1), (0, 1, 2), (0, 1, 2, 3), (1, 2, 3)]),
])
def test_local_response_norm_window_placement(size: int, expected: list[tuple[int, ...]]) -> None:
    mod = get("local_response_norm")
    assert [mod.window(c, channels=4, size=size) for c in range(4)] == expected


def test_local_response_norm_window_rejects_a_channel_out_of_range() -> None:
    with pytest.raises(ValueError, match="argument 'channel'"):
        get("local_response_norm").window(4, channels=4, size=3)
