"""Ghost batch normalization: batch norm on contiguous ghost batches of ``ghost_batch_size``.

Training views ``x`` as ``(G, B, C, *S)`` (``B = ghost_batch_size``, ghost index outer) and
normalizes each (ghost, channel) set with its own two-pass statistics, which makes every
derivative batch norm's within one ghost batch. The running statistics move once per call::

    running_mean' = (1 - f) running_mean + f mean_g(mean[g])
    running_var'  = (1 - f) running_var  + f mean_g(var[g]) * n/(n-1)     ("unbiased")

with ``n = B * prod(S)``, one ghost batch's count per channel. Evaluation is batch norm's: the
running statistics normalize every sample and the batch is not split.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._batch_norm import BATCH_NORM
from ._geometry import Geometry
from ._moments import affine, moment_jvp, moment_second_order, moment_vjp, normalize
from ._numerics import Normalized, Numerics, hyper_value
from ._precision import Num, Precision

_METHOD = "ghost_batch_norm"


def _training(hyper: Mapping[str, Any]) -> bool:
    return bool(hyper_value(hyper, "training", _METHOD))


def _check_eval(inputs: Mapping[str, Num | None], hyper: Mapping[str, Any]) -> None:
    """Evaluation ignores the split, but the hyperparameters still mean what they say."""
    size = hyper_value(hyper, "ghost_batch_size", _METHOD)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"argument 'ghost_batch_size': got {size!r}, expected an integer >= 1")
    x = inputs["x"]
    assert x is not None
    if int(hyper.get("channel_axis", 1)) % x.ndim == 0:
        raise ValueError("argument 'channel_axis': got the batch axis 0, expected another axis")


@dataclass(frozen=True)
class GhostBatchNorm:
    """The ghost_batch_norm method (see the module docstring)."""

    primals: tuple[str, ...] = ("x", "weight", "bias")
    state: tuple[str, ...] = ("running_mean", "running_var")

    def _prepare(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                 hyper: Mapping[str, Any]) -> tuple[Geometry, Normalized]:
        x = inputs["x"]
        assert x is not None
        geom = nx.ghost_geometry(x.shape, hyper_value(hyper, "ghost_batch_size", _METHOD),
                                 hyper.get("channel_axis", 1))
        eps = prec.scalar(float(hyper_value(hyper, "eps", _METHOD)))
        return geom, normalize(nx, prec, geom.to_view(x), geom.axes, eps, center=True)

    def forward(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                hyper: Mapping[str, Any]) -> dict[str, Num]:
        if not _training(hyper):
            _check_eval(inputs, hyper)
            return BATCH_NORM.forward(nx, prec, inputs, hyper)
        geom, nrm = self._prepare(nx, prec, inputs, hyper)
        y = geom.from_view(affine(geom, nrm.z, inputs.get("weight"), inputs.get("bias")))
        out = {"y": y, "mean": geom.stat(nrm.mean), "var": geom.stat(nrm.var),
               "rstd": geom.stat(nrm.rstd)}
        rm, rv = inputs.get("running_mean"), inputs.get("running_var")
        if rm is None and rv is None:
            return out
        if rm is None or rv is None:
            raise ValueError("argument 'inputs': got only one of running_mean/running_var, "
                             "expected both or neither")
        tracked = int(hyper_value(hyper, "num_batches_tracked", _METHOD, 0))
        weight = hyper_value(hyper, "batch_stat_weight", _METHOD)
        if weight != "cumulative" and (
                isinstance(weight, (bool, str)) or not isinstance(weight, (int, float, np.floating))
                or not 0.0 <= float(weight) <= 1.0):
            raise ValueError(f"argument 'batch_stat_weight': got {weight!r}, expected a number "
                             "in [0, 1] or 'cumulative'")
        f = prec.scalar(nx.batch_stat_factor(weight, tracked))
        estimator = hyper_value(hyper, "running_var_estimator", _METHOD)
        if estimator not in ("biased", "unbiased"):
            raise ValueError(f"argument 'running_var_estimator': got {estimator!r}, expected "
                             "'biased' or 'unbiased'")
        if estimator == "unbiased" and geom.n == 1:
            raise ValueError(f"argument 'ghost_batch_size': got {hyper['ghost_batch_size']} "
                             f"for x of shape {geom.shape}: one value per channel in each ghost "
                             "batch, expected n >= 2 for running_var_estimator='unbiased'")
        # the estimator's n is one ghost batch's count, the size of the set each var is over
        sample = nx.running_var_sample(out["var"], geom.n, estimator)
        out["running_mean"], out["running_var"] = nx.ghost_running_update(
            rm, rv, out["mean"], sample, f, prec)
        out["num_batches_tracked"] = np.asarray(tracked + 1, dtype=np.float64)
        return out

    def vjp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], g: Num) -> dict[str, Num]:
        if not _training(hyper):
            _check_eval(inputs, hyper)
            return BATCH_NORM.vjp(nx, prec, inputs, hyper, g)
        geom, nrm = self._prepare(nx, prec, inputs, hyper)
        return moment_vjp(nx, geom, nrm, g, inputs.get("weight"), inputs.get("bias"),
                          center=True)

    def jvp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], t: Mapping[str, Num]) -> Num:
        if not _training(hyper):
            _check_eval(inputs, hyper)
            return BATCH_NORM.jvp(nx, prec, inputs, hyper, t)
        geom, nrm = self._prepare(nx, prec, inputs, hyper)
        return moment_jvp(geom, nrm, inputs.get("weight"), t, center=True)

    def second_order(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                     hyper: Mapping[str, Any], g: Num, t: Mapping[str, Num]) -> dict[str, Num]:
        if not _training(hyper):
            _check_eval(inputs, hyper)
            return BATCH_NORM.second_order(nx, prec, inputs, hyper, g, t)
        geom, nrm = self._prepare(nx, prec, inputs, hyper)
        return moment_second_order(nx, geom, nrm, g, inputs.get("weight"), inputs.get("bias"),
                                   t, center=True)


GHOST_BATCH_NORM = GhostBatchNorm()
