"""Adaptive instance normalization (AdaIN): the content's channel statistics set to the style's.

Huang and Belongie (2017). ``x`` (the content) and ``style`` are ``(N, C, *spatial)`` arrays with
the same batch size ``N`` and channel count ``C`` on the same axes; their spatial sizes may differ
(``n`` content values and ``m`` style values per (sample, channel)). Axis 0 is the batch axis and
``channel_axis`` (default 1; -1 for channels-last) the channel axis of both. For every sample
``k`` and channel ``c``, with ``D = n - 1`` (``variance_estimator="unbiased"``) or ``D = n``
(``"biased"``), and likewise ``D_s`` for the style::

    mean[k, c]       = (1/n) sum x[k, c, ...]
    var[k, c]        = (1/D) sum (x[k, c, ...] - mean[k, c])^2
    rstd[k, c]       = 1 / sqrt(var[k, c] + eps)
    style_mean[k, c] = (1/m) sum style[k, c, ...]
    style_var[k, c]  = (1/D_s) sum (style[k, c, ...] - style_mean[k, c])^2
    style_std[k, c]  = sqrt(style_var[k, c] + eps)
    y[k, c, ...]     = style_std[k, c] * (x[k, c, ...] - mean[k, c]) * rstd[k, c] + style_mean[k, c]

One estimator and one ``eps`` serve both inputs, and eps is added to the variance inside the
square root, as the widely used PyTorch port of the paper's code does (``var`` with its default
Bessel correction, plus eps, then ``sqrt``; eps 1e-5). Both hyperparameters are required: other
implementations use the biased variance (instance-norm layers) or add eps to the std.
The unbiased estimator needs ``n >= 2`` and ``m >= 2``.

Composition: ``y = instance_norm(x)`` with a per-(sample, channel) weight ``style_std`` and bias
``style_mean``. The unbiased case is the same standardization with a rescaled eps::

    (x - mean) / sqrt(M2/(n-1) + eps) = sqrt((n-1)/n) * (x - mean) / sqrt(M2/n + eps (n-1)/n)

so this module evaluates the content through the shared core (:class:`._standardize.AffineNorm`
with instance norm's layout, the affine spanning the batch and channel axes) and the style
through :func:`._standardize.moments`. Gradients reach both inputs: with ``z_s = (style -
style_mean) / style_std`` and ``G = sum_spatial g * (x - mean) * rstd``,
``d style_std / d style = z_s / D_s`` and ``d style_mean / d style = 1/m``, so
``grad_style = G z_s / D_s + (sum_spatial g) / m``.

>>> import numpy as np
>>> x = np.array([[[1.0, 3.0]]])                      # N=1, C=1, n=2
>>> s = np.array([[[10.0, 20.0, 30.0]]])              # m=3: mean 20, unbiased var 100
>>> forward(x, s, variance_estimator="unbiased", eps=0.0)["y"].tolist()
[[[12.928932188134524, 27.071067811865476]]]
>>> forward(x, s, variance_estimator="biased", eps=0.0)["y"].round(6).tolist()
[[[11.835034, 28.164966]]]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import instance_norm
from ._checks import (
    FloatArray,
    as_float64,
    check_axis,
    check_choice,
    check_eps,
    check_ndim,
    check_nonempty_reduction,
    cotangent_like,
    directions,
    ieee,
)
from ._layout import Layout, row_mean
from ._standardize import AffineNorm, moments

PRIMALS = ("x", "style")
"""Differentiable inputs, in call order; both are required."""
STATS = ("mean", "var", "rstd", "style_mean", "style_var", "style_std")
"""Statistics returned by :func:`forward` beside ``y``, each of shape ``(N, C)``; the variances
are those of ``variance_estimator``."""
NCHW_EXAMPLE: dict[str, int] = {"channel_axis": 1}
"""Hyperparameters of the canonical ``(N, C, H, W)`` example (the content's reduced sets)."""
ESTIMATORS = ("biased", "unbiased")


def input_shapes(shape: tuple[int, ...], hyper: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """A catalog case's style: the content's shape with the first spatial axis one longer.

    The spatial sizes must differ: with ``m = n`` the estimator's factors cancel in ``y``
    (``sqrt(n/(n-1))`` in the content, ``sqrt((m-1)/m)`` in the style) up to eps, so a case with
    equal sizes could not tell the biased from the unbiased estimator.

    >>> input_shapes((2, 3, 5), {}), input_shapes((2, 4, 4, 3), {"channel_axis": -1})
    ({'style': (2, 3, 6)}, {'style': (2, 5, 4, 3)})
    """
    c = int(hyper.get("channel_axis", 1)) % len(shape)
    first = next(i for i in range(1, len(shape)) if i != c)
    return {"style": tuple(s + 1 if i == first else s for i, s in enumerate(shape))}


@dataclass(frozen=True)
class _Parts:
    """The content's normalization and the style's statistics of one call."""

    x: FloatArray
    style: FloatArray
    content: AffineNorm        # eps rescaled for the estimator; affine over (batch, channel)
    content_scale: float       # sqrt((n-1)/n) for the unbiased estimator, else 1
    style_norm: AffineNorm     # the style's standardization with its rescaled eps
    style_scale: float
    style_divisor: int         # D_s
    style_mean: FloatArray     # (N, C)
    style_var: FloatArray      # (N, C), of the estimator
    style_std: FloatArray      # (N, C)
    style_z: FloatArray        # (rows, m): (style - style_mean) * rstd with the rescaled eps


def _estimator_terms(name: str, shape: tuple[int, ...], n: int, estimator: str, eps: float
                     ) -> tuple[float, float, int]:
    """``(scale, rescaled eps, divisor)`` that turn the biased core into ``estimator``."""
    if estimator == "biased":
        return 1.0, eps, n
    if n < 2:
        raise ValueError(
            f"argument {name!r}: got shape {shape} with {n} spatial value per (sample, channel), "
            "expected at least 2 for variance_estimator='unbiased' (it divides by n - 1)"
        )
    return math.sqrt((n - 1) / n), eps * ((n - 1) / n), n - 1


def _layout_of(name: str, a: FloatArray, channel_axis: int) -> Layout:
    check_ndim(name, a, 3)
    c = check_axis("channel_axis", channel_axis, a.ndim)
    check_nonempty_reduction(name, a.shape, tuple(i for i in range(1, a.ndim) if i != c))
    base = instance_norm.layout(a.shape, channel_axis=channel_axis)
    # the style's statistics act as a weight and bias per (sample, channel)
    return dataclasses.replace(base, param_axes=(0, c))


@ieee
def _setup(x: object, style: object, channel_axis: int, variance_estimator: str,
           eps: float) -> _Parts:
    xa, sa = as_float64("x", x), as_float64("style", style)
    estimator = check_choice("variance_estimator", variance_estimator, ESTIMATORS)
    e = check_eps(eps)
    lay_x, lay_s = _layout_of("x", xa, channel_axis), _layout_of("style", sa, channel_axis)
    if lay_s.stat_shape != lay_x.stat_shape:
        raise ValueError(
            f"argument 'style': got shape {sa.shape} with (batch, channels) {lay_s.stat_shape}, "
            f"expected the content's (batch, channels) {lay_x.stat_shape} on the same axes"
        )
    cx, ex, _ = _estimator_terms("x", xa.shape, lay_x.n, estimator, e)
    cs, es, ds = _estimator_terms("style", sa.shape, lay_s.n, estimator, e)
    m = moments(lay_s.to_rows(sa), es, center=True)
    var_b = m.var
    ratio = lay_s.n / ds
    # sqrt(var + eps) directly where the variance is a normal finite number (fewest roundings);
    # through the core's overflow-safe rstd where it overflowed or underflowed
    direct = np.isfinite(var_b) & (var_b * ratio + e > 1e-290)
    std = np.where(direct, np.sqrt(var_b * ratio + e), 1.0 / (cs * m.rstd))
    stat = lay_x.stats_from_rows
    return _Parts(
        x=xa, style=sa, content=AffineNorm(layout=lay_x, eps=ex, center=True), content_scale=cx,
        style_norm=AffineNorm(layout=lay_s, eps=es, center=True), style_scale=cs,
        style_divisor=ds, style_mean=stat(m.mean), style_var=stat(var_b * ratio),
        style_std=stat(std), style_z=m.z)


def layout(shape: tuple[int, ...], *, channel_axis: int = 1) -> Layout:
    """The content's reduction layout (instance norm's) for an input of ``shape``.

    >>> layout((2, 3, 5)).stat_shape, layout((2, 3, 5)).n
    ((2, 3), 5)
    """
    return instance_norm.layout(shape, channel_axis=channel_axis)


def _affine(p: _Parts) -> tuple[FloatArray, FloatArray]:
    """The content's weight ``sqrt((n-1)/n) * style_std`` and bias ``style_mean``, (N, C)."""
    return p.content_scale * p.style_std, p.style_mean


def forward(x: object, style: object, *, channel_axis: int = 1, variance_estimator: str,
            eps: float) -> dict[str, FloatArray]:
    """Return ``{"y"}`` and :data:`STATS`; see the module docstring for the definition."""
    p = _setup(x, style, channel_axis, variance_estimator, eps)
    a, b = _affine(p)
    out = p.content.outputs(p.x, a, b)
    with np.errstate(all="ignore"):
        # the core reports the biased variance of the rescaled-eps standardization
        n = p.content.layout.n
        ratio = 1.0 if p.content_scale == 1.0 else n / (n - 1)
        out["var"] = out["var"] * ratio
        out["rstd"] = out["rstd"] * p.content_scale
    out.update(style_mean=p.style_mean, style_var=p.style_var, style_std=p.style_std)
    return out


def _style_rows_term(p: _Parts, g_a: FloatArray) -> FloatArray:
    """``d style_std`` pulled back: ``(content_scale * style_scale / D_s) * g_a * z'_s`` per row."""
    k = p.content_scale * p.style_scale / p.style_divisor
    rows: FloatArray = (k * g_a.reshape(-1))[:, None] * p.style_z
    return rows


def vjp(x: object, style: object, *, cotangent: object, channel_axis: int = 1,
        variance_estimator: str, eps: float) -> dict[str, FloatArray]:
    """Gradients of ``sum(cotangent * y)`` with respect to ``x`` and ``style``."""
    p = _setup(x, style, channel_axis, variance_estimator, eps)
    g = cotangent_like(cotangent, p.x.shape)
    a, b = _affine(p)
    grads = p.content.vjp(p.x, a, b, g)
    lay_s = p.style_norm.layout
    with np.errstate(all="ignore"):
        rows = _style_rows_term(p, grads["weight"]) + (grads["bias"].reshape(-1) / lay_s.n)[:, None]
    return {"x": grads["x"], "style": lay_s.from_rows(rows)}


def _tangent_affine(p: _Parts, ts: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Derivatives of the content's weight and bias along the style tangent ``ts``."""
    lay_s = p.style_norm.layout
    k = p.content_scale * p.style_scale / p.style_divisor
    t2 = lay_s.to_rows(ts)
    with np.errstate(all="ignore"):
        da = k * lay_s.n * row_mean(p.style_z * t2)
        db = row_mean(t2)
    stat = p.content.layout.stats_from_rows
    return stat(da), stat(db)


def jvp(x: object, style: object, *, tangent: Mapping[str, object], channel_axis: int = 1,
        variance_estimator: str, eps: float) -> FloatArray:
    """Directional derivative of ``y``; missing tangent keys are zero."""
    p = _setup(x, style, channel_axis, variance_estimator, eps)
    t = directions("tangent", tangent, {"x": p.x, "style": p.style})
    ts = t["style"]
    assert ts is not None
    a, b = _affine(p)
    da, db = _tangent_affine(p, ts)
    return p.content.jvp(p.x, a, b, {"x": t["x"], "weight": da, "bias": db})


def second_order(x: object, style: object, *, cotangent: object, tangent: Mapping[str, object],
                 channel_axis: int = 1, variance_estimator: str, eps: float
                 ) -> dict[str, FloatArray]:
    """Derivative of :func:`vjp` (``cotangent`` held fixed) along ``tangent``."""
    p = _setup(x, style, channel_axis, variance_estimator, eps)
    g = cotangent_like(cotangent, p.x.shape)
    t = directions("tangent", tangent, {"x": p.x, "style": p.style})
    ts = t["style"]
    assert ts is not None
    a, b = _affine(p)
    da, db = _tangent_affine(p, ts)
    # x: the core's second order with the weight moving along da; its "weight" entry is the
    # derivative of G = sum g * z'_x, which the style's gradient is linear in
    so = p.content.second_order(p.x, a, b, g, {"x": t["x"], "weight": da, "bias": db})
    g_a = p.content.vjp(p.x, a, b, g)["weight"]
    lay_s = p.style_norm.layout
    # the style's z' moves by J'_s ts: the core's JVP of its standardization
    dz = lay_s.to_rows(p.style_norm.jvp(p.style, None, None, {"x": ts}))
    k = p.content_scale * p.style_scale / p.style_divisor
    with np.errstate(all="ignore"):
        rows = (k * so["weight"].reshape(-1))[:, None] * p.style_z \
            + (k * g_a.reshape(-1))[:, None] * dz
    return {"x": so["x"], "style": lay_s.from_rows(rows)}
