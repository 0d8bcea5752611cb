"""``mutant-power-nan-at-zero``: power_norm differentiates |x|^p at x = 0 as autodiff does.

Bug class: ``p sign(x) |x|^(p-1)`` and ``p (p-1) |x|^(p-2)`` evaluated at x = 0 without the
spec's convention (phi'(0) = 0; phi''(0) = 0 for p < 2): ``0 * inf = NaN`` for p < 1 in the
gradient, NaN or inf in the second order for p < 2 (what ``jnp.abs(x) ** p`` or
``x.abs() ** p`` gives under autodiff). Exposed by the cases with exact zeros and p < 2:
p=0.5-sparse (vjp, jvp, second order), p=1-sparse and p=1.5-sparse (second order), every dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._power_norm import PowerSteps
from normspec.adapters.numpy_adapter._precision import Num


class NanAtZero(Numerics, PowerSteps):
    def power_phi_derivatives(self, v: Num, p: Any) -> tuple[Num, Num]:
        one = v.dtype.type(1)
        a = np.abs(v)
        return np.sign(v) * np.power(a, p - one), (p - one) * np.power(a, p - 2 * one)


MUTANT = NumpyAdapter("mutant-power-nan-at-zero", NanAtZero())
