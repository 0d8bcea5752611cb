"""mpmath oracle and proof cases for gradient_normalization, written from the spec's equations.

    y = x;   norm = sqrt(sum_j g_j^2) over the axes ``axis``;   grad_x = g / max(norm, eps)

The method is defined by its backward pass, so the oracle computes the normalized cotangent
(:func:`mp_vjp`) as well as the identity forward. Finite differences of the forward give the
identity, not the normalized cotangent: they prove nothing about this VJP
(:data:`FD_NOT_APPLICABLE`); tests/test_reference_gradient_normalization.py proves the VJP
against :func:`mp_vjp` and its properties (unit norm, direction, independence of x).
"""

from __future__ import annotations

from typing import Any

import mpmath
import numpy as np

from . import DPS, ProofCase, mp_array, rows, seeded

FD_NOT_APPLICABLE = ("gradient_normalization is defined by its backward pass: finite "
                     "differences of its identity forward would 'prove' the unnormalized "
                     "cotangent, so the VJP is proved against mp_vjp instead")


def _axes(hyper: dict[str, Any], ndim: int) -> tuple[int, ...]:
    axis = hyper["axis"]
    if isinstance(axis, str):
        axis = [int(a) for a in axis.split(",")]
    if isinstance(axis, int):
        axis = [axis]
    return tuple(sorted(a % ndim for a in axis))


def mp_forward(primals: dict[str, np.ndarray | None], hyper: dict[str, Any]
               ) -> dict[str, np.ndarray]:
    x = primals["x"]
    assert x is not None
    return {"y": mp_array(x)}


def _row(vals: np.ndarray, eps: Any) -> list[Any]:
    nan, zero = mpmath.mpf("nan"), mpmath.mpf(0)
    if any(mpmath.isnan(v) for v in vals):
        return [nan] * len(vals)
    if any(mpmath.isinf(v) for v in vals):
        # inf / inf = NaN at an infinite component, finite / inf = 0 elsewhere (IEEE).
        return [nan if mpmath.isinf(v) else zero * v for v in vals]
    norm = mpmath.sqrt(mpmath.fsum(v * v for v in vals))
    divisor = norm if norm >= eps else eps
    if divisor == 0:
        return [nan] * len(vals)  # eps = 0 and a zero gradient: 0 / 0
    return [v / divisor for v in vals]


def mp_vjp(primals: dict[str, np.ndarray | None], hyper: dict[str, Any], cotangent: np.ndarray
           ) -> dict[str, np.ndarray]:
    """The normalized cotangent, at ``DPS`` digits (an object array of mpf)."""
    g = cotangent
    axes = _axes(hyper, g.ndim)
    keep = tuple(i for i in range(g.ndim) if i not in axes)
    out = np.empty(tuple(g.shape[i] for i in keep + axes), dtype=object)
    with mpmath.workdps(DPS):
        eps = mpmath.mpf(hyper["eps"])
        for idx, vals in rows(mp_array(g), axes):
            out[idx] = np.array(_row(vals, eps), dtype=object).reshape(out.shape[len(keep):])
    return {"x": np.transpose(out, np.argsort(keep + axes))}


_LAYOUTS: list[tuple[tuple[int, ...], Any]] = [
    ((4, 6), [1]), ((4, 6), "0,1"), ((3, 5), [0]), ((2, 3, 4), [1, 2]), ((2, 3, 4), "0,2"),
    ((2, 3, 2, 2), [1, 2, 3]), ((7,), [0]), ((1, 9), -1), ((3, 1), [1]), ((2, 1031), [1]),
]
_GRADS = ["normal", "huge", "tiny", "subnormal", "mixed", "zero_row", "eps_active",
          "at_eps", "one_hot"]


def _grad(rng: np.random.Generator, shape: tuple[int, ...], kind: str, axes: tuple[int, ...]
          ) -> np.ndarray:
    g = rng.standard_normal(shape)
    if kind == "huge":
        return 1e300 * g  # squares overflow: only a scaled norm survives
    if kind == "tiny":
        return 1e-300 * g
    if kind == "subnormal":
        return 1e-310 * np.sign(g) * rng.integers(1, 50, shape)
    if kind == "mixed":
        return g * 10.0 ** rng.integers(-200, 200, shape)
    if kind == "zero_row":
        first = tuple(slice(0, 1) if i not in axes else slice(None) for i in range(len(shape)))
        g[first] = 0.0
        return g
    if kind == "eps_active":
        return 1e-9 * g  # norm < eps = 1e-6: g / eps
    if kind == "at_eps":
        v = np.zeros(shape)
        v[(0,) * len(shape)] = 1e-6  # norm exactly eps: both branches give g / eps
        return v
    if kind == "one_hot":
        v = np.zeros(shape)
        v[tuple(s - 1 for s in shape)] = -3.0
        return v
    return g


def cases() -> list[tuple[ProofCase, np.ndarray]]:
    """Every proof case with its cotangent (the forward test uses the cases alone)."""
    out: list[tuple[ProofCase, np.ndarray]] = []
    seed = 1200
    for i, (shape, axis) in enumerate(_LAYOUTS):
        for j, kind in enumerate(_GRADS):
            if (i + j) % 2 and kind not in ("zero_row", "huge", "tiny"):
                continue  # a lean cross product: every layout meets every hard gradient
            seed += 1
            rng = seeded(seed)
            hyper = {"axis": axis, "eps": 1e-6 if kind in ("eps_active", "at_eps")
                     else (0.0 if j % 3 == 0 else 1e-12)}
            axes = _axes(hyper, len(shape))
            x = rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 4)
            g = _grad(rng, shape, kind, axes)
            name = f"{kind}-{'x'.join(map(str, shape))}-axis={axis}-eps={hyper['eps']:g}"
            out.append((ProofCase(name, {"x": x}, hyper, fd=False), g))
    rng = seeded(1299)
    specials = [
        ("zero-eps=0", np.zeros((2, 3)), 0.0),        # 0 / 0: NaN
        ("zero-eps>0", np.zeros((2, 3)), 1e-12),      # stays zero
        ("nan", np.array([[1.0, np.nan, 2.0], [1.0, 2.0, 2.0]]), 1e-12),
        ("inf", np.array([[1.0, np.inf, 2.0], [3.0, 4.0, 0.0]]), 1e-12),
        ("neg_inf", np.array([[-np.inf, 1.0, 2.0], [3.0, 4.0, 0.0]]), 0.0),
    ]
    for name, g, eps in specials:
        x = rng.standard_normal(g.shape)
        out.append((ProofCase(name, {"x": x}, {"axis": [1], "eps": eps}, fd=False), g))
    # x itself may be anything: NaN and Inf pass through the forward and do not reach the VJP.
    x = np.array([[np.nan, np.inf, -np.inf, 0.0]])
    out.append((ProofCase("nonfinite-x", {"x": x}, {"axis": [1], "eps": 1e-12}, fd=False),
                rng.standard_normal((1, 4))))
    return out


def proof_cases() -> list[ProofCase]:
    return [c for c, _ in cases()]
