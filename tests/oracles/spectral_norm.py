"""mpmath oracle and proof cases for spectral_norm, written from the spec's equations.

Exact mode takes sigma from ``mpmath.svd_r`` at ``DPS`` digits; power-iteration mode runs the
iteration (``N(a) = a / max(||a||, eps)``) in mpmath. Only power-iteration *evaluation* cases
and exact cases with a simple top singular value are finite-difference cases: in a training
call u and v move with W, while the spec holds them constant for the derivatives.
"""

from __future__ import annotations

from typing import Any

import mpmath
import numpy as np

from . import DPS, ProofCase, mp_array, seeded


def _matrix(w: np.ndarray, dim: int) -> np.ndarray:
    d = dim % w.ndim
    return np.moveaxis(w, d, 0).reshape(w.shape[d], -1)


def _normalize(a: list[Any], eps: Any) -> list[Any]:
    norm = mpmath.sqrt(mpmath.fsum(x * x for x in a))
    den = max(norm, eps)
    return [x / den for x in a]


def _mv(m: np.ndarray, b: list[Any]) -> list[Any]:
    return [mpmath.fsum(m[i, j] * b[j] for j in range(m.shape[1])) for i in range(m.shape[0])]


def mp_forward(primals: dict[str, np.ndarray | None], hyper: dict[str, Any]
               ) -> dict[str, np.ndarray]:
    w = primals["x"]
    assert w is not None
    with mpmath.workdps(DPS):
        wm = mp_array(w)
        m = _matrix(wm, hyper["dim"])
        out: dict[str, np.ndarray] = {}
        if hyper["mode"] == "exact":
            values = mpmath.svd_r(mpmath.matrix(m.tolist()), compute_uv=False)
            sigma = max(abs(values[i]) for i in range(values.rows))
        else:
            u = [mpmath.mpf(float(a)) for a in hyper["u"]]
            v = [mpmath.mpf(float(a)) for a in hyper["v"]]
            if hyper["training"]:
                eps = mpmath.mpf(hyper["eps"])
                for _ in range(hyper["n_power_iterations"]):
                    if hyper["update_order"] == "v_first":
                        v = _normalize(_mv(m.T, u), eps)
                        u = _normalize(_mv(m, v), eps)
                    else:
                        u = _normalize(_mv(m, v), eps)
                        v = _normalize(_mv(m.T, u), eps)
                out["u"] = np.array(u, dtype=object)
                out["v"] = np.array(v, dtype=object)
            sigma = mpmath.fsum(a * b for a, b in zip(u, _mv(m, v), strict=True))
        y = np.empty(w.shape, dtype=object)
        for idx in np.ndindex(*w.shape):
            y[idx] = wm[idx] / sigma if sigma != 0 else mpmath.mpf("nan")
        out["y"] = y
        out["sigma"] = np.array(sigma, dtype=object)
    return out


# (name, shape, dim): linear (O, I), convolution (O, I, kh, kw), transposed convolution
# (I, O, kh, kw) with dim 1, a 3-d weight viewed along its last axis
_LAYOUTS = [
    ("linear", (4, 3), 0),
    ("linear-wide", (3, 7), 0),
    ("conv", (4, 2, 3, 3), 0),
    ("convT", (2, 3, 2, 2), 1),
    ("last-axis", (2, 3, 4), -1),
]


def _weight(rng: np.random.Generator, shape: tuple[int, ...], dim: int, kind: str
            ) -> np.ndarray:
    d = dim % len(shape)
    h = shape[d]
    rest = tuple(s for i, s in enumerate(shape) if i != d)
    wcols = int(np.prod(rest))
    if kind == "rank1":
        m = np.outer(rng.standard_normal(h), rng.standard_normal(wcols))
    elif kind == "close":
        # singular values 1, 0.97, 0.5, ... in random orthogonal bases
        k = min(h, wcols)
        s = np.concatenate([[1.0, 0.97], np.linspace(0.5, 0.1, max(k - 2, 0))])[:k]
        qa, _ = np.linalg.qr(rng.standard_normal((h, h)))
        qb, _ = np.linalg.qr(rng.standard_normal((wcols, wcols)))
        m = qa[:, :k] @ np.diag(s) @ qb[:, :k].T
    else:
        scale = {"normal": 1.0, "tiny": 1e-150, "huge": 1e100, "small": 1e-7}[kind]
        m = scale * rng.standard_normal((h, wcols))
    return np.moveaxis(m.reshape((h, *rest)), 0, d)


def proof_cases() -> list[ProofCase]:
    cases: list[ProofCase] = []
    kinds = ["normal", "rank1", "close", "tiny", "huge"]
    for i, (lname, shape, dim) in enumerate(_LAYOUTS):
        d = dim % len(shape)
        h = shape[d]
        wcols = int(np.prod(shape)) // h
        for j, kind in enumerate(kinds):
            rng = seeded(13000 + 100 * i + j)
            w = _weight(rng, shape, dim, kind)
            smooth = kind in ("normal", "close") and w.size <= 64
            cases.append(ProofCase(name=f"exact-{kind}-{lname}", primals={"x": w},
                                   hyper={"dim": dim, "mode": "exact", "training": True},
                                   fd=smooth, fd_step=1e-4, tags=frozenset({"exact", kind})))
            u0, v0 = rng.standard_normal(h), rng.standard_normal(wcols)
            order = "v_first" if (i + j) % 2 == 0 else "u_first"
            iters = 1 + (i + 2 * j) % 3
            eps = 0.0 if kind == "tiny" else 1e-12
            power = {"dim": dim, "mode": "power_iteration", "n_power_iterations": iters,
                     "update_order": order, "eps": eps, "u": u0, "v": v0}
            cases.append(ProofCase(name=f"power-{order}-n{iters}-{kind}-{lname}",
                                   primals={"x": w}, hyper={**power, "training": True},
                                   fd=False, tags=frozenset({"power", kind})))
            cases.append(ProofCase(name=f"eval-{kind}-{lname}", primals={"x": w},
                                   hyper={**power, "training": False},
                                   fd=kind == "normal" and w.size <= 64, fd_step=1e-4,
                                   tags=frozenset({"eval", kind})))
    rng = seeded(13900)
    hadamard = np.array([[1.0, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]])
    extra = [
        ("exact-hadamard-repeated", hadamard, {"mode": "exact", "training": True}),
        ("exact-zero", np.zeros((3, 4)), {"mode": "exact", "training": True}),
        ("power-zero", np.zeros((3, 4)),
         {"mode": "power_iteration", "training": True, "n_power_iterations": 2,
          "update_order": "v_first", "eps": 1e-12, "u": rng.standard_normal(3),
          "v": rng.standard_normal(4)}),
        ("power-eps-branch", 1e-7 * rng.standard_normal((3, 4)),
         {"mode": "power_iteration", "training": True, "n_power_iterations": 1,
          "update_order": "v_first", "eps": 1e-6, "u": rng.standard_normal(3),
          "v": rng.standard_normal(4)}),
        ("power-many-iterations", rng.standard_normal((5, 4)),
         {"mode": "power_iteration", "training": True, "n_power_iterations": 20,
          "update_order": "u_first", "eps": 1e-12, "u": rng.standard_normal(5),
          "v": rng.standard_normal(4)}),
        ("exact-column", rng.standard_normal((6, 1)), {"mode": "exact", "training": True}),
        ("exact-row", rng.standard_normal((1, 6)), {"mode": "exact", "training": True}),
    ]
    for name, w, hyper in extra:
        cases.append(ProofCase(name=name, primals={"x": w}, hyper={"dim": 0, **hyper},
                               fd=name in ("exact-column", "exact-row"), fd_step=1e-4,
                               tags=frozenset({name})))
    return cases
