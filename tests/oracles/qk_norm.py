"""mpmath oracle and proof cases for qk_norm, written from the spec's equations.

qhat = q / max(||q||_2, eps) (l2) or q w / sqrt(mean(q^2) + eps) (rms, over Dh or over the
token's H * Dh values); y[b, h, i, j] = c g sum_d qhat[b, h, i, d] khat[b, h, j, d].
"""

from __future__ import annotations

from typing import Any

import mpmath
import numpy as np

from . import DPS, ProofCase, mp_array, seeded


def _normalize(a: np.ndarray, w: np.ndarray | None, hyper: dict[str, Any]) -> np.ndarray:
    """The normalized tensor as ``(B, H, T, Dh)`` mpf values (``a`` in the input layout)."""
    bthd = hyper["layout"] == "bthd"
    am = mp_array(a)
    if bthd:
        am = am.transpose(0, 2, 1, 3)
    wm = None if w is None else mp_array(w)
    b, h, t, d = am.shape
    eps = mpmath.mpf(hyper["eps"])
    out = np.empty(am.shape, dtype=object)
    if hyper["variant"] == "l2":
        for i in np.ndindex(b, h, t):
            norm = mpmath.sqrt(mpmath.fsum(v * v for v in am[i]))
            div = norm if norm >= eps else eps
            for j in range(d):
                out[(*i, j)] = am[(*i, j)] / div if div != 0 else mpmath.nan
        return out
    if hyper["norm_axes"] == "head":
        for i in np.ndindex(b, h, t):
            r = 1 / mpmath.sqrt(mpmath.fsum(v * v for v in am[i]) / d + eps)
            for j in range(d):
                out[(*i, j)] = am[(*i, j)] * r * (1 if wm is None else wm[j])
        return out
    for bi in range(b):
        for ti in range(t):
            vals = [am[bi, hi, ti, j] for hi in range(h) for j in range(d)]
            r = 1 / mpmath.sqrt(mpmath.fsum(v * v for v in vals) / (h * d) + eps)
            for hi in range(h):
                for j in range(d):
                    out[bi, hi, ti, j] = am[bi, hi, ti, j] * r * (
                        1 if wm is None else wm[hi, j])
    return out


def mp_forward(primals: dict[str, np.ndarray | None], hyper: dict[str, Any]
               ) -> dict[str, np.ndarray]:
    q, k = primals["x"], primals["k"]
    assert q is not None
    assert k is not None
    gain = primals.get("gain")
    with mpmath.workdps(DPS):
        qh = _normalize(q, primals.get("q_weight"), hyper)
        kh = _normalize(k, primals.get("k_weight"), hyper)
        c = mpmath.mpf(hyper["logit_scale"]) * (1 if gain is None else mpmath.mpf(float(gain)))
        b, h, tq, d = qh.shape
        tk = kh.shape[2]
        y = np.empty((b, h, tq, tk), dtype=object)
        for bi, hi, i, j in np.ndindex(b, h, tq, tk):
            y[bi, hi, i, j] = c * mpmath.fsum(qh[bi, hi, i, e] * kh[bi, hi, j, e]
                                              for e in range(d))
    if hyper["layout"] == "bthd":
        qh, kh = qh.transpose(0, 2, 1, 3), kh.transpose(0, 2, 1, 3)
    return {"y": y, "q_hat": qh, "k_hat": kh}


# (variant, norm_axes, layout)
_CONFIGS = [("l2", "head", "bhtd"), ("l2", "head", "bthd"), ("rms", "head", "bhtd"),
            ("rms", "head", "bthd"), ("rms", "hidden", "bhtd"), ("rms", "hidden", "bthd")]
_DISTS = ["normal", "huge", "tiny", "zero_row", "offset_1e3", "decades", "one_dim", "h1_tq1",
          "eps_active"]


def _draw(rng: np.random.Generator, shape: tuple[int, ...], dist: str) -> np.ndarray:
    z = rng.standard_normal(shape)
    if dist == "huge":
        return 1e100 * z
    if dist == "tiny":
        return 1e-150 * z
    if dist == "offset_1e3":
        return 1e3 + z
    if dist == "decades":
        return z * 10.0 ** rng.integers(-6, 7, shape)
    if dist == "eps_active":
        return 1e-3 * z
    return z


def _shape(layout: str, b: int, h: int, t: int, d: int) -> tuple[int, ...]:
    return (b, h, t, d) if layout == "bhtd" else (b, t, h, d)


def proof_cases() -> list[ProofCase]:
    cases = []
    seed = 0
    for variant, axes, layout in _CONFIGS:
        for dist in _DISTS:
            seed += 1
            rng = seeded(12000 + seed)
            b, h, tq, tk, d = 2, 2, 3, 4, 4
            if dist == "one_dim":
                d = 1
            if dist == "h1_tq1":
                b, h, tq, tk = 1, 1, 1, 5
            q = _draw(rng, _shape(layout, b, h, tq, d), dist)
            k = _draw(rng, _shape(layout, b, h, tk, d), dist)
            if dist == "zero_row":
                if layout == "bhtd":
                    q[0, 1, 2, :] = 0.0
                    k[1, 0, 0, :] = 0.0
                else:
                    q[0, 2, :, :] = 0.0
                    k[1, 0, :, :] = 0.0
            eps = {"eps_active": 1e-2, "zero_row": 1e-6}.get(dist, [1e-12, 1e-6, 0.0][seed % 3])
            if dist == "tiny" and variant == "l2":
                eps = 0.0  # the norm is ~1e-150: any positive eps above it clamps every row
            wshape = (h, d) if axes == "hidden" else (d,)
            weighted = variant == "rms" and seed % 4 != 0
            qw = 1.0 + 0.25 * rng.standard_normal(wshape) if weighted else None
            kw = 1.0 + 0.25 * rng.standard_normal(wshape) if weighted else None
            learned = variant == "l2" and seed % 2 == 0
            gain = np.array(abs(rng.standard_normal()) * 4.0 + 1.0) if learned else None
            scale = 1.0 / float(np.sqrt(d)) if variant == "rms" else [1.0, 10.0, 2.5][seed % 3]
            # offset_1e3 rows are nearly parallel: finite differences lose the O(1e-3) derivative
            small = dist in ("normal", "eps_active", "one_dim", "h1_tq1")
            cases.append(ProofCase(
                name=f"{variant}-{axes}-{layout}-{dist}",
                primals={"x": q, "k": k, "q_weight": qw, "k_weight": kw, "gain": gain},
                hyper={"variant": variant, "layout": layout, "norm_axes": axes,
                       "logit_scale": scale, "eps": eps},
                fd=small, fd_step=1e-4 if dist == "eps_active" else 1e-3))
    return cases
