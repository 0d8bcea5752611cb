"""``mutant-sn-grad-through-iteration``: spectral_norm's u and v are not detached.

Bug class: the power iteration left on the autodiff tape (no ``torch.no_grad`` / no
``stop_gradient``; also what forward-mode AD through PyTorch's hook would compute), so
``d sigma / dW`` gains the motion of ``u`` and ``v`` with ``W``. Exposed by the VJP, JVP and
second order of the power-iteration training calls (``power-*`` except ``power-zero``, whose
derivatives are NaN either way; at a converged pair, ``power-rank1`` and
``power-v_first-n20-converged``, the extra term vanishes and what remains is the mutant's own
difference-quotient error); evaluation and exact mode are unaffected.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num
from normspec.adapters.numpy_adapter._spectral_norm import SpectralSteps


class GradThroughIteration(Numerics, SpectralSteps):
    def sn_sigma_gradient(self, m: Num, u: Num, v: Num, run: Any) -> Num:
        # d sigma / dM with u(M) and v(M) moving too: sigma(M) = u(M) . (M v(M)) differenced
        # along each basis matrix
        moved = run(m + m.dtype.type(1))
        if all(np.array_equal(a, b) for a, b in zip(moved, (u, v), strict=True)):
            return np.outer(u, v)  # evaluation: the state does not depend on M
        grad = np.zeros_like(m)
        for idx in np.ndindex(*m.shape):
            e = np.zeros_like(m)
            e[idx] = 1
            grad[idx] = self._dsigma(m, e, run)
        return grad

    def _dsigma(self, m: Num, e: Num, run: Any) -> Any:
        h = m.dtype.type(np.sqrt(np.finfo(m.dtype).eps) * max(float(np.max(np.abs(m))), 1e-30))
        # a central difference in the compute dtype (error ~ sqrt(eps)) is enough to show the
        # extra term, which is O(1) for a state that is not yet a singular pair
        up, vp = run(m + h * e)
        um, vm = run(m - h * e)
        return ((up @ ((m + h * e) @ vp)) - (um @ ((m - h * e) @ vm))) / (2 * h)


MUTANT = NumpyAdapter("mutant-sn-grad-through-iteration", GradThroughIteration())
