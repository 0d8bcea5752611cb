"""Standardization (z-score feature scaling), fitted on one data set and applied to another.

``axis`` lists the reduction axes (required; ONNX MeanVarianceNormalization's default is
``[0, 2, 3]``, scikit-learn's StandardScaler is ``[0]`` on an ``(n_samples, n_features)``
matrix); an int or a string ``"0,2,3"`` (the catalogs' scalar form) is accepted too.
Every index of the kept axes is one feature; its reduction set holds
``n = prod(x.shape[a] for a in axis)`` values.

**Fit** (``training=True``) computes, per feature, and replaces any given state::

    mean = (1/n) sum x
    var  = (1/(n - ddof)) sum (x - mean)^2        (ddof 0 or 1)
    y = apply(x, mean, var)

**Apply** (``training=False``) uses the given ``mean`` and ``var`` (required)::

    y = (x - mean) / denom(var)
    denom(v) = sqrt(v + eps)        eps_placement == "inside_sqrt"    (Keras, TF Transform)
    denom(v) = sqrt(v) + eps        eps_placement == "outside_sqrt"   (ONNX MVN: eps = 1e-9)
    denom(v) = 1  where v == 0      zero_variance == "unit_scale"     (scikit-learn: y = x - mean)

with ``zero_variance == "ieee"`` the formula holds at ``v == 0`` too (``0/0`` is NaN when
``eps == 0``). The state is replaced, never merged: a fit does not read the given state, and
there is no step counter (scikit-learn's ``partial_fit`` merging is not specified here).
A fit-then-apply pair is a trajectory: one training step, then evaluation on another batch.

Derivatives are with respect to ``x`` only. In apply mode the statistics are constants and
``J = diag(1 / denom)``. In fit mode, with ``k = n / (n - ddof)``, ``d = x - mean``,
``sigma = sqrt(var_biased)``, ``z0 = d / sigma`` and per feature:

* inside: ``y = z(eps / k) / sqrt(k)``, the shared moment core's normalization with
  ``eps / k`` (``sqrt(k var_b + eps) = sqrt(k) sqrt(var_b + eps/k)``), so its Jacobian,
  JVP and second order are the core's divided by ``sqrt(k)``;
* outside: ``s = sqrt(k) sigma + eps``, ``a = sqrt(k) sigma / s`` and
  ``J v = (1/s) (v - mean(v) - a z0 mean(z0 v))``. At ``sigma = 0`` (``eps > 0``) the
  Jacobian is the limit ``(I - 1 1^T / n) / eps``; the function is not twice differentiable
  there and the spec takes the second order of that branch, 0;
* unit_scale features with ``var == 0``: ``y = x - mean``, ``J = I - 1 1^T / n``, second
  order 0 (the branch's derivative, as a fixed unit scale gives).

>>> import numpy as np
>>> x = np.array([[1.0, 5.0], [3.0, 5.0]])
>>> out = forward(x, training=True, axis=[0], ddof=0, eps=0.0, eps_placement="inside_sqrt",
...               zero_variance="unit_scale")
>>> out["y"].tolist(), out["mean"].tolist(), out["var"].tolist()
([[-1.0, 0.0], [1.0, 0.0]], [2.0, 5.0], [1.0, 0.0])
>>> forward(np.array([[4.0, 7.0]]), training=False, axis=[0], ddof=0, eps=0.0,
...         eps_placement="inside_sqrt", zero_variance="unit_scale",
...         mean=out["mean"], var=out["var"])["y"].tolist()
[[2.0, 2.0]]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ._checks import (
    FloatArray,
    as_float64,
    check_axis,
    check_choice,
    check_eps,
    check_ndim,
    check_nonempty_reduction,
    check_shape,
    cotangent_like,
    directions,
    ieee,
    optional_float64,
)
from ._layout import Layout, row_mean
from ._standardize import AffineNorm, moments

PRIMALS = ("x",)
"""The only differentiable input; the fitted statistics are state, never differentiated."""
STATS = ("mean", "var", "rstd")
"""What a fit returns beside ``y`` (shape: the kept axes of ``x``, in order): the fitted
``mean`` and ``var`` (the state) and ``rstd = 1 / denom(var)``, the factor ``x - mean`` is
multiplied by (scikit-learn's ``1 / scale_``)."""
STATE = ("mean", "var")
"""The fitted statistics: taken by keyword, required to apply, replaced by a fit."""
NCHW_EXAMPLE: dict[str, list[int]] = {"axis": [0, 2, 3]}
"""ONNX MeanVarianceNormalization's default axes on ``(N, C, H, W)``: one feature per channel."""
EPS_PLACEMENTS = ("inside_sqrt", "outside_sqrt")
Axes = Sequence[int] | int | str
"""Reduction axes: a list of ints, one int, or a string ``"0,2,3"``."""
ZERO_VARIANCE = ("ieee", "unit_scale")


def check_axes(name: str, axis: object, ndim: int) -> tuple[int, ...]:
    """Distinct axes, normalized and sorted, from an int, a list of ints or a string such as
    ``"0,2,3"`` (the golden-vector catalogs' form: their hyperparameters are scalars)."""
    if isinstance(axis, str):
        try:
            axis = [int(part) for part in axis.split(",")]
        except ValueError:
            raise ValueError(f"argument {name!r}: got {axis!r}, expected comma-separated "
                             "integer axes such as '0,2,3'") from None
    if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
        axis = [axis]
    if isinstance(axis, bytes) or not isinstance(axis, Sequence) or not axis:
        raise TypeError(f"argument {name!r}: got {axis!r}, expected a non-empty list of "
                        "integer axes")
    axes = tuple(check_axis(name, a, ndim) for a in axis)
    if len(set(axes)) != len(axes):
        raise ValueError(f"argument {name!r}: got {list(axis)!r}, expected distinct axes")
    return tuple(sorted(axes))


def _check_ddof(ddof: object) -> int:
    if isinstance(ddof, bool) or not isinstance(ddof, (int, np.integer)) or ddof not in (0, 1):
        raise ValueError(f"argument 'ddof': got {ddof!r}, expected 0 or 1")
    return int(ddof)


def _check_training(training: object) -> bool:
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"argument 'training': got {training!r}, expected True or False")
    return bool(training)


@dataclass(frozen=True)
class _Call:
    x: FloatArray
    layout: Layout
    training: bool
    ddof: int
    eps: float
    inside: bool
    unit_scale: bool
    mean: FloatArray | None
    var: FloatArray | None

    @property
    def k(self) -> float:
        """``n / (n - ddof)``: the fitted variance is the biased one times ``k``."""
        n = self.layout.n
        return n / (n - self.ddof)


def layout_for(shape: tuple[int, ...], axes: tuple[int, ...]) -> Layout:
    """Rows = the kept axes' indices (features), columns = the reduction set."""
    keep = tuple(i for i in range(len(shape)) if i not in axes)
    return Layout(shape=shape, perm=keep + axes, stat_shape=tuple(shape[i] for i in keep),
                  n=math.prod(shape[i] for i in axes), param_axes=keep)


def _setup(x: object, *, training: object, axis: object, ddof: object, eps: object,
           eps_placement: object, zero_variance: object, mean: object,
           var: object) -> _Call:
    xa = as_float64("x", x)
    check_ndim("x", xa, 1)
    axes = check_axes("axis", axis, xa.ndim)
    lay = layout_for(xa.shape, axes)
    d = _check_ddof(ddof)
    e = check_eps(eps)
    placement = check_choice("eps_placement", eps_placement, EPS_PLACEMENTS)
    zero = check_choice("zero_variance", zero_variance, ZERO_VARIANCE)
    train = _check_training(training)
    fm, fv = optional_float64("mean", mean), optional_float64("var",
                                                                           var)
    check_shape("mean", fm, lay.stat_shape)
    check_shape("var", fv, lay.stat_shape)
    if fv is not None and bool(np.any(fv < 0)):
        raise ValueError(f"argument 'var': got negative entries {fv[fv < 0].tolist()}, "
                         "expected a variance >= 0 (or NaN)")
    if train:
        check_nonempty_reduction("x", xa.shape, axes)
        if lay.n - d < 1:
            raise ValueError(f"argument 'x': got shape {xa.shape} with n={lay.n} value per "
                             f"feature, expected n >= 2 for ddof={d}")
    elif fm is None or fv is None:
        missing = "mean" if fm is None else "var"
        raise ValueError(f"argument {missing!r}: got None with training=False, expected the "
                         "fitted statistics (mean and var) to apply")
    return _Call(x=xa, layout=lay, training=train, ddof=d, eps=e,
                 inside=placement == "inside_sqrt", unit_scale=zero == "unit_scale",
                 mean=fm, var=fv)


def input_shapes(shape: tuple[int, ...], hyper: Mapping[str, object]) -> dict[str, tuple[int, ...]]:
    """The state's shape: ``x.shape`` without the reduction axes."""
    axes = check_axes("axis", hyper.get("axis"), len(shape))
    stat = layout_for(tuple(shape), axes).stat_shape
    return {"mean": stat, "var": stat}


def layout(shape: tuple[int, ...], *, axis: Axes) -> Layout:
    """The reduction layout of a fit (no computation).

    >>> from normspec.reference._layout import reduction_sets
    >>> reduction_sets(layout((2, 3), axis=[0])).tolist()     # one set per column
    [[0, 1, 2], [0, 1, 2]]
    """
    return layout_for(tuple(shape), check_axes("axis", axis, len(shape)))


# ---- per-row pieces (rows = features) -------------------------------------------------


def _denom(call: _Call, v: FloatArray) -> FloatArray:
    denom = np.sqrt(v + call.eps) if call.inside else np.sqrt(v) + call.eps
    if call.unit_scale:
        denom = np.where(v == 0.0, 1.0, denom)
    return denom


def _core(call: _Call) -> AffineNorm:
    """The shared moment core with ``eps / k``: its ``z`` is ``sqrt(k) * y`` (inside)."""
    return AffineNorm(layout=call.layout, eps=call.eps / call.k, center=True)


@dataclass(frozen=True)
class _Outside:
    """Per-row quantities of the outside placement: ``z0``, ``s``, ``a`` (see docstring)."""

    z0: FloatArray
    s: FloatArray
    a: FloatArray
    var_b: FloatArray


def _outside(call: _Call, x2: FloatArray) -> _Outside:
    m = moments(x2, 0.0, True)
    sigma = np.sqrt(m.var)
    flat = sigma == 0.0
    z0 = np.where(flat[:, None], 0.0, m.z)
    sk = math.sqrt(call.k)
    s = sk * sigma + call.eps
    a = np.where(flat, 0.0, sk * sigma / s)
    return _Outside(z0=z0, s=s, a=a, var_b=m.var)


def _fit_rows(call: _Call) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``y`` rows, the fitted mean and the fitted (ddof) variance, per feature."""
    lay = call.layout
    x2 = lay.to_rows(call.x)
    if call.inside:
        m = moments(x2, call.eps / call.k, True)
        y2 = m.z / math.sqrt(call.k)
        var_b = m.var
    else:
        o = _outside(call, x2)
        m = moments(x2, 0.0, True)
        # y = d / (sqrt(k) sigma + eps) = z0 / (sqrt(k) + eps / sigma); flat rows: d = 0
        y2 = o.z0 / (math.sqrt(call.k) + call.eps * m.rstd[:, None])
        y2 = np.where((o.var_b == 0.0)[:, None] & (call.eps == 0.0), np.nan, y2)
        var_b = o.var_b
    if call.unit_scale:
        y2 = np.where((var_b == 0.0)[:, None], 0.0, y2)
    var = var_b * lay.n / (lay.n - call.ddof)
    return y2, m.mean, var


def _flat_rows(call: _Call) -> npt.NDArray[np.bool_]:
    """Rows that the unit_scale convention replaces by ``y = x - mean``."""
    if not call.unit_scale:
        return np.zeros(call.layout.rows, dtype=bool)
    with np.errstate(all="ignore"):
        flat: npt.NDArray[np.bool_] = moments(call.layout.to_rows(call.x), 0.0, True).var == 0.0
    return flat


def _centered(v2: FloatArray) -> FloatArray:
    return v2 - row_mean(v2)[:, None]


def _fit_jacobian(call: _Call, v: FloatArray) -> FloatArray:
    """``J v`` in fit mode (``J`` is symmetric: JVP and VJP alike)."""
    lay = call.layout
    v2 = lay.to_rows(v)
    if call.inside:
        out2 = lay.to_rows(_core(call).jvp(call.x, None, None, {"x": v})) / math.sqrt(call.k)
    else:
        o = _outside(call, lay.to_rows(call.x))
        inner = _centered(v2) - o.a[:, None] * o.z0 * row_mean(o.z0 * v2)[:, None]
        out2 = inner / o.s[:, None]
    flat = _flat_rows(call)
    out2 = np.where(flat[:, None], _centered(v2), out2)
    return lay.from_rows(out2)


def _fit_second(call: _Call, g: FloatArray, t: FloatArray) -> FloatArray:
    lay = call.layout
    if call.inside:
        dx = _core(call).second_order(call.x, None, None, g, {"x": t})["x"]
        out2 = lay.to_rows(dx) / math.sqrt(call.k)
    else:
        o = _outside(call, lay.to_rows(call.x))
        g2, t2 = lay.to_rows(g), lay.to_rows(t)
        sk = math.sqrt(call.k)
        s = o.s[:, None]
        m_t = row_mean(o.z0 * t2)[:, None]          # sigma' (derivative of the biased std)
        big_g = row_mean(o.z0 * g2)[:, None]
        jg = (_centered(g2) - o.a[:, None] * o.z0 * big_g) / s
        s_dot = sk * m_t
        a_dot = sk * m_t * call.eps / (s * s)
        w = _centered(t2) - o.z0 * m_t               # sigma * z0'
        out2 = -(s_dot / s) * jg - (a_dot * o.z0 * big_g + (sk / s) * w * big_g
                                    + (sk / s) * o.z0 * row_mean(w * g2)[:, None]) / s
    flat = _flat_rows(call)
    out2 = np.where(flat[:, None], 0.0, out2)
    return lay.from_rows(out2)


def _apply_denom(call: _Call) -> FloatArray:
    assert call.var is not None
    return call.layout.param_view(_denom(call, call.var))


# ---- public API ---------------------------------------------------------------------


@ieee
def forward(x: object, *, training: bool, axis: Axes, ddof: int, eps: float,
            eps_placement: str, zero_variance: str, mean: object = None,
            var: object = None) -> dict[str, FloatArray]:
    """Fit: ``{"y", "mean", "var", "rstd"}``; apply: ``{"y"}`` (see the module docstring)."""
    call = _setup(x, training=training, axis=axis, ddof=ddof, eps=eps,
                  eps_placement=eps_placement, zero_variance=zero_variance,
                  mean=mean, var=var)
    lay = call.layout
    if not call.training:
        assert call.mean is not None
        return {"y": (call.x - lay.param_view(call.mean)) / _apply_denom(call)}
    y2, mean, var = _fit_rows(call)
    return {"y": lay.from_rows(y2), "mean": lay.stats_from_rows(mean),
            "var": lay.stats_from_rows(var), "rstd": lay.stats_from_rows(1.0 / _denom(call, var))}


@ieee
def vjp(x: object, *, cotangent: object, training: bool, axis: Axes, ddof: int,
        eps: float, eps_placement: str, zero_variance: str, mean: object = None,
        var: object = None) -> dict[str, FloatArray]:
    """``{"x": J^T g}``; apply: ``g / denom``."""
    call = _setup(x, training=training, axis=axis, ddof=ddof, eps=eps,
                  eps_placement=eps_placement, zero_variance=zero_variance,
                  mean=mean, var=var)
    g = cotangent_like(cotangent, call.x.shape)
    if not call.training:
        return {"x": g / _apply_denom(call)}
    return {"x": _fit_jacobian(call, g)}


@ieee
def jvp(x: object, *, tangent: Mapping[str, object], training: bool, axis: Axes,
        ddof: int, eps: float, eps_placement: str, zero_variance: str,
        mean: object = None, var: object = None) -> FloatArray:
    """``J t``; apply: ``t / denom``."""
    call = _setup(x, training=training, axis=axis, ddof=ddof, eps=eps,
                  eps_placement=eps_placement, zero_variance=zero_variance,
                  mean=mean, var=var)
    tx = directions("tangent", tangent, {"x": call.x})["x"]
    assert tx is not None
    if not call.training:
        out: FloatArray = tx / _apply_denom(call)
        return out
    return _fit_jacobian(call, tx)


@ieee
def second_order(x: object, *, cotangent: object, tangent: Mapping[str, object],
                 training: bool, axis: Axes, ddof: int, eps: float,
                 eps_placement: str, zero_variance: str, mean: object = None,
                 var: object = None) -> dict[str, FloatArray]:
    """Derivative of :func:`vjp` along ``tangent`` (``cotangent`` fixed); apply: 0."""
    call = _setup(x, training=training, axis=axis, ddof=ddof, eps=eps,
                  eps_placement=eps_placement, zero_variance=zero_variance,
                  mean=mean, var=var)
    g = cotangent_like(cotangent, call.x.shape)
    tx = directions("tangent", tangent, {"x": call.x})["x"]
    assert tx is not None
    if not call.training:
        return {"x": np.zeros_like(call.x)}
    return {"x": _fit_second(call, g, tx)}
