"""``mutant-scaler-eps-placement-swapped``: standardize puts eps on the other side of the sqrt.

Bug class: ONNX MeanVarianceNormalization's ``(x - mean) / (sqrt(var) + eps)`` and Keras'
``sqrt(var + eps)`` exchanged. The two agree when eps is negligible against the variance, so
this needs eps comparable to it: the catalog's eps = 0.1 with a standard deviation of 0.3
(fits, applies and fit-then-apply), eps = 0.5 on a fitted variance of 0.1 .. 0.5 (apply), and
the constant features with eps > 0, whose derivative is ``(I - 11/n)`` over ``eps`` (outside)
or ``sqrt(eps)`` (inside).
"""

from __future__ import annotations

from typing import Any

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num


class EpsPlacementSwapped(Numerics):
    def scaler_denominator(self, var: Num, eps: Any, inside: bool) -> Num:
        return super().scaler_denominator(var, eps, not inside)


MUTANT = NumpyAdapter("mutant-scaler-eps-placement-swapped", EpsPlacementSwapped())
