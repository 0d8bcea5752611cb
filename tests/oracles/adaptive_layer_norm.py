"""mpmath oracle and proof cases for adaptive_layer_norm, written from the spec's equations."""

from __future__ import annotations

from typing import Any

import mpmath
import numpy as np

from . import DPS, ProofCase, mp_array, seeded


def _silu(c: Any) -> Any:
    return c / (1 + mpmath.exp(-c))


def mp_forward(primals: dict[str, np.ndarray | None], hyper: dict[str, Any]
               ) -> dict[str, np.ndarray]:
    x, cond, weight = primals["x"], primals["cond"], primals["weight"]
    assert x is not None
    assert cond is not None
    assert weight is not None
    bias = primals.get("bias")
    d = x.shape[-1]
    gated = bool(hyper["gated"])
    with mpmath.workdps(DPS):
        eps = mpmath.mpf(hyper["eps"])
        xm, cm, wm = mp_array(x), mp_array(cond), mp_array(weight)
        bm = mp_array(bias) if bias is not None else None
        k = cond.shape[1]
        y = np.empty(x.shape, dtype=object)
        stat_shape = x.shape[:-1]
        mean = np.empty(stat_shape, dtype=object)
        var = np.empty(stat_shape, dtype=object)
        rstd = np.empty(stat_shape, dtype=object)
        mods = np.empty((x.shape[0], weight.shape[1]), dtype=object)
        for n in range(x.shape[0]):
            u = [(_silu(cm[n, i]) if hyper["activation"] == "silu" else cm[n, i])
                 for i in range(k)]
            mod = [mpmath.fsum(u[i] * wm[i, j] for i in range(k))
                   + (bm[j] if bm is not None else 0) for j in range(weight.shape[1])]
            mods[n] = mod
            shift, scale = mod[:d], mod[d:2 * d]
            gate = mod[2 * d:] if gated else None
            for idx in np.ndindex(*x.shape[1:-1]):
                row = [xm[(n, *idx, j)] for j in range(d)]
                mu = mpmath.fsum(row) / d
                v = mpmath.fsum((r - mu) ** 2 for r in row) / d
                r_ = 1 / mpmath.sqrt(v + eps)
                mean[(n, *idx)], var[(n, *idx)], rstd[(n, *idx)] = mu, v, r_
                for j in range(d):
                    h = (row[j] - mu) * r_ * (1 + scale[j]) + shift[j]
                    y[(n, *idx, j)] = h if gate is None else gate[j] * h
    out = {"y": y, "mean": mean, "var": var, "rstd": rstd, "shift": mods[:, :d],
           "scale": mods[:, d:2 * d]}
    if gated:
        out["gate"] = mods[:, 2 * d:]
    return out


_SHAPES = [(3, 7), (2, 3, 4), (1, 5), (4, 1), (2, 2, 3, 3), (2, 1, 6)]
_DISTS = ["normal", "offset_1e3", "offset_1e8", "tiny", "huge", "constant", "decades",
          "zero_init", "uniform_pos"]


def _draw(rng: np.random.Generator, shape: tuple[int, ...], dist: str) -> np.ndarray:
    base = rng.standard_normal(shape)
    if dist == "offset_1e3":
        return 1e3 + base
    if dist == "offset_1e8":
        return -1e8 + base
    if dist == "tiny":
        return 1e-150 * base
    if dist == "huge":
        return 1e100 * base
    if dist == "constant":
        return np.full(shape, 12345.678)
    if dist == "decades":
        return base * 10.0 ** rng.integers(-6, 7, shape)
    if dist == "uniform_pos":
        return rng.uniform(0.5, 2.0, shape)
    return base


def proof_cases() -> list[ProofCase]:
    cases = []
    seed = 0
    for shape in _SHAPES:
        for dist in _DISTS:
            seed += 1
            rng = seeded(4000 + seed)
            x = _draw(rng, shape, dist)
            gated = seed % 2 == 0
            activation = "silu" if seed % 3 else "none"
            k = 1 + seed % 4
            p = (3 if gated else 2) * shape[-1]
            cond = rng.standard_normal((shape[0], k)) * (3.0 if dist == "decades" else 1.0)
            weight = 0.5 * rng.standard_normal((k, p))
            bias = None if seed % 5 == 0 else 0.3 * rng.standard_normal(p)
            if dist == "zero_init":
                weight = np.zeros((k, p))
                bias = np.zeros(p)
            eps = [1e-5, 1e-12, 0.1][seed % 3]
            smooth = dist in ("normal", "offset_1e3", "uniform_pos", "zero_init") and x.size <= 64
            cases.append(ProofCase(
                name=(f"{dist}-{'x'.join(map(str, shape))}-k={k}-gated={gated}-{activation}"
                      f"-bias={bias is not None}"),
                primals={"x": x, "cond": cond, "weight": weight, "bias": bias},
                hyper={"gated": gated, "activation": activation, "eps": eps},
                fd=smooth, fd_step=1e-3))
    # the activation's far tails: sigmoid saturates, silu(c) -> c or -> 0
    for i, c0 in enumerate([-40.0, -8.0, 8.0, 40.0]):
        rng = seeded(4900 + i)
        x = rng.standard_normal((2, 3, 4))
        cond = c0 + rng.standard_normal((2, 3))
        cases.append(ProofCase(
            name=f"silu-tail-{c0:g}", primals={"x": x, "cond": cond,
                                               "weight": 0.1 * rng.standard_normal((3, 12)),
                                               "bias": rng.standard_normal(12)},
            hyper={"gated": True, "activation": "silu", "eps": 1e-5},
            fd=abs(c0) < 10, fd_step=1e-3))
    return cases
