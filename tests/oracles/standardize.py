"""mpmath oracle and proof cases for standardize, written from the spec's equations."""

from __future__ import annotations

from typing import Any

import mpmath
import numpy as np

from . import DPS, ProofCase, mp_array, rows, seeded


def _denom(v: Any, hyper: dict[str, Any]) -> Any:
    eps = mpmath.mpf(hyper["eps"])
    if hyper["zero_variance"] == "unit_scale" and v == 0:
        return mpmath.mpf(1)
    if hyper["eps_placement"] == "inside_sqrt":
        return mpmath.sqrt(v + eps)
    return mpmath.sqrt(v) + eps


def mp_forward(primals: dict[str, np.ndarray | None], hyper: dict[str, Any]
               ) -> dict[str, np.ndarray]:
    x = primals["x"]
    assert x is not None
    axes = tuple(sorted(a % x.ndim for a in hyper["axis"]))
    keep = tuple(i for i in range(x.ndim) if i not in axes)
    stat_shape = tuple(x.shape[i] for i in keep)
    with mpmath.workdps(DPS):
        xm = mp_array(x)
        mean = np.empty(stat_shape, dtype=object)
        var = np.empty(stat_shape, dtype=object)
        out: dict[str, np.ndarray] = {}
        if hyper["training"]:
            for idx, vals in rows(xm, axes):
                n = len(vals)
                mean[idx] = mpmath.fsum(vals) / n
                var[idx] = mpmath.fsum((u - mean[idx]) ** 2 for u in vals) / (n - hyper["ddof"])
            rstd = np.empty(stat_shape, dtype=object)
            for idx in np.ndindex(*stat_shape):
                rstd[idx] = 1 / _denom(var[idx], hyper)
            out.update(mean=mean, var=var, rstd=rstd)
        else:
            mean = mp_array(np.asarray(hyper["mean"], dtype=np.float64))
            var = mp_array(np.asarray(hyper["var"], dtype=np.float64))
        y = np.empty(x.shape, dtype=object)
        for idx in np.ndindex(*x.shape):
            f = tuple(idx[i] for i in keep)
            y[idx] = (xm[idx] - mean[f]) / _denom(var[f], hyper)
        out["y"] = y
    return out


# (name, shape, axis)
_LAYOUTS = [
    ("sklearn", (9, 3), [0]),
    ("sklearn-n2", (2, 4), [0]),
    ("rows", (3, 7), [1]),
    ("mvn", (2, 3, 2, 3), [0, 2, 3]),
    ("mvn-last", (2, 3, 4, 2), [0, 1, 2]),
    ("spatial", (2, 2, 3, 4), [2, 3]),
    ("neg-axes", (3, 5, 2), [-1, 0]),
    ("all", (4, 5), [0, 1]),
    ("large", (300, 2), [0]),
]
_DISTS = ["normal", "offset_1e3", "offset_1e8", "tiny", "huge", "const_feature"]
_LOC_SCALE = {"normal": (0.0, 1.0), "offset_1e3": (1e3, 1.0), "offset_1e8": (-1e8, 1.0),
              "tiny": (0.0, 1e-150), "huge": (0.0, 1e100), "const_feature": (0.5, 2.0)}
# (eps, eps_placement, zero_variance, ddof): scikit-learn, ONNX MVN, Keras-like and mixes
_CONVENTIONS = [
    (0.0, "inside_sqrt", "unit_scale", 0),      # scikit-learn StandardScaler
    (1e-9, "outside_sqrt", "ieee", 0),          # ONNX MeanVarianceNormalization
    (1e-7, "inside_sqrt", "ieee", 0),           # keras.layers.Normalization
    (1e-3, "outside_sqrt", "unit_scale", 1),
    (0.1, "inside_sqrt", "ieee", 1),
]


def _draw(rng: np.random.Generator, shape: tuple[int, ...], axes: list[int], dist: str
          ) -> np.ndarray:
    loc, scale = _LOC_SCALE[dist]
    x = loc + scale * rng.standard_normal(shape)
    if dist == "const_feature":
        ndim = len(shape)
        red = sorted(a % ndim for a in axes)
        keep = [i for i in range(ndim) if i not in red]
        moved = np.moveaxis(x, keep, list(range(len(keep))))  # a view
        moved[(0,) * len(keep)] = -7.25   # the first feature is constant
    return x


def proof_cases() -> list[ProofCase]:
    cases = []
    for i, (lname, shape, axes) in enumerate(_LAYOUTS):
        for j, dist in enumerate(_DISTS):
            seed = 11000 + 100 * i + j
            rng = seeded(seed)
            x = _draw(rng, shape, axes, dist)
            eps, placement, zero, ddof = _CONVENTIONS[(i + j) % len(_CONVENTIONS)]
            if dist == "const_feature" and eps == 0.0 and zero == "ieee":
                eps = 1e-5
            hyper: dict[str, Any] = {"axis": axes, "ddof": ddof, "eps": eps,
                                     "eps_placement": placement, "zero_variance": zero}
            apply = (i + 2 * j) % 3 == 2
            if apply:
                loc, scale = _LOC_SCALE[dist]
                ndim = len(shape)
                stat = tuple(shape[k] for k in range(ndim) if k not in
                             {a % ndim for a in axes})
                var = (scale or 1.0) ** 2 * rng.uniform(0.5, 2.0, stat)
                if dist == "const_feature":
                    var.flat[0] = 0.0           # a constant feature was fitted
                hyper.update(training=False, mean=loc + (scale or 1.0) *
                             rng.standard_normal(stat), var=var)
            else:
                hyper["training"] = True
            # the outside placement is not twice differentiable at a constant feature
            # n = 2 fits give y = +-1 whatever x is: J is ~0 and relative FD errors mean nothing
            smooth = dist in ("normal", "offset_1e3") and x.size <= 64 and lname != "sklearn-n2"
            cases.append(ProofCase(
                name=f"{dist}-{lname}-{'x'.join(map(str, shape))}-"
                     f"{'apply' if apply else 'fit'}-{placement}-{zero}-ddof{ddof}-eps{eps:g}",
                primals={"x": x}, hyper=hyper, fd=smooth, fd_step=1e-3,
                tags=frozenset({dist, lname, "apply" if apply else "fit"})))
    return cases
