"""mpmath oracle and proof cases for power_norm, written from the spec's equations."""

from __future__ import annotations

from typing import Any

import mpmath
import numpy as np

from . import DPS, ProofCase, mp_array, rows, seeded


def _maybe_mp(a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None else mp_array(a)


def mp_forward(primals: dict[str, np.ndarray | None], hyper: dict[str, Any]
               ) -> dict[str, np.ndarray]:
    x = primals["x"]
    assert x is not None
    axis = hyper["axis"] % x.ndim
    reduce_axes = tuple(range(axis, x.ndim))
    with mpmath.workdps(DPS):
        eps = mpmath.mpf(hyper["eps"])
        p = mpmath.mpf(hyper["p"])
        xm = mp_array(x)
        w, b = _maybe_mp(primals.get("weight")), _maybe_mp(primals.get("bias"))
        y = np.empty(x.shape, dtype=object)
        mean_power = np.empty(x.shape[:axis], dtype=object)
        rscale = np.empty(x.shape[:axis], dtype=object)
        for idx, vals in rows(xm, reduce_axes):
            # the power mean's p-th power: (1/n) sum |x|^p, then eps inside the 1/p-th root
            mp_ = mpmath.fsum(abs(v) ** p for v in vals) / len(vals)
            d = mp_ + eps
            # an all-zero row with eps = 0: 0^(-1/p) = +inf and y = 0 * inf = NaN (IEEE)
            r = mpmath.inf if d == 0 else d ** (-1 / p)
            mean_power[idx], rscale[idx] = mp_, r
            for tail in np.ndindex(*x.shape[axis:]):
                v = xm[idx + tail] * r
                v = v if w is None else v * w[tail]
                y[idx + tail] = v if b is None else v + b[tail]
    return {"y": y, "mean_power": mean_power, "rscale": rscale}


_SHAPES = [((3, 7), -1), ((2, 13), -1), ((4, 1), -1), ((2, 3, 4), 1), ((1, 1031), -1),
           ((6,), 0), ((2, 2, 3, 3), 2), ((5, 2), 0)]
_PS = [0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 0.25, 2.5]
_DISTS = ["normal", "uniform_pos", "tiny", "huge", "sparse", "zero_row", "one_nonzero"]
_EPS = [1e-5, 1e-12, 0.1, 0.0]


def _draw(rng: np.random.Generator, shape: tuple[int, ...], dist: str) -> np.ndarray:
    base = rng.standard_normal(shape)
    if dist == "uniform_pos":
        return rng.uniform(0.5, 2.0, shape) * np.where(rng.random(shape) < 0.5, -1.0, 1.0)
    if dist == "tiny":
        return 1e-150 * base
    if dist == "huge":
        return 1e100 * base
    if dist == "sparse":  # exact zeros inside rows: the derivative convention at x = 0
        return np.where(rng.random(shape) < 0.4, 0.0, base)
    if dist == "zero_row":  # the first reduction set is all zeros
        out = base.copy()
        out.reshape(-1)[: max(1, out.size // max(1, out.shape[0]))] = 0.0
        return out
    if dist == "one_nonzero":  # each set has one nonzero value
        flat = np.zeros(shape).reshape(shape[0] if len(shape) > 1 else 1, -1)
        flat[:, 0] = rng.normal(0.0, 3.0, flat.shape[0])
        return flat.reshape(shape)
    return base


def proof_cases() -> list[ProofCase]:
    cases = []
    k = 0
    for shape, axis in _SHAPES:
        for dist in _DISTS:
            k += 1
            rng = seeded(3000 + k)
            p = _PS[k % len(_PS)]
            x = _draw(rng, shape, dist)
            pshape = shape[axis % len(shape):]
            affine = k % 3
            weight = rng.normal(1.0, 0.5, pshape) if affine >= 1 else None
            bias = rng.normal(0.0, 0.5, pshape) if affine == 2 else None
            eps = _EPS[k % 4]
            if dist in ("zero_row", "sparse", "one_nonzero") and eps == 0.0 and p < 1:
                eps = 1e-5  # 0 * inf only where the row is all zeros; keep the rest finite
            n = int(np.prod(pshape))
            # Richardson differences need smooth inputs: away from x = 0 (|x|^p has a kink
            # there for p <= 1 and unbounded higher derivatives for non-integer p)
            smooth = (dist == "uniform_pos" or (dist == "normal" and p >= 2)) and (
                x.size <= 64 and n > 1)
            cases.append(ProofCase(
                name=f"{dist}-{'x'.join(map(str, shape))}-axis={axis}-p={p:g}-affine={affine}"
                     f"-eps={eps:g}",
                primals={"x": x, "weight": weight, "bias": bias},
                hyper={"p": p, "axis": axis, "eps": eps},
                fd=smooth, fd_step=1e-3))
    # every p on one small smooth input, so that each order has a finite-difference proof
    for j, p in enumerate(_PS):
        rng = seeded(3500 + j)
        x = rng.uniform(0.5, 2.0, (2, 5)) * np.where(rng.random((2, 5)) < 0.5, -1.0, 1.0)
        cases.append(ProofCase(
            name=f"every_p-2x5-p={p:g}", primals={"x": x, "weight": rng.normal(1.0, 0.5, 5),
                                                  "bias": rng.normal(0.0, 0.5, 5)},
            hyper={"p": p, "axis": -1, "eps": 1e-5}, fd=True, fd_step=1e-3))
    return cases
