"""mpmath oracle and proof cases for gradnorm, written from the spec's equations.

Chen et al. (2018), one step: G_i = w_i g_i, Gbar = mean G, r_i = (L_i/L0_i) / mean_j(L_j/L0_j),
target c_i = Gbar r_i^alpha (constant for the update), dL_grad/dw_i = sign(G_i - c_i) g_i,
w' = w - lr * grad, renormalized to sum T.
"""

from __future__ import annotations

from typing import Any

import mpmath
import numpy as np

from . import DPS, ProofCase, mp_array, seeded


def mp_forward(primals: dict[str, np.ndarray | None], hyper: dict[str, Any]
               ) -> dict[str, np.ndarray]:
    x, l0 = primals["x"], primals["initial_losses"]
    assert x is not None
    assert l0 is not None
    n = x.shape[1]
    with mpmath.workdps(DPS):
        g, loss = list(mp_array(x[0])), list(mp_array(x[1]))
        init = list(mp_array(np.asarray(l0)))
        w = list(mp_array(np.asarray(hyper["weights"], dtype=np.float64)))
        alpha, lr = mpmath.mpf(hyper["alpha"]), mpmath.mpf(hyper["lr"])
        big = [w[i] * g[i] for i in range(n)]
        gbar = mpmath.fsum(big) / n
        ratio = [loss[i] / init[i] for i in range(n)]
        mean_ratio = mpmath.fsum(ratio) / n
        rel = [q / mean_ratio for q in ratio]
        # 0**0 = 1 (the IEEE pow convention the spec adopts)
        target = [gbar * (mpmath.mpf(1) if alpha == 0 else mpmath.power(q, alpha)) for q in rel]
        diff = [big[i] - target[i] for i in range(n)]
        sign = [mpmath.mpf(0) if d == 0 else mpmath.sign(d) for d in diff]
        grad = [sign[i] * g[i] for i in range(n)]
        out: dict[str, np.ndarray] = {
            "grad_norm_loss": np.array(mpmath.fsum(abs(d) for d in diff), dtype=object),
            "weighted_norms": np.array(big, dtype=object),
            "targets": np.array(target, dtype=object),
            "weight_grad": np.array(grad, dtype=object),
        }
        if not hyper["training"]:
            out["y"] = np.array(w, dtype=object)
            return out
        v = [w[i] - lr * grad[i] for i in range(n)]
        total = mpmath.fsum(v)
        y = np.array([n * vi / total for vi in v], dtype=object)
        out.update(y=y, weights=y.copy())
    return out


_ALPHAS = (0.0, 0.12, 1.5, 1.0)
_LRS = (0.025, 0.1, 0.5)


def _random(rng: np.random.Generator, n: int, dist: str) -> tuple[np.ndarray, np.ndarray,
                                                                   np.ndarray]:
    """``x`` (norms, losses), initial losses, weights for one stress kind."""
    g = rng.uniform(0.2, 3.0, n)
    loss = rng.uniform(0.2, 2.0, n)
    init = rng.uniform(0.5, 3.0, n)
    w = rng.uniform(0.5, 1.5, n)
    if dist == "huge-norms":
        g = g * 1e100
    elif dist == "tiny-norms":
        g = g * 1e-100
    elif dist == "spread-norms":
        g = 10.0 ** rng.uniform(-8.0, 8.0, n)
    elif dist == "huge-losses":
        loss, init = loss * 1e150, init * 1e150
    elif dist == "tiny-losses":
        loss, init = loss * 1e-150, init * 1e-150
    elif dist == "zero-norm":
        g[0] = 0.0
    elif dist == "zero-loss":
        loss[-1] = 0.0
    elif dist == "unequal-weights":
        w = 10.0 ** rng.uniform(-2.0, 1.0, n)
    return np.stack([g, loss]), init, w


_DISTS = ("plain", "huge-norms", "tiny-norms", "spread-norms", "huge-losses", "tiny-losses",
          "zero-norm", "zero-loss", "unequal-weights")


def _at_target() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Task 2 of 3 exactly at its target for every alpha: G = (1, 2, 3), Gbar = 2,
    r = (1.5, 1, 0.5); tasks 1 and 3 are below and above theirs."""
    x = np.array([[1.0, 2.0, 3.0], [0.75, 1.0, 0.75]])
    return x, np.array([0.5, 1.0, 1.5]), np.ones(3)


def _margin(x: np.ndarray, init: np.ndarray, w: np.ndarray, alpha: float) -> float:
    """Smallest |G_i - c_i| relative to max G (a kink is where it is 0)."""
    n = w.size
    big = w * x[0]
    ratio = x[1] / init
    target = big.mean() * (ratio / ratio.mean()) ** alpha
    return float(np.min(np.abs(big - target)) / max(np.max(big), 1e-300)) if n else 0.0


def proof_cases() -> list[ProofCase]:
    cases: list[ProofCase] = []
    k = 0
    for dist in _DISTS:
        sizes = (1, 2, 3, 4, 5, 2, 3, 4, 5) if dist == "plain" else (2, 3, 4, 5)
        for rep, n in enumerate(sizes):
            rng = seeded(12400 + k)
            alpha = _ALPHAS[k % len(_ALPHAS)]
            lr = _LRS[k % len(_LRS)]
            x, init, w = _random(rng, n, dist)
            training = k % 7 != 6
            smooth = (dist in ("plain", "unequal-weights") and n > 1
                      and _margin(x, init, w, alpha) > 0.05)
            cases.append(ProofCase(
                name=f"{dist}-{rep}-T{n}-alpha{alpha:g}-lr{lr:g}-{'train' if training else 'eval'}",
                primals={"x": x, "initial_losses": init},
                hyper={"training": training, "weights": w, "alpha": alpha, "lr": lr},
                fd=smooth and training, fd_step=1e-4, tags=frozenset({dist})))
            k += 1
    for alpha in _ALPHAS:
        x, init, w = _at_target()
        cases.append(ProofCase(name=f"task-at-target-alpha{alpha:g}",
                               primals={"x": x, "initial_losses": init},
                               hyper={"training": True, "weights": w, "alpha": alpha, "lr": 0.1},
                               fd=False, tags=frozenset({"at-target"})))
    # every task at its target: equal G and equal loss ratios, no update at all
    for n in (2, 4):
        x = np.stack([np.full(n, 1.5), np.full(n, 0.75)])
        cases.append(ProofCase(name=f"all-at-target-T{n}",
                               primals={"x": x, "initial_losses": np.full(n, 2.0)},
                               hyper={"training": True, "weights": np.ones(n), "alpha": 1.5,
                                      "lr": 0.5},
                               fd=False, tags=frozenset({"at-target"})))
    # a large step: lr * g comparable to w, the renormalization does most of the work
    rng = seeded(12499)
    for n in (2, 3, 4):
        x, init, w = _random(rng, n, "plain")
        cases.append(ProofCase(name=f"large-step-T{n}",
                               primals={"x": x, "initial_losses": init},
                               hyper={"training": True, "weights": w, "alpha": 0.12, "lr": 0.2},
                               fd=_margin(x, init, w, 0.12) > 0.05, fd_step=1e-4,
                               tags=frozenset({"large-step"})))
    return cases
