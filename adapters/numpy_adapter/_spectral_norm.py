"""Spectral normalization: ``y = W / sigma`` with ``W`` viewed as ``M`` (``dim`` first, the rest
flattened).

Exact mode: ``np.linalg.svd`` of ``M`` in the compute dtype (float32 for 16-bit inputs, as
frameworks do: no half-precision SVD exists), ``sigma = s_1``, ``D = u1 v1^T``. Power
iteration: ``v = N(M^T u)``, ``u = N(M v)`` (``v_first``) or the reverse (``u_first``) with
``N(a) = a / max(||a||, eps)``, ``sigma = u . (M v)``; evaluation runs no iteration. ``D`` is
``d sigma / dM`` with the vectors held constant, ``D = u v^T``. Derivatives::

    vjp = g / sigma - <g, W> / sigma^2 D        jvp = t / sigma - W <D, t> / sigma^2
    second order = -g s' / sigma^2 - (<g, t> / sigma^2 - 2 <g, W> s' / sigma^3) D
                   - <g, W> / sigma^2 dD        (s' = <D, t>; dD = 0 for power iteration)

The steps where implementations differ are the methods of :class:`SpectralSteps`; a mutant
replaces one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._numerics import Numerics, hyper_value
from ._precision import Num, Precision

_METHOD = "spectral_norm"


def normalize(a: Num, eps: Any) -> Num:
    """``a / max(||a||_2, eps)`` (``F.normalize``)."""
    out: Num = a / np.maximum(np.sqrt(np.sum(a * a)), eps)
    return out


class SpectralSteps:
    """The numerical steps of spectral_norm that implementations get wrong."""

    def sn_iteration(self, m: Num, u: Num, v: Num, eps: Any, order: str) -> tuple[Num, Num]:
        """One power iteration in the given order."""
        if order == "v_first":
            v = normalize(m.T @ u, eps)
            return normalize(m @ v, eps), v
        u = normalize(m @ v, eps)
        return u, normalize(m.T @ u, eps)

    def sn_evaluation_iterates(self) -> bool:
        """Whether evaluation runs the iteration (the spec: no, it reads the stored u, v)."""
        return False

    def sn_exact_sigma(self, m: Num) -> tuple[Any, Num, Num, Num]:
        """``(sigma, U, s, V)``: the largest singular value and the full SVD."""
        uu, s, vt = np.linalg.svd(m, full_matrices=True)
        return s[0], uu, s, vt.T

    def sn_sigma_gradient(self, m: Num, u: Num, v: Num, run: Any) -> Num:
        """``d sigma / dM`` with the state vectors constant: ``u v^T``. ``run(m)`` recomputes
        the call's ``(u, v)`` from ``m`` (only a mutant differentiates through it)."""
        out: Num = np.outer(u, v)
        return out


_DEFAULT = SpectralSteps()


def _steps(nx: Numerics) -> SpectralSteps:
    return nx if isinstance(nx, SpectralSteps) else _DEFAULT


@dataclass(frozen=True)
class _Call:
    dim: int
    shape: tuple[int, ...]
    mode: str
    training: bool
    iterations: int
    order: str
    eps: Any

    def matrix(self, a: Num) -> Num:
        moved = np.moveaxis(a, self.dim, 0)
        out: Num = moved.reshape(moved.shape[0], -1)
        return out

    def tensor(self, m: Num) -> Num:
        moved = (self.shape[self.dim], *(s for i, s in enumerate(self.shape) if i != self.dim))
        out: Num = np.moveaxis(m.reshape(moved), 0, self.dim)
        return out


def _setup(prec: Precision, x: Num, hyper: Mapping[str, Any], eval_iterates: bool) -> _Call:
    if x.ndim < 2:
        raise ValueError(f"argument 'x': got a {x.ndim}-d weight, expected ndim >= 2")
    dim = int(hyper_value(hyper, "dim", _METHOD))
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(f"argument 'dim': got {dim}, expected an axis of a {x.ndim}-d weight")
    mode = str(hyper_value(hyper, "mode", _METHOD))
    if mode not in ("exact", "power_iteration"):
        raise ValueError(f"argument 'mode': got {mode!r}, expected 'exact' or 'power_iteration'")
    training = bool(hyper_value(hyper, "training", _METHOD))
    iterations, order, eps = 0, "v_first", prec.scalar(0.0)
    if mode == "power_iteration" and (training or eval_iterates):
        # (evaluation iterates only in a mutant, which falls back to one v_first iteration)
        iterations = int(hyper.get("n_power_iterations") or 1)
        order = str(hyper.get("update_order") or "v_first")
        raw = hyper.get("eps")
        eps = prec.scalar(1e-12 if raw is None else float(raw))
    return _Call(dim=dim % x.ndim, shape=tuple(x.shape), mode=mode, training=training,
                 iterations=iterations, order=order, eps=eps)


@dataclass(frozen=True)
class _Spectrum:
    sigma: Any
    d: Num
    u: Num | None = None
    v: Num | None = None
    svd: tuple[Num, Num, Num] | None = None


def _spectrum(nx: Numerics, c: _Call, m: Num, state: Mapping[str, Num | None]) -> _Spectrum:
    steps = _steps(nx)
    if c.mode == "exact":
        sigma, uu, s, vv = steps.sn_exact_sigma(m)
        return _Spectrum(sigma=sigma, d=np.outer(uu[:, 0], vv[:, 0]), svd=(uu, s, vv))
    u0, v0 = state.get("u"), state.get("v")
    if u0 is None or v0 is None:
        raise ValueError("argument 'inputs': got no 'u'/'v', expected both state vectors in "
                         "mode='power_iteration'")

    def run(mat: Num) -> tuple[Num, Num]:
        u, v = u0, v0
        for _ in range(c.iterations):
            u, v = steps.sn_iteration(mat, u, v, c.eps, c.order)
        return u, v

    u, v = run(m)
    sigma = u @ (m @ v)
    return _Spectrum(sigma=sigma, d=steps.sn_sigma_gradient(m, u, v, run), u=u, v=v)


def _dd(m: Num, sp: _Spectrum, tm: Num, sigma: Any) -> Num:
    """Exact mode: the derivative of ``D = u1 v1^T`` along ``tm`` (first-order perturbation of
    the top singular pair; see the spec page), for ``m`` and ``tm`` divided by ``sigma``."""
    assert sp.svd is not None
    uu, s, vv = sp.svd
    h, w = m.shape
    lam = np.concatenate([s / sigma, np.zeros(max(h, w) - s.size, dtype=s.dtype)]) ** 2
    s2 = lam[0]
    u1, v1 = uu[:, 0], vv[:, 0]
    au = tm @ (m.T @ u1) + m @ (tm.T @ u1)
    av = tm.T @ (m @ v1) + m.T @ (tm @ v1)
    du = uu[:, 1:] @ ((uu[:, 1:].T @ au) / (s2 - lam[1:h]))
    dv = vv[:, 1:] @ ((vv[:, 1:].T @ av) / (s2 - lam[1:w]))
    out: Num = np.outer(du, v1) + np.outer(u1, dv)
    return out


@dataclass(frozen=True)
class SpectralNorm:
    """The spectral_norm method (see the module docstring)."""

    primals: tuple[str, ...] = ("x",)
    state: tuple[str, ...] = ("u", "v")

    def _prepare(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                 hyper: Mapping[str, Any]) -> tuple[Num, _Call, Num, _Spectrum]:
        x = inputs["x"]
        assert x is not None
        c = _setup(prec, x, hyper, _steps(nx).sn_evaluation_iterates())
        m = c.matrix(x)
        return x, c, m, _spectrum(nx, c, m, inputs)

    def forward(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                hyper: Mapping[str, Any]) -> dict[str, Num]:
        x, c, _, sp = self._prepare(nx, prec, inputs, hyper)
        out: dict[str, Num] = {"y": x / sp.sigma, "sigma": np.asarray(sp.sigma)}
        if c.mode == "power_iteration" and c.training:
            assert sp.u is not None
            assert sp.v is not None
            out.update(u=sp.u, v=sp.v)
        return out

    def vjp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], g: Num) -> dict[str, Num]:
        x, c, _, sp = self._prepare(nx, prec, inputs, hyper)
        s = sp.sigma
        # one division by sigma per factor: sigma^2 and sigma^3 leave float32's range for
        # weights of 1e15 or 1e-15
        return {"x": g / s - ((np.sum(g * x) / s) / s) * c.tensor(sp.d)}

    def jvp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], t: Mapping[str, Num]) -> Num:
        x, c, _, sp = self._prepare(nx, prec, inputs, hyper)
        tx = t.get("x", np.zeros_like(x))
        s = sp.sigma
        ds = np.sum(sp.d * c.matrix(tx))
        out: Num = tx / s - (x / s) * (ds / s)
        return out

    def second_order(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                     hyper: Mapping[str, Any], g: Num, t: Mapping[str, Num]) -> dict[str, Num]:
        x, c, m, sp = self._prepare(nx, prec, inputs, hyper)
        tx = t.get("x", np.zeros_like(x))
        s = sp.sigma
        tm = c.matrix(tx)
        a, b = np.sum(sp.d * tm) / s, np.sum(g * x) / s      # s' / sigma, <g, W> / sigma
        cgt = np.sum(g * tx) / s
        two = x.dtype.type(2)
        dm = ((cgt - two * b * a) / s) * sp.d
        if sp.svd is not None:
            # D is scale-free, so dD(M)[T] = dD(M / sigma)[T / sigma]: no sigma^2 is formed
            dm = dm + (b / s) * _dd(m / s, sp, tm / s, s)
        out: Num = -g * (a / s) - c.tensor(dm)
        return {"x": out}


SPECTRAL_NORM = SpectralNorm()
