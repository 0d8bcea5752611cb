"""Synchronized batch normalization, worker by worker: per-shard moments merged by count.

The batch axis is split into the workers' shards (``shard_sizes``). Each worker computes its
own two-pass moments ``(n_i, mean_i, M2_i)`` in the compute dtype; the moments are merged with
the pairwise update (:meth:`Numerics.merge_moments`, workers in order, empty ones skipped)::

    n = n_A + n_B,  delta = mean_B - mean_A,  mean = mean_A + delta n_B/n,
    M2 = M2_A + M2_B + delta^2 n_A n_B / n

and every worker normalizes its shard with the merged ``mean`` and ``var = M2/n``. Derivatives
use global means, each the sum of the workers' partial sums (one all-reduce per sum on a real
machine), and parameter gradients are the sums of the workers' gradients. Every worker applies
the running update with the global count; the adapter checks that the workers' running
statistics agree, as a distributed adapter must, and returns them once.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._batch_norm import _factor
from ._geometry import Geometry
from ._moments import affine
from ._numerics import Numerics, hyper_value
from ._precision import Num, Precision, reduce_sum

_METHOD = "sync_batch_norm"


def shard_sizes(inputs: Mapping[str, Any], hyper: Mapping[str, Any], batch: int) -> list[int]:
    """The workers' shard sizes (an int64 input, or the reference's keyword), validated."""
    raw = inputs.get("shard_sizes", hyper.get("shard_sizes"))
    if raw is None:
        raise ValueError("argument 'inputs': got no 'shard_sizes', expected the size of each "
                         "worker's shard of the batch axis")
    arr = np.asarray(raw)
    if arr.dtype.kind not in "iu" or arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"argument 'shard_sizes': got {arr.tolist()!r} (dtype {arr.dtype}), "
                         "expected a non-empty 1-d integer array")
    sizes = [int(s) for s in arr]
    if min(sizes) < 0 or sum(sizes) != batch:
        raise ValueError(f"argument 'shard_sizes': got {sizes}, expected entries >= 0 summing "
                         f"to the batch size {batch}")
    return sizes


@dataclass(frozen=True)
class _Workers:
    """The view of ``x`` cut into the workers' shards along the batch axis (view axis 1)."""

    geom: Geometry
    bounds: tuple[tuple[int, int], ...]

    @property
    def counts(self) -> list[int]:
        per_row = self.geom.n // self.geom.view[1] if self.geom.view[1] else 0
        return [(hi - lo) * per_row for lo, hi in self.bounds]

    @property
    def n(self) -> int:
        return self.geom.n

    def split(self, a: Num) -> list[Num]:
        """A view-shaped array's shards, in worker order."""
        return [a[:, lo:hi] for lo, hi in self.bounds]

    def total(self, parts: Sequence[Num]) -> Num:
        """The all-reduce of the workers' partial sums over the reduced axes (keep-dims)."""
        out = reduce_sum(parts[0], self.geom.axes)
        for part in parts[1:]:
            out = out + reduce_sum(part, self.geom.axes)
        return out

    def mean(self, parts: Sequence[Num]) -> Num:
        out: Num = self.total(parts) / parts[0].dtype.type(self.n)
        return out


@dataclass(frozen=True)
class _Normalized:
    """Per-worker ``z`` with the merged statistics (keep-dims ``(C, 1, ...)``)."""

    z: list[Num]
    mean: Num
    var: Num
    rstd: Num


def _workers(nx: Numerics, x: Num, hyper: Mapping[str, Any], inputs: Mapping[str, Any]
             ) -> _Workers:
    geom = nx.batch_geometry(x.shape, hyper.get("channel_axis", 1))
    if geom.perm[1] != 0:
        raise ValueError(f"argument 'channel_axis': got {hyper.get('channel_axis', 1)}, "
                         "expected an axis other than the sharded batch axis 0")
    sizes = shard_sizes(inputs, hyper, x.shape[0])
    edges = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    return _Workers(geom, tuple(itertools.pairwise(edges)))


def _normalize(nx: Numerics, prec: Precision, w: _Workers, xs: list[Num], eps: Any
               ) -> _Normalized:
    """Each worker's two-pass moments, the merge, and each shard normalized."""
    axes = w.geom.axes
    local_means, m2s = [], []
    for part, count in zip(xs, w.counts, strict=True):
        if count == 0:  # an empty shard has no mean; the merge skips it
            local_means.append(np.zeros_like(reduce_sum(part, axes)))
            m2s.append(np.zeros_like(local_means[-1]))
            continue
        mean_i = nx.stat_mean(part, axes, prec)
        local_means.append(mean_i)
        m2s.append(nx.variance(part, mean_i, axes, prec) * part.dtype.type(count))
    mean, m2 = nx.merge_moments(w.counts, local_means, m2s)
    var = m2 / mean.dtype.type(w.n)
    rstd = nx.rstd(var, eps)
    z = [(part - nx.worker_mean(mean, mean_i)) * rstd
         for part, mean_i in zip(xs, local_means, strict=True)]
    return _Normalized(z=z, mean=mean, var=var, rstd=rstd)


def _jacobian(w: _Workers, nrm: _Normalized, v: Sequence[Num]) -> list[Num]:
    """``J v`` worker by worker, with batch norm's Jacobian and global means."""
    mzv = w.mean([z * part for z, part in zip(nrm.z, v, strict=True)])
    mv = w.mean(v)
    return [nrm.rstd * (part - mv - z * mzv) for z, part in zip(nrm.z, v, strict=True)]


@dataclass(frozen=True)
class SyncBatchNorm:
    """The sync_batch_norm method (see the module docstring)."""

    primals: tuple[str, ...] = ("x", "weight", "bias")
    state: tuple[str, ...] = ("running_mean", "running_var")
    constants: tuple[str, ...] = ("shard_sizes",)

    def _prepare(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Any],
                 hyper: Mapping[str, Any]) -> tuple[_Workers, _Normalized | tuple[Num, Num]]:
        x = inputs["x"]
        w = _workers(nx, x, hyper, inputs)
        eps = prec.scalar(float(hyper_value(hyper, "eps", _METHOD)))
        xs = w.split(w.geom.to_view(x))
        if bool(hyper_value(hyper, "training", _METHOD)):
            if w.n == 0:
                raise ValueError(f"argument 'x': got shape {x.shape}, expected a non-empty "
                                 "batch in training")
            return w, _normalize(nx, prec, w, xs, eps)
        rm, rv = inputs.get("running_mean"), inputs.get("running_var")
        if rm is None or rv is None:
            raise ValueError("argument 'inputs': got no running_mean/running_var, expected both "
                             "when training=False (evaluation normalizes with them)")
        return w, (w.geom.param(rm), nx.rstd(w.geom.param(rv), eps))

    def _z(self, w: _Workers, st: _Normalized | tuple[Num, Num], x: Num) -> list[Num]:
        if isinstance(st, _Normalized):
            return st.z
        center, rstd = st
        return [(part - center) * rstd for part in w.split(w.geom.to_view(x))]

    def forward(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Any],
                hyper: Mapping[str, Any]) -> dict[str, Num]:
        w, st = self._prepare(nx, prec, inputs, hyper)
        z = np.concatenate(self._z(w, st, inputs["x"]), axis=1)
        y = w.geom.from_view(affine(w.geom, z, inputs.get("weight"), inputs.get("bias")))
        if not isinstance(st, _Normalized):
            return {"y": y}
        out = {"y": y, "mean": w.geom.stat(st.mean), "var": w.geom.stat(st.var),
               "rstd": w.geom.stat(st.rstd)}
        rm, rv = inputs.get("running_mean"), inputs.get("running_var")
        if rm is None and rv is None:
            return out
        if rm is None or rv is None:
            raise ValueError("argument 'inputs': got only one of running_mean/running_var, "
                             "expected both or neither")
        out.update(self._update(nx, prec, w, st, rm, rv, hyper))
        return out

    def _update(self, nx: Numerics, prec: Precision, w: _Workers, st: _Normalized, rm: Num,
                rv: Num, hyper: Mapping[str, Any]) -> dict[str, Num]:
        """Every worker's running update; they must agree, and the agreed state is returned."""
        tracked = int(hyper_value(hyper, "num_batches_tracked", _METHOD, 0))
        f = prec.scalar(_factor(nx, hyper, tracked))
        estimator = hyper_value(hyper, "running_var_estimator", _METHOD)
        if estimator not in ("biased", "unbiased"):
            raise ValueError(f"argument 'running_var_estimator': got {estimator!r}, expected "
                             "'biased' or 'unbiased'")
        keep = prec.scalar(1.0) - f
        mean, var = w.geom.stat(st.mean), w.geom.stat(st.var)
        states = []
        for worker in range(len(w.bounds)):
            n = nx.sync_count(w.counts, worker)
            if estimator == "unbiased" and n <= 1:
                raise ValueError(f"argument 'x': got {n} value(s) per channel, expected at least "
                                 "2 for running_var_estimator='unbiased'")
            sample = nx.running_var_sample(var, n, estimator)
            states.append((keep * rm + f * mean, keep * rv + f * sample))
        for worker, (m, v) in enumerate(states[1:], start=1):
            if not (np.array_equal(m, states[0][0], equal_nan=True)
                    and np.array_equal(v, states[0][1], equal_nan=True)):
                raise ValueError(f"the running statistics of worker {worker} differ from worker "
                                 "0's: every worker must hold the same running state")
        return {"running_mean": states[0][0], "running_var": states[0][1],
                "num_batches_tracked": np.asarray(tracked + 1, dtype=np.float64)}

    def vjp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Any],
            hyper: Mapping[str, Any], g: Num) -> dict[str, Num]:
        w, st = self._prepare(nx, prec, inputs, hyper)
        wt, b = inputs.get("weight"), inputs.get("bias")
        gs = w.split(w.geom.to_view(g))
        gw = gs if wt is None else [part * w.geom.param(wt) for part in gs]
        dx = (_jacobian(w, st, gw) if isinstance(st, _Normalized)
              else [part * st[1] for part in gw])
        out = {"x": w.geom.from_view(np.concatenate(dx, axis=1))}
        z = self._z(w, st, inputs["x"])
        if wt is not None:
            out["weight"] = w.total([gi * zi for gi, zi in zip(gs, z, strict=True)]).reshape(
                w.geom.param_shape)
        if b is not None:
            out["bias"] = w.total(gs).reshape(w.geom.param_shape)
        return out

    def jvp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Any],
            hyper: Mapping[str, Any], t: Mapping[str, Num]) -> Num:
        w, st = self._prepare(nx, prec, inputs, hyper)
        wt = inputs.get("weight")
        z = self._z(w, st, inputs["x"])
        dy = [np.zeros_like(zi) for zi in z]
        if "x" in t:
            tx = w.split(w.geom.to_view(t["x"]))
            dz = _jacobian(w, st, tx) if isinstance(st, _Normalized) else [
                part * st[1] for part in tx]
            dy = [d + (dzi if wt is None else dzi * w.geom.param(wt))
                  for d, dzi in zip(dy, dz, strict=True)]
        if "weight" in t:
            dy = [d + zi * w.geom.param(t["weight"]) for d, zi in zip(dy, z, strict=True)]
        if "bias" in t:
            dy = [d + w.geom.param(t["bias"]) for d in dy]
        return w.geom.from_view(np.concatenate(dy, axis=1))

    def second_order(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Any],
                     hyper: Mapping[str, Any], g: Num, t: Mapping[str, Num]) -> dict[str, Num]:
        w, st = self._prepare(nx, prec, inputs, hyper)
        wt, b = inputs.get("weight"), inputs.get("bias")
        gs = w.split(w.geom.to_view(g))
        zeros = np.zeros(w.geom.param_shape, dtype=gs[0].dtype)
        tx = w.split(w.geom.to_view(t["x"])) if "x" in t else [np.zeros_like(p) for p in gs]
        tw = w.geom.param(t["weight"]) if "weight" in t else None
        if not isinstance(st, _Normalized):
            # evaluation is affine in x and in the parameters: only the cross terms remain
            rstd = st[1]
            dx = [gi * tw * rstd if tw is not None else np.zeros_like(gi) for gi in gs]
            out = {"x": w.geom.from_view(np.concatenate(dx, axis=1))}
            if wt is not None:
                out["weight"] = w.total([gi * ti * rstd for gi, ti in zip(gs, tx, strict=True)]
                                        ).reshape(w.geom.param_shape)
            if b is not None:
                out["bias"] = zeros
            return out
        gw = gs if wt is None else [part * w.geom.param(wt) for part in gs]
        dz = _jacobian(w, st, tx)
        ratio = -st.rstd * w.mean([zi * ti for zi, ti in zip(st.z, tx, strict=True)])
        jg = _jacobian(w, st, gw)
        mzg = w.mean([zi * gi for zi, gi in zip(st.z, gw, strict=True)])
        mdg = w.mean([di * gi for di, gi in zip(dz, gw, strict=True)])
        dx = [ratio * j - st.rstd * (di * mzg + zi * mdg)
              for j, di, zi in zip(jg, dz, st.z, strict=True)]
        if tw is not None:
            # the x-gradient is linear in the weight: its derivative along tw is J (g tw)
            dx = [d + e for d, e in zip(dx, _jacobian(w, st, [gi * tw for gi in gs]),
                                        strict=True)]
        out = {"x": w.geom.from_view(np.concatenate(dx, axis=1))}
        if wt is not None:
            out["weight"] = w.total([gi * di for gi, di in zip(gs, dz, strict=True)]).reshape(
                w.geom.param_shape)
        if b is not None:
            out["bias"] = zeros
        return out


SYNC_BATCH_NORM = SyncBatchNorm()
