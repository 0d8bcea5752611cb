"""Local contrast normalization (Jarrett et al., 2009): subtractive, then divisive, normalization.

Axis 0 is the batch axis, ``channel_axis`` the channel axis (required), every other axis spatial.
For one sample with ``C`` channels and spatial positions ``s``, ``w[s, s']`` is a Gaussian window
over space: separable, ``kernel_size`` taps per spatial axis (odd), standard deviation
``window_sigma``, weights summing to 1 over the full window; across channels it is uniform, so
each channel's share is ``w / C`` and the whole window (channels and space) sums to 1::

    mean[s]  = sum_{c', s'} (w[s, s'] / C) x[c', s']
    v[c, s]  = x[c, s] - mean[s]                                   (subtractive)
    sigma[s] = sqrt(sum_{c', s'} (w[s, s'] / C) v[c', s']^2)
    d[s]     = max(floor, sigma[s])
    y[c, s]  = v[c, s] / d[s]                                      (divisive)

``floor`` is ``mean_s sigma[s]`` over the sample (``divisor_floor="mean"``, the paper's c) or a
constant (``divisor_floor`` a number >= 0).

Border (``border``): ``"renormalize"`` restricts the window to positions inside the input and
divides it by its mass there, so the weights of every position sum to 1 (Torch7's
SpatialSubtractive/DivisiveNormalization divide by the convolution of a ones image);
``"zero"`` pads with zeros and keeps the full window's weights (pylearn2's ``lecun_lcn``-style
plain convolution), so the mean near a border is pulled towards 0.

Derivative conventions: at a tie ``sigma[s] == floor`` the gradient of ``max`` is split equally
(1/2 each), as ``torch.maximum`` and ``jnp.maximum`` do; where ``sigma[s] == 0`` its derivative
``A(v dv) / sigma`` is taken as 0. A sample with ``floor = 0`` and ``sigma = 0`` (constant input,
renormalized border) gives ``0 / 0 = NaN``, as IEEE arithmetic says.

>>> import numpy as np
>>> x = np.arange(8.0).reshape(1, 2, 4)
>>> out = forward(x, channel_axis=1, kernel_size=1, window_sigma=1.0, border="zero",
...               divisor_floor=0.0)
>>> out["y"][0].tolist()
[[-1.0, -1.0, -1.0, -1.0], [1.0, 1.0, 1.0, 1.0]]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ._checks import (
    FloatArray,
    as_float64,
    check_axis,
    check_choice,
    check_int,
    check_ndim,
    check_real,
    cotangent_like,
    directions,
)

PRIMALS = ("x",)
"""Differentiable inputs."""
STATS = ("sigma", "floor")
"""Statistics beside ``y``: the local standard deviation ``(N, *spatial)`` and the floor
``(N,)``."""
NO_NCHW_EXAMPLE = "the window spans all channels and overlapping neighbourhoods: no partition"


def window_1d(kernel_size: int, window_sigma: float) -> FloatArray:
    """The unnormalized 1-d Gaussian taps ``exp(-t^2 / (2 sigma^2))``, ``t`` centred."""
    t = np.arange(kernel_size, dtype=np.float64) - (kernel_size - 1) / 2
    out: FloatArray = np.exp(-(t * t) / (2.0 * window_sigma * window_sigma))
    return out


def spatial_window(shape: tuple[int, ...], kernel_size: int, window_sigma: float,
                   border: str) -> FloatArray:
    """``w`` as a dense ``(S, S)`` matrix over the flattened spatial positions."""
    taps = window_1d(kernel_size, window_sigma)
    taps = taps / math.fsum(taps.tolist())  # per axis; the product sums to 1 over the window
    half = (kernel_size - 1) // 2
    w: FloatArray = np.ones((1, 1))
    for n in shape:
        a = np.zeros((n, n))
        for i in range(n):
            for k in range(kernel_size):
                j = i + k - half
                if 0 <= j < n:
                    a[i, j] = taps[k]
        w = np.asarray(np.kron(w, a), dtype=np.float64)
    if border == "renormalize":
        w = w / w.sum(axis=1, keepdims=True)
    out: FloatArray = w
    return out


def _mass(shape: tuple[int, ...], kernel_size: int, window_sigma: float) -> FloatArray:
    """The zero-padded window's mass inside the input per position: a product over the axes of
    the in-bounds taps' sum, exactly 1 along an axis where the window lies inside (so that the
    interior of a constant input has v = 0 exactly)."""
    taps = window_1d(kernel_size, window_sigma)
    taps = taps / math.fsum(taps.tolist())
    half = (kernel_size - 1) // 2
    mass: FloatArray = np.ones((1,))
    for n in shape:
        per = np.ones(n)
        for i in range(n):
            inside = [taps[k] for k in range(kernel_size) if 0 <= i + k - half < n]
            if len(inside) < kernel_size:
                per[i] = math.fsum(inside)
        mass = np.asarray(np.kron(mass, per), dtype=np.float64)
    out: FloatArray = mass
    return out


@dataclass(frozen=True)
class _Lcn:
    perm: tuple[int, ...]
    shape: tuple[int, ...]
    w: FloatArray
    x: FloatArray
    """(N, C, S)."""
    v: FloatArray
    sigma: FloatArray
    """(N, S)."""
    floor: FloatArray
    """(N,)."""
    d: FloatArray
    """(N, S)."""
    a_sigma: FloatArray
    """(N, S): the share of ``max``'s derivative that goes to sigma (1, 1/2 at a tie, 0)."""
    mean_floor: bool

    def apply(self, a: FloatArray) -> FloatArray:
        """``A a``: (N, C, S) -> (N, S), the window over channels and space."""
        out: FloatArray = np.einsum("st,nt->ns", self.w, a.mean(axis=1))
        return out

    def apply_t(self, u: FloatArray) -> FloatArray:
        """``A^T u``: (N, S) -> (N, C, S)."""
        c = self.x.shape[1]
        t = np.einsum("st,ns->nt", self.w, u) / c
        return np.broadcast_to(t[:, None, :], self.x.shape).copy()

    def to_input(self, a: FloatArray) -> FloatArray:
        permuted = tuple(self.shape[i] for i in self.perm)
        return np.transpose(a.reshape(permuted), np.argsort(self.perm))

    def from_input(self, a: FloatArray) -> FloatArray:
        return np.transpose(a, self.perm).reshape(self.x.shape)


def _setup(x: object, channel_axis: object, kernel_size: object, window_sigma: object,
           border: object, divisor_floor: object) -> _Lcn:
    xa = as_float64("x", x)
    check_ndim("x", xa, 3)
    c = check_axis("channel_axis", channel_axis, xa.ndim)
    if c == 0:
        raise ValueError(f"argument 'channel_axis': got {channel_axis}, expected an axis other "
                         "than the batch axis 0")
    k = check_int("kernel_size", kernel_size, minimum=1)
    if k % 2 == 0:
        raise ValueError(f"argument 'kernel_size': got {k}, expected an odd window size")
    s = check_real("window_sigma", window_sigma, minimum=0.0, exclusive=True)
    b = check_choice("border", border, ("renormalize", "zero"))
    mean_floor = isinstance(divisor_floor, str)
    if mean_floor:
        check_choice("divisor_floor", divisor_floor, ("mean",))
        const = 0.0
    else:
        const = check_real("divisor_floor", divisor_floor, minimum=0.0)
    spatial = tuple(i for i in range(1, xa.ndim) if i != c)
    sshape = tuple(xa.shape[i] for i in spatial)
    if math.prod(sshape) == 0 or xa.shape[c] == 0:
        raise ValueError(f"argument 'x': got shape {xa.shape}, expected non-empty channel and "
                         "spatial axes")
    perm = (0, c, *spatial)
    x3 = np.transpose(xa, perm).reshape(xa.shape[0], xa.shape[c], -1)
    w = spatial_window(sshape, k, s, b)
    proto = _Lcn(perm=perm, shape=xa.shape, w=w, x=x3, v=x3, sigma=x3[:, 0], floor=x3[:, 0, 0],
                 d=x3[:, 0], a_sigma=x3[:, 0], mean_floor=mean_floor)
    # v from differences to a pivot per position (the first channel's value there), so that a
    # constant window gives v = 0 exactly and a large common offset cancels before the sum:
    # mean[s] - p[s] = sum_q w[s, q] / C (x[., q] - p[s]) + p[s] (mass[s] - 1), mass = 1 when
    # renormalized (exactly, by definition: not the rounded sum of the weights).
    pivot = x3[:, 0, :]
    # (N, S, S'): the channel mean of x[., s'] - p[s], each difference formed before summing
    diff = (x3[:, :, None, :] - pivot[:, None, :, None]).mean(axis=1)
    centred = np.einsum("st,nst->ns", w, diff)
    if b == "zero":
        centred = centred + pivot * (_mass(sshape, k, s) - 1.0)[None, :]
    v = (x3 - pivot[:, None, :]) - centred[:, None, :]
    sigma = np.sqrt(proto.apply(v * v))
    floor = sigma.mean(axis=1) if mean_floor else np.full(xa.shape[0], const)
    d = np.maximum(floor[:, None], sigma)
    a_sigma = np.where(sigma > floor[:, None], 1.0, np.where(sigma == floor[:, None], 0.5, 0.0))
    return _Lcn(perm=perm, shape=xa.shape, w=w, x=x3, v=v, sigma=sigma, floor=floor, d=d,
                a_sigma=a_sigma, mean_floor=mean_floor)


def _hyper(channel_axis: int, kernel_size: int, window_sigma: float, border: str,
           divisor_floor: float | str) -> tuple[object, ...]:
    return channel_axis, kernel_size, window_sigma, border, divisor_floor


def forward(x: object, *, channel_axis: int, kernel_size: int, window_sigma: float, border: str,
            divisor_floor: float | str) -> dict[str, FloatArray]:
    """Return ``{"y", "sigma", "floor"}``; see the module docstring."""
    with np.errstate(all="ignore"):
        r = _setup(x, channel_axis, kernel_size, window_sigma, border, divisor_floor)
        y = r.v / r.d[:, None, :]
        sshape = tuple(r.shape[i] for i in r.perm[2:])
        return {"y": r.to_input(y), "sigma": r.sigma.reshape(r.shape[0], *sshape),
                "floor": r.floor}


def _dsigma(r: _Lcn, dv: FloatArray) -> FloatArray:
    safe = np.where(r.sigma > 0, r.sigma, 1.0)
    out: FloatArray = np.where(r.sigma > 0, r.apply(r.v * dv) / safe, 0.0)
    return out


def _dd(r: _Lcn, ds: FloatArray) -> FloatArray:
    dfloor = ds.mean(axis=1) if r.mean_floor else np.zeros(r.x.shape[0])
    out: FloatArray = r.a_sigma * ds + (1.0 - r.a_sigma) * dfloor[:, None]
    return out


def _jvp(r: _Lcn, tx: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    dv = tx - r.apply(tx)[:, None, :]
    ds = _dsigma(r, dv)
    dd = _dd(r, ds)
    y = r.v / r.d[:, None, :]
    dy = (dv - y * dd[:, None, :]) / r.d[:, None, :]
    return dv, ds, dd, dy


def _vjp_steps(r: _Lcn, g: FloatArray) -> dict[str, FloatArray]:
    y = r.v / r.d[:, None, :]
    v0 = g / r.d[:, None, :]
    dbar = -(g * y).sum(axis=1) / r.d
    sbar = r.a_sigma * dbar
    if r.mean_floor:
        cbar = ((1.0 - r.a_sigma) * dbar).sum(axis=1)
        sbar = sbar + cbar[:, None] / r.sigma.shape[1]
    safe = np.where(r.sigma > 0, r.sigma, 1.0)
    qbar = np.where(r.sigma > 0, sbar / (2.0 * safe), 0.0)
    vbar = v0 + 2.0 * r.v * r.apply_t(qbar)
    xbar = vbar - r.apply_t(vbar.sum(axis=1))
    return {"y": y, "v0": v0, "dbar": dbar, "qbar": qbar, "vbar": vbar, "x": xbar}


def vjp(x: object, *, cotangent: object, channel_axis: int, kernel_size: int,
        window_sigma: float, border: str, divisor_floor: float | str) -> dict[str, FloatArray]:
    """Gradient of ``sum(cotangent * y)``."""
    with np.errstate(all="ignore"):
        r = _setup(x, channel_axis, kernel_size, window_sigma, border, divisor_floor)
        g = r.from_input(cotangent_like(cotangent, r.shape))
        return {"x": r.to_input(_vjp_steps(r, g)["x"])}


def jvp(x: object, *, tangent: Mapping[str, object], channel_axis: int, kernel_size: int,
        window_sigma: float, border: str, divisor_floor: float | str) -> FloatArray:
    """Directional derivative of ``y``."""
    with np.errstate(all="ignore"):
        r = _setup(x, channel_axis, kernel_size, window_sigma, border, divisor_floor)
        t = directions("tangent", tangent, {"x": r.to_input(r.x)})["x"]
        tx = np.zeros_like(r.x) if t is None else r.from_input(t)
        return r.to_input(_jvp(r, tx)[3])


def second_order(x: object, *, cotangent: object, tangent: Mapping[str, object],
                 channel_axis: int, kernel_size: int, window_sigma: float, border: str,
                 divisor_floor: float | str) -> dict[str, FloatArray]:
    """Derivative of :func:`vjp` (``cotangent`` fixed) along ``tangent``, the max's split fixed."""
    with np.errstate(all="ignore"):
        r = _setup(x, channel_axis, kernel_size, window_sigma, border, divisor_floor)
        g = r.from_input(cotangent_like(cotangent, r.shape))
        t = directions("tangent", tangent, {"x": r.to_input(r.x)})["x"]
        tx = np.zeros_like(r.x) if t is None else r.from_input(t)
        dv, ds, dd, dy = _jvp(r, tx)
        s = _vjp_steps(r, g)
        d3 = r.d[:, None, :]
        v0_t = -s["v0"] * dd[:, None, :] / d3
        dbar_t = -(g * dy).sum(axis=1) / r.d - s["dbar"] * dd / r.d
        sbar_t = r.a_sigma * dbar_t
        if r.mean_floor:
            cbar_t = ((1.0 - r.a_sigma) * dbar_t).sum(axis=1)
            sbar_t = sbar_t + cbar_t[:, None] / r.sigma.shape[1]
        safe = np.where(r.sigma > 0, r.sigma, 1.0)
        qbar_t = np.where(r.sigma > 0, sbar_t / (2.0 * safe) - s["qbar"] * ds / safe, 0.0)
        vbar_t = v0_t + 2.0 * dv * r.apply_t(s["qbar"]) + 2.0 * r.v * r.apply_t(qbar_t)
        xbar_t = vbar_t - r.apply_t(vbar_t.sum(axis=1))
        return {"x": r.to_input(xbar_t)}
