"""Spectral normalization (Miyato et al., 2018): a weight divided by its largest singular value.

The input ``x`` is the weight ``W`` (``ndim >= 2``). It is viewed as a matrix the way PyTorch
does: the ``dim`` axis first, every other axis flattened in order,
``M = moveaxis(W, dim, 0).reshape(W.shape[dim], -1)`` (``dim = 0`` for a linear ``(O, I)`` or a
convolution ``(O, I, kh, kw)`` weight, ``dim = 1`` for a transposed convolution
``(I, O, kh, kw)``). ``M`` has ``h = W.shape[dim]`` rows and ``w = W.size / h`` columns, and::

    y = W / sigma

**Exact mode** (``mode="exact"``): ``sigma = sigma_1(M)``, the largest singular value, with
left and right singular vectors ``u1``, ``v1``. ``d sigma / dW = u1 v1^T`` (reshaped back), so
with ``P = u1 v1^T`` and ``c = <g, W>``::

    vjp:  g / sigma - c / sigma^2 P          jvp:  t / sigma - W <P, t> / sigma^2

and the second order adds the motion of ``P`` (see :func:`second_order`). Where the top
singular value is repeated (``sigma_1 = sigma_2``) ``sigma`` is continuous but not
differentiable: the spec requires the forward only, and :func:`vjp`, :func:`jvp` and
:func:`second_order` raise. ``W = 0`` gives ``sigma = 0`` and ``y = 0 / 0 = NaN`` everywhere
(``y`` has no limit at ``W = 0``); derivatives there are not defined either. ``training`` is
accepted and ignored.

**Power-iteration mode** (``mode="power_iteration"``): ``u`` (length ``h``) and ``v`` (length
``w``) are **state**. With ``N(a) = a / max(||a||_2, eps)`` (``F.normalize``), training
(``training=True``) runs ``n_power_iterations >= 1`` iterations, each, for
``update_order="v_first"`` (the paper, ``torch.nn.utils.spectral_norm``, Flax)::

    v = N(M^T u);  u = N(M v)

or for ``update_order="u_first"`` (``torch.nn.utils.parametrizations.spectral_norm``)::

    u = N(M v);  v = N(M^T u)

and returns the iterated ``u`` and ``v``. Then ``sigma = u^T M v`` with the iterated vectors.
Evaluation (``training=False``) runs no iteration: ``sigma = u^T M v`` with the given ``u``,
``v``. **u and v are constants for the derivatives** (PyTorch iterates under ``no_grad`` and
clones them): the VJP and JVP are exact mode's with ``P = u v^T``, and the second order has no
``dP`` term. ``W = 0`` gives ``u = v = 0``, ``sigma = 0`` and ``y = NaN``.

>>> import numpy as np
>>> w = np.array([[3.0, 0.0], [0.0, 1.0]])
>>> forward(w, dim=0, mode="exact", training=True)["y"].tolist()
[[1.0, 0.0], [0.0, 0.3333333333333333]]
>>> out = forward(w, dim=0, mode="power_iteration", training=True, n_power_iterations=1,
...               update_order="v_first", eps=1e-12, u=np.array([1.0, 0.0]),
...               v=np.array([0.0, 1.0]))
>>> out["sigma"].tolist(), out["u"].tolist(), out["v"].tolist()
(3.0, [1.0, 0.0], [1.0, 0.0])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from ._checks import (
    FloatArray,
    as_float64,
    check_axis,
    check_choice,
    check_eps,
    check_int,
    check_ndim,
    check_shape,
    cotangent_like,
    directions,
    ieee,
    optional_float64,
)

PRIMALS = ("x",)
"""The weight ``W``: the only differentiable input."""
STATE = ("u", "v")
"""Power iteration's left (length ``W.shape[dim]``) and right (length ``W.size / h``) vectors;
returned updated by a training call, read unchanged by evaluation."""
STATS = ("sigma", "u", "v")
"""``sigma`` (0-d); a power-iteration training call also returns the iterated ``u`` and ``v``."""
NO_NCHW_EXAMPLE = ("one statistic (sigma) of the whole weight, which is not an activation: "
                   "no partition of an (N, C, H, W) input")
MODES = ("exact", "power_iteration")
ORDERS = ("v_first", "u_first")

DEGENERATE_GAP = 64.0
"""``sigma_1 - sigma_2 <= DEGENERATE_GAP * eps64 * max(h, w) * sigma_1`` counts as a repeated
top singular value (below LAPACK's own error bound on the singular values, the two are not
distinguishable in float64)."""


@dataclass(frozen=True)
class _Call:
    w: FloatArray
    m: FloatArray
    dim: int
    mode: str
    training: bool
    iterations: int
    order: str
    eps: float
    u: FloatArray | None
    v: FloatArray | None

    def matrix(self, a: FloatArray) -> FloatArray:
        return np.moveaxis(a, self.dim, 0).reshape(self.m.shape)

    def tensor(self, m: FloatArray) -> FloatArray:
        moved = tuple(self.w.shape[self.dim:self.dim + 1]) + tuple(
            s for i, s in enumerate(self.w.shape) if i != self.dim)
        return np.moveaxis(m.reshape(moved), 0, self.dim)


def matrix_shape(shape: tuple[int, ...], dim: int) -> tuple[int, int]:
    """``(h, w)``: the rows (``shape[dim]``) and columns (the rest, flattened) of ``M``."""
    h = shape[dim]
    return h, math.prod(shape) // h if h else 0


def input_shapes(shape: tuple[int, ...], hyper: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """The state's shapes: ``u`` of length ``h``, ``v`` of length ``w``."""
    dim = check_axis("dim", hyper.get("dim", 0), len(shape))
    h, w = matrix_shape(tuple(shape), dim)
    return {"u": (h,), "v": (w,)}


def _setup(x: object, *, dim: object, mode: object, training: object,
           n_power_iterations: object, update_order: object, eps: object, u: object,
           v: object) -> _Call:
    wa = as_float64("x", x)
    check_ndim("x", wa, 2)
    d = check_axis("dim", dim, wa.ndim)
    if 0 in wa.shape:
        raise ValueError(f"argument 'x': got shape {wa.shape}, expected a non-empty weight")
    md = check_choice("mode", mode, MODES)
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"argument 'training': got {training!r}, expected True or False")
    h, w_cols = matrix_shape(wa.shape, d)
    m = np.moveaxis(wa, d, 0).reshape(h, w_cols)
    ua, va = optional_float64("u", u), optional_float64("v", v)
    iterations, order, e = 0, "v_first", 0.0
    if md == "power_iteration":
        check_shape("u", ua, (h,))
        check_shape("v", va, (w_cols,))
        if ua is None or va is None:
            missing = "u" if ua is None else "v"
            raise ValueError(f"argument {missing!r}: got None with mode='power_iteration', "
                             "expected the state vectors u (length h) and v (length w)")
        if training:
            iterations = check_int("n_power_iterations", n_power_iterations, minimum=1)
            order = check_choice("update_order", update_order, ORDERS)
            e = check_eps(eps)
    return _Call(w=wa, m=m, dim=d, mode=md, training=bool(training), iterations=iterations,
                 order=order, eps=e, u=ua, v=va)


def _exact_sum(terms: list[Fraction]) -> float:
    """A sum of exact rationals, rounded once (``float(Fraction)`` rounds to nearest)."""
    total = sum(terms, Fraction(0))
    try:
        return float(total)
    except OverflowError:
        return math.inf if total > 0 else -math.inf


def _dot(a: FloatArray, b: FloatArray) -> float:
    """``sum(a * b)`` correctly rounded: products and sum exact, one rounding at the end.

    The sums of spectral normalization cancel (``u^T M v`` for a state far from the singular
    vectors), so a sum of rounded products could lose the ulps the spec promises.
    """
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float(np.sum(a * b))
    return _exact_sum([Fraction(p) * Fraction(q) for p, q in zip(a.tolist(), b.tolist(),
                                                                 strict=True)])


def _matvec(m: FloatArray, b: FloatArray) -> FloatArray:
    return np.array([_dot(row, b) for row in m], dtype=np.float64)


def _bilinear(u: FloatArray, m: FloatArray, v: FloatArray) -> float:
    """``u^T M v`` correctly rounded (one exact sum of the products ``u_i M_ij v_j``)."""
    if not (np.isfinite(u).all() and np.isfinite(m).all() and np.isfinite(v).all()):
        return float(u @ (m @ v))
    fv = [Fraction(q) for q in v.tolist()]
    return _exact_sum([Fraction(p) * Fraction(mij) * q
                       for p, row in zip(u.tolist(), m.tolist(), strict=True)
                       for mij, q in zip(row, fv, strict=True)])


def _normalize(a: FloatArray, eps: float) -> FloatArray:
    """``a / max(||a||_2, eps)``, the norm from a correctly rounded sum of squares."""
    norm = math.sqrt(_dot(a, a)) if np.isfinite(a).all() else float(np.sqrt(np.sum(a * a)))
    out: FloatArray = a / max(norm, eps)
    return out


def _power(c: _Call) -> tuple[FloatArray, FloatArray]:
    """The iterated ``(u, v)`` of a training call; the given ones in evaluation."""
    assert c.u is not None
    assert c.v is not None
    u, v = c.u, c.v
    for _ in range(c.iterations):
        if c.order == "v_first":
            v = _normalize(_matvec(c.m.T, u), c.eps)
            u = _normalize(_matvec(c.m, v), c.eps)
        else:
            u = _normalize(_matvec(c.m, v), c.eps)
            v = _normalize(_matvec(c.m.T, u), c.eps)
    return u, v


@dataclass(frozen=True)
class _Spectrum:
    sigma: float
    u: FloatArray
    v: FloatArray
    """The vectors of ``P = u v^T`` (power iteration: the state; exact: ``u1``, ``v1``)."""
    full_u: FloatArray | None = None
    full_v: FloatArray | None = None
    values: FloatArray | None = None
    """Exact mode: every left/right singular vector (columns) and the singular values padded
    with zeros to ``h`` and ``w``."""


def _exact(c: _Call) -> _Spectrum:
    if not np.isfinite(c.m).all():
        nan = np.full(c.m.shape[0], np.nan)
        return _Spectrum(sigma=float(np.nan if np.isnan(c.m).any() else np.inf), u=nan,
                         v=np.full(c.m.shape[1], np.nan))
    big = float(np.max(np.abs(c.m)))
    if big == 0.0:
        return _Spectrum(sigma=0.0, u=np.zeros(c.m.shape[0]), v=np.zeros(c.m.shape[1]))
    # a power-of-two scaling is exact and keeps tiny or huge weights away from under/overflow
    k = math.frexp(big)[1]
    scaled = np.ldexp(c.m, -k)
    uu, s, vt = np.linalg.svd(scaled, full_matrices=True)
    u1, v1 = uu[:, 0], vt[0]
    # refine sigma: ||M v1|| / ||v1|| is stationary in v1, so its error is second order in
    # v1's (LAPACK's v1 is unit only to a few ulps: hence the division); correctly rounded
    # products and sums make it accurate to about one ulp
    mv = _matvec(scaled, v1)
    sigma = math.ldexp(math.sqrt(_dot(mv, mv) / _dot(v1, v1)), k)
    h, w = c.m.shape
    return _Spectrum(sigma=sigma, u=u1, v=v1, full_u=uu, full_v=vt.T,
                     values=np.ldexp(np.concatenate([s, np.zeros(max(h, w) - s.size)]), k))


def _spectrum(c: _Call) -> _Spectrum:
    if c.mode == "exact":
        return _exact(c)
    u, v = _power(c)
    return _Spectrum(sigma=_bilinear(u, c.m, v), u=u, v=v)


@ieee
def forward(x: object, *, dim: int, mode: str, training: bool,
            n_power_iterations: int | None = None, update_order: str | None = None,
            eps: float | None = None, u: object = None, v: object = None
            ) -> dict[str, FloatArray]:
    """``y``, ``sigma`` and, in a power-iteration training call, the iterated ``u``, ``v``."""
    c = _setup(x, dim=dim, mode=mode, training=training, n_power_iterations=n_power_iterations,
               update_order=update_order, eps=eps, u=u, v=v)
    sp = _spectrum(c)
    out = {"y": c.w / sp.sigma, "sigma": np.array(sp.sigma)}
    if c.mode == "power_iteration" and c.training:
        out.update(u=sp.u.copy(), v=sp.v.copy())
    return out


def _differentiable(c: _Call, sp: _Spectrum) -> None:
    if c.mode != "exact" or sp.values is None:
        return
    h, w = c.m.shape
    s = sp.values
    if s.size > 1 and s[0] - s[1] <= DEGENERATE_GAP * 2.0**-52 * max(h, w) * s[0]:
        raise ValueError(f"argument 'x': its top singular value is repeated (sigma_1 = "
                         f"{s[0]!r}, sigma_2 = {s[1]!r}): sigma is not differentiable there, "
                         "expected a weight whose largest singular value is simple (the spec "
                         "defines the forward only at a repeated top singular value)")


def _prepare(x: object, hyper: dict[str, Any]) -> tuple[_Call, _Spectrum]:
    c = _setup(x, **hyper)
    sp = _spectrum(c)
    _differentiable(c, sp)
    return c, sp


def _hyper(dim: int, mode: str, training: bool, n_power_iterations: int | None,
           update_order: str | None, eps: float | None, u: object, v: object) -> dict[str, Any]:
    return {"dim": dim, "mode": mode, "training": training,
            "n_power_iterations": n_power_iterations, "update_order": update_order, "eps": eps,
            "u": u, "v": v}


@ieee
def vjp(x: object, *, cotangent: object, dim: int, mode: str, training: bool,
        n_power_iterations: int | None = None, update_order: str | None = None,
        eps: float | None = None, u: object = None, v: object = None) -> dict[str, FloatArray]:
    """``dW = g / sigma - <g, W> / sigma^2 P`` with ``P = u v^T`` reshaped to ``W``'s layout."""
    c, sp = _prepare(x, _hyper(dim, mode, training, n_power_iterations, update_order, eps, u, v))
    g = cotangent_like(cotangent, c.w.shape)
    s = np.float64(sp.sigma)  # IEEE division: 0 / 0 is NaN, not a Python error
    coef = np.float64(_dot(g.ravel(), c.w.ravel())) / (s * s)
    return {"x": g / s - coef * c.tensor(np.outer(sp.u, sp.v))}


@ieee
def jvp(x: object, *, tangent: Mapping[str, object], dim: int, mode: str, training: bool,
        n_power_iterations: int | None = None, update_order: str | None = None,
        eps: float | None = None, u: object = None, v: object = None) -> FloatArray:
    """``t / sigma - W <P, t> / sigma^2`` with ``<P, t> = u^T T v`` (``T`` the matrix view)."""
    c, sp = _prepare(x, _hyper(dim, mode, training, n_power_iterations, update_order, eps, u, v))
    t = directions("tangent", tangent, {"x": c.w})["x"]
    assert t is not None
    s = np.float64(sp.sigma)  # IEEE division: 0 / 0 is NaN, not a Python error
    ds = np.float64(_bilinear(sp.u, c.matrix(t), sp.v))
    out: FloatArray = t / s - c.w * (ds / (s * s))
    return out


def _dp(c: _Call, sp: _Spectrum, t: FloatArray) -> FloatArray:
    """Exact mode: the derivative of ``P = u1 v1^T`` along ``T`` (the matrix view).

    First-order perturbation of the top singular pair (``u1`` an eigenvector of ``M M^T``,
    ``v1`` of ``M^T M``, eigenvalue ``sigma^2``)::

        du1 = sum_(j != 1) u_j u_j^T (T M^T + M T^T) u1 / (sigma^2 - s_j^2)     (j <= h)
        dv1 = sum_(j != 1) v_j v_j^T (T^T M + M^T T) v1 / (sigma^2 - s_j^2)     (j <= w)

    with ``s_j = 0`` beyond ``min(h, w)``; ``dP = du1 v1^T + u1 dv1^T``. Flipping the sign of
    ``u1`` and ``v1`` together flips ``du1`` and ``dv1``: ``dP`` does not depend on the sign.
    """
    assert sp.full_u is not None
    assert sp.full_v is not None
    assert sp.values is not None
    m, s2 = c.m, sp.sigma * sp.sigma
    h, w = m.shape
    lam = sp.values**2
    au = t @ (m.T @ sp.u) + m @ (t.T @ sp.u)
    av = t.T @ (m @ sp.v) + m.T @ (t @ sp.v)
    cu = sp.full_u[:, 1:].T @ au / (s2 - lam[1:h])
    cv = sp.full_v[:, 1:].T @ av / (s2 - lam[1:w])
    du = sp.full_u[:, 1:] @ cu
    dv = sp.full_v[:, 1:] @ cv
    out: FloatArray = np.outer(du, sp.v) + np.outer(sp.u, dv)
    return out


@ieee
def second_order(x: object, *, cotangent: object, tangent: Mapping[str, object], dim: int,
                 mode: str, training: bool, n_power_iterations: int | None = None,
                 update_order: str | None = None, eps: float | None = None, u: object = None,
                 v: object = None) -> dict[str, FloatArray]:
    """Derivative of :func:`vjp` along ``t`` with ``g`` fixed; ``s' = <P, t>``::

        -g s' / sigma^2 - (<g, t> / sigma^2 - 2 <g, W> s' / sigma^3) P - <g, W> / sigma^2 dP

    ``dP = 0`` in power-iteration mode (u and v are constants); exact mode: :func:`_dp`.
    """
    c, sp = _prepare(x, _hyper(dim, mode, training, n_power_iterations, update_order, eps, u, v))
    g = cotangent_like(cotangent, c.w.shape)
    t = directions("tangent", tangent, {"x": c.w})["x"]
    assert t is not None
    s = np.float64(sp.sigma)  # IEEE division: 0 / 0 is NaN, not a Python error
    tm = c.matrix(t)
    ds = np.float64(_bilinear(sp.u, tm, sp.v))
    gw, gt = np.float64(_dot(g.ravel(), c.w.ravel())), np.float64(_dot(g.ravel(), t.ravel()))
    p = np.outer(sp.u, sp.v)
    dvjp = -g * (ds / (s * s)) - c.tensor((gt / (s * s) - 2.0 * gw * ds / s**3) * p)
    if c.mode == "exact" and sp.full_u is not None:  # W = 0 or non-finite: NaN already
        dvjp = dvjp - c.tensor(gw / (s * s) * _dp(c, sp, tm))
    return {"x": dvjp}
