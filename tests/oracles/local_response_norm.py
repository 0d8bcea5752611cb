"""mpmath oracle and proof cases for local_response_norm, written from the spec's equations.

    window(c) = [c - floor(size/2), c + floor((size-1)/2)] clipped to the channels
    scale_c   = k + (alpha/size) sum_{c' in window(c)} x_{c'}^2,   y_c = x_c scale_c^(-beta)
"""

from __future__ import annotations

from typing import Any

import mpmath
import numpy as np

from . import DPS, ProofCase, mp_array, seeded


def mp_forward(primals: dict[str, np.ndarray | None], hyper: dict[str, Any]
               ) -> dict[str, np.ndarray]:
    x = primals["x"]
    assert x is not None
    size = hyper["size"]
    axis = hyper.get("channel_axis", 1) % x.ndim
    with mpmath.workdps(DPS):
        alpha, beta, k = (mpmath.mpf(hyper[name]) for name in ("alpha", "beta", "k"))
        moved = np.moveaxis(mp_array(x), axis, -1)
        channels = moved.shape[-1]
        y = np.empty(moved.shape, dtype=object)
        scale = np.empty(moved.shape, dtype=object)
        for idx in np.ndindex(*moved.shape[:-1]):
            vals = moved[idx]
            for c in range(channels):
                lo, hi = max(0, c - size // 2), min(channels - 1, c + (size - 1) // 2)
                s = k + alpha / size * mpmath.fsum(vals[j] ** 2 for j in range(lo, hi + 1))
                scale[(*idx, c)] = s
                if s == 0 and beta > 0:
                    # x_c = 0 too (c is in its own window): 0 * inf is NaN in IEEE arithmetic.
                    y[(*idx, c)] = mpmath.mpf("nan")
                else:
                    y[(*idx, c)] = vals[c] * s ** (-beta)
    return {"y": np.moveaxis(y, -1, axis), "scale": np.moveaxis(scale, -1, axis)}


# (shape, channel_axis): C = 7 channels first and last, plus 2-d and 4-d inputs.
_LAYOUTS: list[tuple[tuple[int, ...], int]] = [
    ((2, 7, 3), 1), ((2, 3, 7), -1), ((1, 7, 2, 2), 1), ((3, 7), 1), ((2, 2, 2, 7), 3),
]
# (alpha, beta, k): PyTorch defaults, TF-like, AlexNet, k = 0, a strong square, negative beta.
_HYPERS = [(1e-4, 0.75, 1.0), (1.0, 0.5, 1.0), (1e-4 * 5, 0.75, 2.0), (0.5, 1.0, 0.0),
           (3.0, 2.0, 1.0), (1.0, -0.5, 1.0)]
_DISTS = ["normal", "offset_1e3", "tiny", "huge", "constant", "zero", "uniform_pos"]


def _draw(rng: np.random.Generator, shape: tuple[int, ...], dist: str) -> np.ndarray:
    base = rng.standard_normal(shape)
    if dist == "offset_1e3":
        return 1e3 + base
    if dist == "tiny":
        return 1e-150 * base
    if dist == "huge":
        return 1e100 * base
    if dist == "huge_1e60":
        return 1e60 * base
    if dist == "constant":
        return np.full(shape, 12345.678)
    if dist == "zero":
        return np.zeros(shape)
    if dist == "uniform_pos":
        return rng.uniform(0.5, 2.0, shape)
    return base


def _dist_for(dist: str, abk: tuple[float, float, float]) -> str:
    # scale^(-beta) is a float64 intermediate: with x ~ 1e100 and |beta| > 1 it leaves the
    # range (1e-400), so those cases use 1e60, where every intermediate stays finite.
    return "huge_1e60" if dist == "huge" and abs(abk[1]) > 1 else dist


def _hyper(size: int, abk: tuple[float, float, float], channel_axis: int) -> dict[str, Any]:
    alpha, beta, k = abk
    return {"size": size, "alpha": alpha, "beta": beta, "k": k, "channel_axis": channel_axis}


def _shape_name(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def _abk_name(abk: tuple[float, float, float]) -> str:
    return "alpha={:g}-beta={:g}-k={:g}".format(*abk)


def _grid_cases() -> list[ProofCase]:
    """Every size 1..5 on every layout, the distributions and hyperparameters rotating."""
    cases = []
    seed = 0
    for size in (1, 2, 3, 4, 5):
        for shape, axis in _LAYOUTS:
            seed += 1
            rng = seeded(9000 + seed)
            dist = _DISTS[seed % len(_DISTS)]
            abk = _HYPERS[seed % len(_HYPERS)]
            if dist == "zero" and abk[2] == 0.0:
                abk = _HYPERS[0]  # k = 0 with an all-zero window is NaN (see the spec page)
            dist = _dist_for(dist, abk)
            cases.append(ProofCase(
                name=f"{dist}-{_shape_name(shape)}-ch={axis}-size={size}-{_abk_name(abk)}",
                primals={"x": _draw(rng, shape, dist)}, hyper=_hyper(size, abk, axis), fd=False))
    return cases


def _stress_cases() -> list[ProofCase]:
    """Each distribution with each hyperparameter set, for an odd and an even window."""
    cases = []
    seed = 0
    for dist in _DISTS:
        for size, shape, axis in ((5, (2, 7, 3), 1), (4, (2, 3, 7), -1)):
            seed += 1
            rng = seeded(9500 + seed)
            abk = _HYPERS[seed % len(_HYPERS)]
            if dist == "zero" and abk[2] == 0.0:
                abk = _HYPERS[1]
            drawn = _dist_for(dist, abk)
            cases.append(ProofCase(
                name=f"stress-{drawn}-{_shape_name(shape)}-ch={axis}-size={size}-{_abk_name(abk)}",
                primals={"x": _draw(rng, shape, drawn)}, hyper=_hyper(size, abk, axis), fd=False))
    return cases


def _channel_count_cases() -> list[ProofCase]:
    """C = 1, 13 and over 1000, windows wider than the channels, and the k = 0 zero window."""
    rng = seeded(9900)
    out = []
    for channels, size in ((1, 1), (1, 5), (13, 3), (13, 4), (2, 5), (1031, 5), (1031, 4)):
        shape = (1, channels) if channels > 13 else (2, channels, 3)
        out.append(ProofCase(
            name=f"C={channels}-size={size}", primals={"x": rng.standard_normal(shape)},
            hyper=_hyper(size, (2.0, 0.75, 1.0), 1), fd=False))
    x = rng.standard_normal((2, 7, 2))
    x[0, 3:5] = 0.0  # with k = 0, zero channels next to nonzero ones: scale > 0, y = 0
    out.append(ProofCase("k=0-zero_channels", {"x": x}, _hyper(3, (1.0, 0.75, 0.0), 1),
                         fd=False))
    out.append(ProofCase("beta=0-identity", {"x": rng.standard_normal((2, 7))},
                         _hyper(3, (1.0, 0.0, 1.0), 1), fd=False))
    out.append(ProofCase("alpha=0-constant_scale", {"x": rng.standard_normal((2, 7))},
                         _hyper(4, (0.0, 0.75, 2.0), 1), fd=False))
    # Large |beta| amplifies the rounding of the scale beta-fold unless it is compensated.
    for beta in (4.0, -3.0, 8.0, 40.0, -20.0):
        out.append(ProofCase(f"strong_beta={beta:g}", {"x": 3.0 * rng.standard_normal((4, 7, 3))},
                             _hyper(4, (3.0, beta, 1.0), 1), fd=False))
    return out


def _fd_cases() -> list[ProofCase]:
    """Small smooth cases (k > 0, so scale > 0) with a strong nonlinearity, even sizes included."""
    out = []
    for i, (size, shape, axis, abk) in enumerate((
            (2, (2, 7, 2), 1, (1.0, 0.75, 1.0)),
            (3, (2, 7, 2), 1, (2.0, 0.75, 2.0)),
            (4, (2, 2, 7), -1, (1.5, 0.75, 1.0)),
            (5, (1, 7, 3), 1, (1.0, 1.5, 1.0)),
            (4, (3, 7), 1, (2.0, -0.5, 1.0)),
            (1, (2, 7), -1, (1.0, 0.75, 0.5)),
    )):
        rng = seeded(9950 + i)
        out.append(ProofCase(
            name=f"fd-{_shape_name(shape)}-ch={axis}-size={size}-{_abk_name(abk)}",
            primals={"x": rng.standard_normal(shape)}, hyper=_hyper(size, abk, axis),
            fd=True, fd_step=1e-3))
    # |x| ~ 1e100: scale^(-beta-1) alone underflows, so the derivatives must be evaluated in
    # rescaled form; the step is relative to the input's size
    rng = seeded(9990)
    out.append(ProofCase(
        name="fd-huge-2x5x3-ch=1-size=3-a=0.0001-b=0.75-k=1",
        primals={"x": 1e100 * rng.standard_normal((2, 5, 3))},
        hyper=_hyper(3, (1e-4, 0.75, 1.0), 1), fd=True, fd_step=1e97))
    # |x| ~ 1e-100 with k = 0: scale^(-beta-1) ~ 1e350 overflows though the derivatives do not
    rng = seeded(9991)
    out.append(ProofCase(
        name="fd-tiny-2x5x3-ch=1-size=3-a=1-b=0.75-k=0",
        primals={"x": 1e-100 * (1.0 + rng.random((2, 5, 3)))},
        hyper=_hyper(3, (1.0, 0.75, 0.0), 1), fd=True, fd_step=1e-104))
    return out


def proof_cases() -> list[ProofCase]:
    return _grid_cases() + _stress_cases() + _channel_count_cases() + _fd_cases()
