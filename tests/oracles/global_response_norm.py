"""mpmath oracle and proof cases for global_response_norm, written from the spec's equations.

    gx[n, c] = sqrt(sum_s x[n, s, c]^2),  nx[n, c] = gx[n, c] / (mean_c gx[n, c] + eps)
    y = weight[c] * (x * nx[n, c]) + bias[c] + x
"""

from __future__ import annotations

from typing import Any

import mpmath
import numpy as np

from . import DPS, ProofCase, mp_array, seeded


def mp_forward(primals: dict[str, np.ndarray | None], hyper: dict[str, Any]
               ) -> dict[str, np.ndarray]:
    x, w, b = primals["x"], primals["weight"], primals["bias"]
    assert x is not None
    assert w is not None
    assert b is not None
    c_axis = hyper["channel_axis"] % x.ndim
    with mpmath.workdps(DPS):
        eps = mpmath.mpf(hyper["eps"])
        # (N, C, spatial...) then (N, C, m)
        moved = np.moveaxis(mp_array(x), c_axis, 1)
        n_, c_ = moved.shape[0], moved.shape[1]
        flat = moved.reshape(n_, c_, -1)
        gx = np.empty((n_, c_), dtype=object)
        nx = np.empty((n_, c_), dtype=object)
        y = np.empty(flat.shape, dtype=object)
        wm, bm = mp_array(w), mp_array(b)
        for n in range(n_):
            for c in range(c_):
                gx[n, c] = mpmath.sqrt(mpmath.fsum(v * v for v in flat[n, c]))
            denom = mpmath.fsum(gx[n]) / c_ + eps
            for c in range(c_):
                # 0/0 (eps = 0, every channel zero) is NaN, as IEEE division says
                nx[n, c] = mpmath.mpf("nan") if denom == 0 else gx[n, c] / denom
                for s, v in enumerate(flat[n, c]):
                    y[n, c, s] = wm[c] * (v * nx[n, c]) + bm[c] + v
        y_full = np.moveaxis(y.reshape(moved.shape), 1, c_axis)
    return {"y": y_full, "gx": gx, "nx": nx}


_SHAPES: list[tuple[tuple[int, ...], int]] = [
    ((2, 3, 4, 5), -1), ((2, 5, 3, 4), 1), ((1, 7, 3), -1), ((3, 4, 2, 2, 3), -1),
    ((2, 1, 1, 6), -1), ((2, 13, 2), 1), ((1, 2, 1031), 1), ((2, 3, 1), -1),
]
_DISTS = ["normal", "away", "offset_1e3", "tiny", "huge", "decades", "constant"]


def _draw(rng: np.random.Generator, shape: tuple[int, ...], dist: str) -> np.ndarray:
    base = rng.standard_normal(shape)
    if dist == "away":
        return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 2.0, shape)
    if dist == "offset_1e3":
        return 1e3 + base
    if dist == "tiny":
        return 1e-150 * base
    if dist == "huge":
        return 1e100 * base
    if dist == "decades":
        return base * 10.0 ** rng.uniform(-8, 8, shape)
    if dist == "constant":
        return np.full(shape, -12345.678)
    return base


def _params(rng: np.random.Generator, c: int) -> tuple[np.ndarray, np.ndarray]:
    return 1.0 + 0.25 * rng.standard_normal(c), 0.5 * rng.standard_normal(c)


def _special_cases() -> list[ProofCase]:
    rng = seeded(9101)
    out = []
    w, b = _params(rng, 4)
    # one channel all zero (gx = 0: the zero subgradient), the others not
    x = rng.standard_normal((2, 3, 4))
    x[0, :, 1] = 0.0
    out.append(ProofCase("zero_channel", {"x": x, "weight": w, "bias": b},
                         {"channel_axis": -1, "eps": 1e-6}, fd=False))
    # a whole zero sample: gx = 0, nx = 0, y = bias
    z = rng.standard_normal((2, 3, 4))
    z[1] = 0.0
    out.append(ProofCase("zero_sample", {"x": z, "weight": w, "bias": b},
                         {"channel_axis": -1, "eps": 1e-6}, fd=False))
    out.append(ProofCase("zero_sample-eps=0", {"x": z, "weight": w, "bias": b},
                         {"channel_axis": -1, "eps": 0.0}, fd=False))
    # zero-initialised parameters: y = x exactly
    out.append(ProofCase("zero_init", {"x": rng.standard_normal((2, 3, 4)),
                                       "weight": np.zeros(4), "bias": np.zeros(4)},
                         {"channel_axis": -1, "eps": 1e-6}, fd=True))
    # eps dominating the mean (tiny norms): nx ~ gx / eps
    out.append(ProofCase("eps_dominates", {"x": 1e-9 * rng.standard_normal((2, 3, 4)),
                                           "weight": w, "bias": b},
                         {"channel_axis": -1, "eps": 1e-6}, fd=False))
    out.append(ProofCase("eps=1-smooth", {"x": rng.standard_normal((2, 4, 3)),
                                          "weight": w, "bias": b},
                         {"channel_axis": 1, "eps": 1.0}, fd=True))
    # one channel of 1e6 next to channels of 1: it takes nearly all of the mean
    big = rng.standard_normal((2, 5, 4))
    big[..., 0] *= 1e6
    out.append(ProofCase("dominant_channel", {"x": big, "weight": w, "bias": b},
                         {"channel_axis": -1, "eps": 1e-6}, fd=False))
    # a single channel: nx = gx / (gx + eps) ~ 1
    out.append(ProofCase("one_channel", {"x": rng.standard_normal((3, 5, 1)),
                                         "weight": w[:1], "bias": b[:1]},
                         {"channel_axis": -1, "eps": 1e-6}, fd=True))
    out.append(ProofCase("near_max", {"x": 1e300 * rng.uniform(1.0, 1.7, (1, 30, 2)),
                                      "weight": np.array([0.5, 0.25]),
                                      "bias": np.zeros(2)},
                         {"channel_axis": -1, "eps": 1e-6}, fd=False))
    out.append(ProofCase("subnormal", {"x": 1e-310 * rng.standard_normal((2, 3, 4)),
                                       "weight": w, "bias": b},
                         {"channel_axis": -1, "eps": 0.0}, fd=False))
    return out


def proof_cases() -> list[ProofCase]:
    cases = []
    seed = 0
    for shape, axis in _SHAPES:
        for dist in _DISTS:
            seed += 1
            rng = seeded(9000 + seed)
            x = _draw(rng, shape, dist)
            w, b = _params(rng, shape[axis])
            eps = [1e-6, 1e-6, 0.0, 1e-3][seed % 4] if dist != "tiny" else [1e-6, 0.0][seed % 2]
            smooth = dist in ("away", "normal") and x.size <= 128
            cases.append(ProofCase(
                name=f"{dist}-{'x'.join(map(str, shape))}-axis={axis}-eps={eps:g}",
                primals={"x": x, "weight": w, "bias": b},
                hyper={"channel_axis": axis, "eps": eps}, fd=smooth, fd_step=1e-3))
    return cases + _special_cases()
