"""mpmath oracle and proof cases for adaptive_instance_norm, written from the spec's equations."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import mpmath
import numpy as np

from . import DPS, ProofCase, mp_array, seeded
from .layer_norm import _DISTS as DISTS
from .layer_norm import _draw as draw


def _stats(a: np.ndarray, ch: int, estimator: str) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """Per (sample, channel): the mean and the variance of ``estimator``."""
    am = mp_array(a)
    members: dict[tuple[int, int], list[Any]] = defaultdict(list)
    for idx in np.ndindex(*a.shape):
        members[(idx[0], idx[ch])].append(am[idx])
    mean, var = {}, {}
    for key, vals in members.items():
        mu = mpmath.fsum(vals) / len(vals)
        divisor = len(vals) - 1 if estimator == "unbiased" else len(vals)
        mean[key] = mu
        var[key] = mpmath.fsum((u - mu) ** 2 for u in vals) / divisor
    return mean, var


def mp_forward(primals: dict[str, np.ndarray | None], hyper: dict[str, Any]
               ) -> dict[str, np.ndarray]:
    x, style = primals["x"], primals["style"]
    assert x is not None
    assert style is not None
    ch = hyper.get("channel_axis", 1) % x.ndim
    chs = hyper.get("channel_axis", 1) % style.ndim
    est = hyper["variance_estimator"]
    with mpmath.workdps(DPS):
        eps = mpmath.mpf(hyper["eps"])
        mean, var = _stats(x, ch, est)
        smean, svar = _stats(style, chs, est)
        shape = (x.shape[0], x.shape[ch])
        out = {k: np.empty(shape, dtype=object)
               for k in ("mean", "var", "rstd", "style_mean", "style_var", "style_std")}
        for key in np.ndindex(*shape):
            out["mean"][key], out["var"][key] = mean[key], var[key]
            out["rstd"][key] = 1 / mpmath.sqrt(var[key] + eps)
            out["style_mean"][key], out["style_var"][key] = smean[key], svar[key]
            out["style_std"][key] = mpmath.sqrt(svar[key] + eps)
        xm = mp_array(x)
        y = np.empty(x.shape, dtype=object)
        for idx in np.ndindex(*x.shape):
            key = (idx[0], idx[ch])
            y[idx] = (out["style_std"][key] * (xm[idx] - mean[key]) * out["rstd"][key]
                      + smean[key])
    out["y"] = y
    return out


# (content shape, style shape, channel_axis): style spatial sizes differ from the content's in
# count and rank-preserving shape; channels-last; 1-3 spatial axes; n = 2 (the smallest unbiased).
_SHAPES = [((2, 3, 7), (2, 3, 5), 1), ((1, 2, 13), (1, 2, 13), 1), ((2, 2, 2), (2, 2, 9), 1),
           ((2, 3, 4, 3), (2, 3, 2, 5), 1), ((2, 4, 3, 2), (2, 5, 3, 2), -1),
           ((1, 2, 2, 2, 3), (1, 2, 3, 1, 2), 1), ((2, 6, 3), (2, 4, 3), 2),
           ((1, 2, 1031), (1, 2, 17), 1)]
_EPS = [1e-5, 0.1, 1e-12]
_ESTIMATORS = ("unbiased", "biased")


def proof_cases() -> list[ProofCase]:
    cases = []
    seed = 0
    for shape, sshape, channel_axis in _SHAPES:
        for dist in DISTS:
            seed += 1
            rng = seeded(11000 + seed)
            x = draw(rng, shape, dist)
            # the style's distribution differs from the content's, so that neither input's
            # scale is the output's by accident
            sdist = DISTS[(DISTS.index(dist) + 2 + seed) % len(DISTS)]
            style = draw(rng, sshape, sdist)
            est = _ESTIMATORS[seed % 2]
            eps = _EPS[seed % 3]
            smooth = (dist in ("normal", "offset_1e3", "uniform_pos")
                      and sdist in ("normal", "offset_1e3", "uniform_pos")
                      and x.size + style.size <= 80
                      # two content values per set: the finite differences are ill-conditioned
                      and x.size // (shape[0] * shape[channel_axis]) > 2)
            cases.append(ProofCase(
                name=(f"{dist}-{sdist}-{'x'.join(map(str, shape))}-style="
                      f"{'x'.join(map(str, sshape))}-channel_axis={channel_axis}-{est}"),
                primals={"x": x, "style": style},
                hyper={"channel_axis": channel_axis, "variance_estimator": est, "eps": eps},
                fd=smooth, fd_step=1e-3))
    # smooth cases for the finite-difference proofs, both estimators, several spatial axes
    for i, (shape, sshape, channel_axis) in enumerate(
            [((2, 2, 3), (2, 2, 4), 1), ((1, 3, 2, 2), (1, 3, 3), 1), ((2, 3, 2), (2, 2, 2), -1),
             ((1, 2, 5), (1, 2, 2), 1)]):
        for est in _ESTIMATORS:
            rng = seeded(11500 + 2 * i + (est == "biased"))
            cases.append(ProofCase(
                name=f"fd-{'x'.join(map(str, shape))}-style={'x'.join(map(str, sshape))}-{est}",
                primals={"x": rng.normal(0.5, 2.0, shape), "style": rng.normal(-1.0, 3.0, sshape)},
                hyper={"channel_axis": channel_axis, "variance_estimator": est, "eps": 0.01},
                fd=True, fd_step=1e-3))
    return cases
