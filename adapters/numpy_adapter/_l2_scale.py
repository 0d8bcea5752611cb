"""The L2 methods (fix_norm, scale_norm, unit_norm), composed over this adapter's lp_norm.

With ``u = x / max(||x||_2, eps)`` (the ``lp_norm`` method with ``p = 2``) and the scalar
``w`` (shape ``()``)::

    forward:  y = w u
    vjp:      dx = lp_norm.vjp(w g),   dw = sum(g u)
    jvp:      dy = w lp_norm.jvp(t) + tw u
    second:   dx' = tw lp_norm.vjp(g) + w lp_norm.second_order(g, t),  dw' = sum(g lp_norm.jvp(t))

scale_norm is the same along the last axis, with ``x``'s leading axis indexing the M modules
that share ``w``: ``dw`` is summed per module, then over the modules.

unit_norm (nGPT) is lp_norm with ``p = 2`` and no scalar.

The scalar's gradient is the one step where implementations differ (one shared parameter, or
one per vector that nobody sums, or a radius held fixed); it is the step :class:`L2ScaleSteps`
names, so that a mutant replaces it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._lp_norm import LP_NORM, _prepare
from ._numerics import Numerics, hyper_value
from ._precision import Num, Precision, reduce_sum


class L2ScaleSteps:
    """The numerical steps of the L2 methods that a mutant may replace."""

    def l2_axis(self, axis: Any) -> Any:
        """The axis the vectors lie along: the one the caller gives."""
        return axis

    def scale_gradient(self, per_module: Num) -> Num:
        """The shared scalar's gradient from the per-module sums ``(M,)``: their sum."""
        return reduce_sum(per_module, (0,)).reshape(())


_DEFAULT = L2ScaleSteps()


def _steps(nx: Numerics) -> L2ScaleSteps:
    return nx if isinstance(nx, L2ScaleSteps) else _DEFAULT


def _lp_hyper(nx: Numerics, hyper: Mapping[str, Any], method: str, axis: Any = None
              ) -> dict[str, Any]:
    given = hyper_value(hyper, "axis", method) if axis is None else axis
    return {"p": 2.0, "axis": _steps(nx).l2_axis(given), "eps": hyper_value(hyper, "eps", method)}


def _xw(inputs: Mapping[str, Num | None], method: str) -> tuple[Num, Num]:
    x, w = inputs["x"], inputs.get("weight")
    if x is None or w is None:
        raise ValueError(f"argument 'inputs': {method} needs 'x' and 'weight'")
    if w.shape != ():
        raise ValueError(f"argument 'weight': got shape {w.shape}, expected shape () "
                         "(one scalar g)")
    return x, w


@dataclass(frozen=True)
class FixNorm:
    """The fix_norm method (see the module docstring)."""

    primals: tuple[str, ...] = ("x", "weight")
    state: tuple[str, ...] = ()
    method: str = "fix_norm"

    def _hyper(self, nx: Numerics, hyper: Mapping[str, Any]) -> dict[str, Any]:
        return _lp_hyper(nx, hyper, self.method)

    def _per_module(self, a: Num) -> Num:
        """The scalar's gradient terms summed per module: one module here, shape ``(1,)``."""
        return reduce_sum(a, tuple(range(a.ndim))).reshape(1)

    def forward(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                hyper: Mapping[str, Any]) -> dict[str, Num]:
        x, w = _xw(inputs, self.method)
        out = LP_NORM.forward(nx, prec, {"x": x}, self._hyper(nx, hyper))
        return {"y": w * out["y"], "norm": out["norm"]}

    def vjp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], g: Num) -> dict[str, Num]:
        x, w = _xw(inputs, self.method)
        lh = self._hyper(nx, hyper)
        u = _prepare(nx, prec, x, lh).y
        dx = LP_NORM.vjp(nx, prec, {"x": x}, lh, w * g)["x"]
        return {"x": dx, "weight": _steps(nx).scale_gradient(self._per_module(g * u))}

    def jvp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], t: Mapping[str, Num]) -> Num:
        x, w = _xw(inputs, self.method)
        lh = self._hyper(nx, hyper)
        u = _prepare(nx, prec, x, lh).y
        dy: Num = w * LP_NORM.jvp(nx, prec, {"x": x}, lh, t)
        if "weight" in t:
            dy = dy + t["weight"] * u
        return dy

    def second_order(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                     hyper: Mapping[str, Any], g: Num, t: Mapping[str, Num]) -> dict[str, Num]:
        x, w = _xw(inputs, self.method)
        lh = self._hyper(nx, hyper)
        dx = w * LP_NORM.second_order(nx, prec, {"x": x}, lh, g, t)["x"]
        if "weight" in t:
            dx = dx + t["weight"] * LP_NORM.vjp(nx, prec, {"x": x}, lh, g)["x"]
        du = LP_NORM.jvp(nx, prec, {"x": x}, lh, t)
        return {"x": dx, "weight": _steps(nx).scale_gradient(self._per_module(g * du))}


@dataclass(frozen=True)
class ScaleNorm(FixNorm):
    """scale_norm: fix_norm along the last axis, the leading axis indexing the M modules that
    share the scalar; its gradient is summed per module, then over the modules."""

    method: str = "scale_norm"

    def _hyper(self, nx: Numerics, hyper: Mapping[str, Any]) -> dict[str, Any]:
        return _lp_hyper(nx, hyper, self.method, axis=-1)

    def _per_module(self, a: Num) -> Num:
        if a.ndim < 2:
            raise ValueError(f"argument 'x': got shape {a.shape}, expected (M, ..., D): a module "
                             "axis and a hidden axis")
        return reduce_sum(a, tuple(range(1, a.ndim))).reshape(a.shape[0])

    def forward(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                hyper: Mapping[str, Any]) -> dict[str, Num]:
        x, _ = _xw(inputs, self.method)
        self._per_module(x)
        return super().forward(nx, prec, inputs, hyper)


@dataclass(frozen=True)
class UnitNorm:
    """unit_norm (nGPT): this adapter's lp_norm with ``p = 2`` along the given axis."""

    primals: tuple[str, ...] = ("x",)
    state: tuple[str, ...] = ()
    method: str = "unit_norm"

    def forward(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                hyper: Mapping[str, Any]) -> dict[str, Num]:
        return LP_NORM.forward(nx, prec, inputs, _lp_hyper(nx, hyper, self.method))

    def vjp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], g: Num) -> dict[str, Num]:
        return LP_NORM.vjp(nx, prec, inputs, _lp_hyper(nx, hyper, self.method), g)

    def jvp(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
            hyper: Mapping[str, Any], t: Mapping[str, Num]) -> Num:
        return LP_NORM.jvp(nx, prec, inputs, _lp_hyper(nx, hyper, self.method), t)

    def second_order(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                     hyper: Mapping[str, Any], g: Num, t: Mapping[str, Num]) -> dict[str, Num]:
        return LP_NORM.second_order(nx, prec, inputs, _lp_hyper(nx, hyper, self.method), g, t)


FIX_NORM = FixNorm()
SCALE_NORM = ScaleNorm()
UNIT_NORM = UnitNorm()

NUMPY_METHODS: dict[str, Any] = {"fix_norm": FIX_NORM, "scale_norm": SCALE_NORM,
                                 "unit_norm": UNIT_NORM}
"""This module's methods, keyed by name (registered in the adapter's METHODS table)."""
