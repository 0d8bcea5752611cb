"""mpmath oracle and proof cases for local_contrast_norm, written from the spec's equations.

    w       = separable Gaussian taps exp(-t^2 / (2 window_sigma^2)), each axis summing to 1;
              "renormalize": restricted to the input and divided by the mass inside
    mean[s] = sum_{c', s'} w[s, s'] / C * x[c', s'],   v = x - mean
    sigma   = sqrt(sum_{c', s'} w[s, s'] / C * v[c', s']^2)
    d       = max(floor, sigma), floor = mean_s sigma or a constant,   y = v / d
"""

from __future__ import annotations

import itertools
from typing import Any

import mpmath
import numpy as np

from . import DPS, ProofCase, mp_array, seeded


def _taps(k: int, s: Any) -> list[Any]:
    half = (k - 1) // 2
    raw = [mpmath.exp(-mpmath.mpf(t - half) ** 2 / (2 * s * s)) for t in range(k)]
    total = mpmath.fsum(raw)
    return [r / total for r in raw]


def mp_forward(primals: dict[str, np.ndarray | None], hyper: dict[str, Any]
               ) -> dict[str, np.ndarray]:
    x = primals["x"]
    assert x is not None
    c_axis = hyper["channel_axis"] % x.ndim
    k = int(hyper["kernel_size"])
    half = (k - 1) // 2
    with mpmath.workdps(DPS):
        taps = _taps(k, mpmath.mpf(hyper["window_sigma"]))
        moved = np.moveaxis(mp_array(x), c_axis, 1)
        n_, c_ = moved.shape[:2]
        sshape = moved.shape[2:]
        positions = list(np.ndindex(*sshape))

        def weights(s: tuple[int, ...]) -> list[tuple[tuple[int, ...], Any]]:
            out = []
            for offs in itertools.product(range(k), repeat=len(sshape)):
                q = tuple(si + o - half for si, o in zip(s, offs, strict=True))
                if all(0 <= qi < ni for qi, ni in zip(q, sshape, strict=True)):
                    wt = mpmath.mpf(1)
                    for o in offs:
                        wt *= taps[o]
                    out.append((q, wt))
            if hyper["border"] == "renormalize":
                mass = mpmath.fsum(wt for _, wt in out)
                out = [(q, wt / mass) for q, wt in out]
            return out

        table = {s: weights(s) for s in positions}

        def axis_mass(i: int, n: int) -> Any:
            inside = [taps[o] for o in range(k) if 0 <= i + o - half < n]
            return mpmath.mpf(1) if len(inside) == k else mpmath.fsum(inside)

        mass = {}
        for s in positions:
            m_ = mpmath.mpf(1)
            for si, ni in zip(s, sshape, strict=True):
                m_ *= axis_mass(si, ni)
            mass[s] = m_
        y = np.empty(moved.shape, dtype=object)
        sig = np.empty((n_, *sshape), dtype=object)
        floors = np.empty((n_,), dtype=object)
        for n in range(n_):
            xs = moved[n]
            # mean[s] - p = sum w (x - p) / C + p (mass[s] - 1), p = x[0, s], with the mass
            # exactly 1 where the window lies inside (renormalized: everywhere), as it is
            # mathematically, so that a constant window gives v = 0 exactly
            v = {}
            for s in positions:
                p = xs[(0, *s)]
                shift = mpmath.fsum(wt * (xs[(c, *q)] - p) for q, wt in table[s]
                                    for c in range(c_)) / c_
                if hyper["border"] == "zero":
                    shift += p * (mass[s] - 1)
                for c in range(c_):
                    v[(c, *s)] = (xs[(c, *s)] - p) - shift
            sigma = {s: mpmath.sqrt(mpmath.fsum(wt * v[(c, *q)] ** 2 for q, wt in table[s]
                                                for c in range(c_)) / c_) for s in positions}
            if hyper["divisor_floor"] == "mean":
                floor = mpmath.fsum(sigma.values()) / len(positions)
            else:
                floor = mpmath.mpf(hyper["divisor_floor"])
            floors[n] = floor
            for s in positions:
                sig[(n, *s)] = sigma[s]
                d = sigma[s] if sigma[s] > floor else floor
                for c in range(c_):
                    y[(n, c, *s)] = mpmath.mpf("nan") if d == 0 else v[(c, *s)] / d
    return {"y": np.moveaxis(y, 1, c_axis), "sigma": sig, "floor": floors}


_SHAPES: list[tuple[tuple[int, ...], int]] = [
    ((2, 3, 5, 4), 1), ((1, 4, 4, 2), -1), ((2, 2, 7), 1), ((1, 3, 3, 3, 2), 1),
    ((2, 6, 5, 1), -1), ((1, 1, 6, 6), 1),
]
_DISTS = ["normal", "tiny", "huge", "decades", "constant", "zero"]
_HYPERS: list[dict[str, Any]] = [
    {"kernel_size": 3, "window_sigma": 1.0, "border": "renormalize", "divisor_floor": "mean"},
    {"kernel_size": 5, "window_sigma": 2.0, "border": "zero", "divisor_floor": "mean"},
    {"kernel_size": 3, "window_sigma": 0.5, "border": "zero", "divisor_floor": 0.0},
    {"kernel_size": 1, "window_sigma": 1.0, "border": "renormalize", "divisor_floor": 0.5},
    {"kernel_size": 5, "window_sigma": 1.5, "border": "renormalize", "divisor_floor": 1.0},
]


def _draw(rng: np.random.Generator, shape: tuple[int, ...], dist: str) -> np.ndarray:
    base = rng.standard_normal(shape)
    if dist == "tiny":
        return 1e-150 * base
    if dist == "huge":
        return 1e100 * base
    if dist == "decades":
        return base * 10.0 ** rng.uniform(-6, 6, shape)
    if dist == "constant":
        return np.full(shape, 3.25)
    if dist == "zero":
        return np.zeros(shape)
    return base


def _scaled_floor(hyper: dict[str, Any], dist: str) -> dict[str, Any]:
    """A constant floor on the scale of the input, so that both branches of max occur."""
    f = hyper["divisor_floor"]
    if isinstance(f, str):
        return hyper
    scale = {"tiny": 1e-150, "huge": 1e100}.get(dist, 1.0)
    return {**hyper, "divisor_floor": f * scale}


def _smooth(x: np.ndarray, hyper: dict[str, Any]) -> bool:
    """Away from the kinks: every sigma differs from the floor by 10% (never a tie or 0)."""
    out = mp_forward({"x": x}, hyper)
    sig = np.vectorize(float)(out["sigma"]).reshape(x.shape[0], -1)
    floor = np.vectorize(float)(out["floor"])[:, None]
    return bool(np.all(sig > 0.05) and np.all(np.abs(sig - floor) > 0.1 * floor))


def proof_cases() -> list[ProofCase]:
    cases = []
    seed = 0
    for shape, axis in _SHAPES:
        for dist in _DISTS:
            seed += 1
            rng = seeded(11000 + seed)
            hyper = _scaled_floor({"channel_axis": axis, **_HYPERS[seed % len(_HYPERS)]}, dist)
            if dist in ("constant", "zero") and hyper["divisor_floor"] in ("mean", 0.0):
                hyper = {**hyper, "divisor_floor": 0.25}  # 0/0 otherwise (see the special cases)
            x = _draw(rng, shape, dist)
            # k = 1 with two channels makes y = +-1 or linear: a zero second order, no signal
            fd = (dist == "normal" and x.size <= 64 and hyper["kernel_size"] > 1
                  and _smooth(x, hyper))
            cases.append(ProofCase(
                name=f"{dist}-{'x'.join(map(str, shape))}-axis={axis}-k={hyper['kernel_size']}-"
                     f"{hyper['border']}-floor={hyper['divisor_floor']}",
                primals={"x": x}, hyper=hyper, fd=fd, fd_step=1e-3))
    return cases + _special_cases()


def _special_cases() -> list[ProofCase]:
    out = []
    rng = seeded(11900)
    base = {"channel_axis": 1, "kernel_size": 3, "window_sigma": 1.0}
    for i, (border, floor) in enumerate(itertools.product(("renormalize", "zero"),
                                                          ("mean", 0.0, 0.3, 100.0))):
        hyper = {**base, "border": border, "divisor_floor": floor}
        x = rng.standard_normal((1, 2, 4, 3))
        out.append(ProofCase(f"fd-{border}-floor={floor}-{i}", {"x": x}, hyper,
                             fd=_smooth(x, hyper) or floor == 100.0))
    out.append(ProofCase("offset_1e3-renormalize", {"x": 1e3 + rng.standard_normal((1, 3, 4, 4))},
                         {**base, "border": "renormalize", "divisor_floor": "mean"}, fd=False))
    out.append(ProofCase("decades-nhwc-zero", {"x": rng.standard_normal((1, 4, 4, 3))
                                               * 10.0 ** rng.uniform(-4, 4, (1, 4, 4, 3))},
                         {**base, "channel_axis": -1, "border": "zero", "divisor_floor": 0.0},
                         fd=False))
    out.append(ProofCase("nlc-n=40-k=7", {"x": rng.standard_normal((1, 40, 2))},
                         {"channel_axis": -1, "kernel_size": 7, "window_sigma": 2.0,
                          "border": "renormalize", "divisor_floor": "mean"}, fd=False))
    # constant input with the renormalized window: v = 0, sigma = 0 and floor = mean 0: 0/0
    out.append(ProofCase("constant-mean-floor-nan", {"x": np.full((1, 2, 3, 3), 2.0)},
                         {**base, "border": "renormalize", "divisor_floor": "mean"}, fd=False))
    # with zero padding a constant input has contrast at the border only
    out.append(ProofCase("constant-zero-border", {"x": np.full((1, 2, 4, 4), 2.0)},
                         {**base, "border": "zero", "divisor_floor": "mean"}, fd=False))
    # a tie sigma == floor: one position, floor = mean(sigma) = sigma
    out.append(ProofCase("one-position-tie", {"x": rng.standard_normal((2, 3, 1, 1))},
                         {**base, "border": "renormalize", "divisor_floor": "mean"}, fd=False))
    return out
