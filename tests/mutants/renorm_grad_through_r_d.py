"""``mutant-renorm-grad-through-r-d``: batch renorm differentiated through its r and d.

Bug class: batch renormalization written without ``stop_gradient``/``detach`` on ``r`` and
``d``, so autodiff adds their dependence on the batch: where ``r`` is not clipped,
``dr/dx_i = z_i / (n sigma_running)``, and where ``d`` is not clipped,
``dd/dx_i = 1 / (n sigma_running)``. The input gradient gains
``w (z mean(z g) + mean(g)) / sigma_running`` per channel (the same symmetric term in the JVP).
Exposed by the vjp and jvp checks of batch_renorm training cases where r or d is not clipped,
in any dtype. Forward, state and the weight and bias gradients are unaffected, as are cases
with both r and d clipped (rmax = 1, dmax = 0 included) and evaluation.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Normalized, Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._numerics import jacobian
from normspec.adapters.numpy_adapter._precision import Num, reduce_mean


class GradThroughCorrections(Numerics):
    def renorm_jacobian(self, nrm: Normalized, v: Num, axes: tuple[int, ...], r: Num,
                        inv_sigma_running: Num, r_free: Num, d_free: Num) -> Num:
        through_r = r_free * nrm.z * reduce_mean(nrm.z * v, axes)
        through_d = d_free * reduce_mean(v, axes)
        out: Num = r * jacobian(nrm, v, axes, True) + inv_sigma_running * (through_r + through_d)
        return out


MUTANT = NumpyAdapter("mutant-renorm-grad-through-r-d", GradThroughCorrections())
