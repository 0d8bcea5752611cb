"""conditional_instance_norm: instance norm whose affine row is selected per sample by ``style``.

In instance norm's view space ``(N, C, *S)``, with ``z`` the standardized content
(:func:`._moments.normalize`) and ``w = weight[style]``, ``b = bias[style]`` of shape ``(N, C)``::

    y = z * w + b
    dx = J (g w),   dweight[s] = sum over samples k with style[k] = s of sum(g z),
    dbias[s] = the same of sum(g);   rows no sample selects get 0

The scatter-add is the step :class:`CinSteps` names; a mutant replaces it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._geometry import Geometry
from ._moments import normalize
from ._numerics import Normalized, Numerics, hyper_value, jacobian
from ._precision import Num, Precision, reduce_mean, reduce_sum

_NAME = "conditional_instance_norm"


class CinSteps:
    """The careful choice for each step specific to conditional instance norm."""

    def cin_rows(self, table: Num, style: Any) -> Num:
        """Each sample's row of a ``(S, C)`` table: ``table[style]``."""
        out: Num = table[style]
        return out

    def cin_scatter(self, per_sample: Num, style: Any, styles: int) -> Num:
        """``out[s] = sum of per_sample[k]`` over ``style[k] = s``; unselected rows 0."""
        out = np.zeros((styles, per_sample.shape[1]), dtype=per_sample.dtype)
        np.add.at(out, style, per_sample)
        return out


_DEFAULT = CinSteps()


def _steps(nx: Numerics) -> CinSteps:
    return nx if isinstance(nx, CinSteps) else _DEFAULT


def _style(inputs: Mapping[str, Any], hyper: Mapping[str, Any], batch: int, styles: int
           ) -> np.ndarray:
    raw = inputs.get("style", hyper.get("style"))
    if raw is None:
        raise ValueError("argument 'inputs': got no 'style', expected one int64 style index "
                         "per sample")
    style = np.asarray(raw)
    if style.dtype.kind not in "iu" or style.shape != (batch,):
        raise ValueError(f"argument 'style': got {style.dtype} of shape {style.shape}, expected "
                         f"int64 of shape ({batch},)")
    if np.any((style < 0) | (style >= styles)):
        raise ValueError(f"argument 'style': got {style.tolist()}, expected indices in "
                         f"[0, {styles})")
    return style.astype(np.int64)


@dataclass(frozen=True)
class ConditionalInstanceNorm:
    """The numpy adapter's conditional_instance_norm (see the module docstring)."""

    name: str = _NAME
    primals: tuple[str, ...] = ("x", "weight", "bias")
    state: tuple[str, ...] = ()
    constants: tuple[str, ...] = ("style",)

    def _prepare(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Any],
                 hyper: Mapping[str, Any]
                 ) -> tuple[Geometry, Normalized, Num, Num, np.ndarray, int]:
        x, w, b = inputs["x"], inputs.get("weight"), inputs.get("bias")
        if w is None or b is None:
            raise ValueError("argument 'inputs': expected the (S, C) tables 'weight' and 'bias'")
        geom = nx.instance_geometry(x.shape, hyper.get("channel_axis", 1))
        styles = w.shape[0]
        style = _style(inputs, hyper, x.shape[0], styles)
        eps = prec.scalar(float(hyper_value(hyper, "eps", self.name)))
        nrm = normalize(nx, prec, geom.to_view(x), geom.axes, eps, True)
        steps = _steps(nx)
        view = geom.stat_view
        return (geom, nrm, steps.cin_rows(w, style).reshape(view),
                steps.cin_rows(b, style).reshape(view), style, styles)

    def forward(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Any],
                hyper: Mapping[str, Any]) -> dict[str, Num]:
        geom, nrm, w, b, _, _ = self._prepare(nx, prec, inputs, hyper)
        return {"y": geom.from_view(nrm.z * w + b), "mean": geom.stat(nrm.mean),
                "var": geom.stat(nrm.var), "rstd": geom.stat(nrm.rstd)}

    def _tables(self, nx: Numerics, geom: Geometry, a: Num, style: np.ndarray,
                styles: int) -> Num:
        per_sample = reduce_sum(a, geom.axes).reshape(geom.stat_shape)
        return _steps(nx).cin_scatter(per_sample, style, styles)

    def vjp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Any],
            hyper: Mapping[str, Any], g: Num) -> dict[str, Num]:
        geom, nrm, w, _, style, styles = self._prepare(nx, prec, inputs, hyper)
        gv = geom.to_view(g)
        return {"x": geom.from_view(nx.vjp_x(nrm, gv * w, geom.axes, True)),
                "weight": self._tables(nx, geom, gv * nrm.z, style, styles),
                "bias": self._tables(nx, geom, gv, style, styles)}

    def jvp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Any],
            hyper: Mapping[str, Any], t: Mapping[str, Num]) -> Num:
        geom, nrm, w, _, style, _ = self._prepare(nx, prec, inputs, hyper)
        steps, view = _steps(nx), geom.stat_view
        dy = np.zeros_like(nrm.z)
        if "x" in t:
            dy = dy + jacobian(nrm, geom.to_view(t["x"]), geom.axes, True) * w
        if "weight" in t:
            dy = dy + nrm.z * steps.cin_rows(t["weight"], style).reshape(view)
        if "bias" in t:
            dy = dy + steps.cin_rows(t["bias"], style).reshape(view)
        return geom.from_view(dy)

    def second_order(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Any],
                     hyper: Mapping[str, Any], g: Num, t: Mapping[str, Num]) -> dict[str, Num]:
        geom, nrm, w, b, style, styles = self._prepare(nx, prec, inputs, hyper)
        axes, gv = geom.axes, geom.to_view(g)
        gw = gv * w
        dx = np.zeros_like(nrm.z)
        dz = np.zeros_like(nrm.z)
        if "x" in t:
            tx = geom.to_view(t["x"])
            dz = jacobian(nrm, tx, axes, True)
            ratio = -nrm.rstd * reduce_mean(nrm.z * tx, axes)
            dx = ratio * jacobian(nrm, gw, axes, True) - nrm.rstd * (
                dz * reduce_mean(nrm.z * gw, axes) + nrm.z * reduce_mean(dz * gw, axes))
        if "weight" in t:
            tw = _steps(nx).cin_rows(t["weight"], style).reshape(geom.stat_view)
            dx = dx + jacobian(nrm, gv * tw, axes, True)
        return {"x": geom.from_view(dx),
                "weight": self._tables(nx, geom, gv * dz, style, styles),
                "bias": np.zeros((styles, b.shape[1]), dtype=gv.dtype)}


CONDITIONAL_INSTANCE_NORM = ConditionalInstanceNorm()
