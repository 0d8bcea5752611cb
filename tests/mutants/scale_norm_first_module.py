"""``mutant-scale-norm-first-module``: the shared g' gets only the first module's gradient.

Bug class: a scalar that should be ONE parameter of the model copied into each ScaleNorm
module (each module registers its own ``nn.Parameter`` initialised from the same value, or a
functional model that re-reads g' per module and keeps one module's gradient), so the update
of the "shared" g' sees only one module. Exposed by the VJP and second order of every
scale_norm case with M > 1 modules whose other modules' terms do not cancel (M=3-btd, M=6,
modules-cancel, ...); M=1 is unaffected.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._l2_scale import L2ScaleSteps
from normspec.adapters.numpy_adapter._precision import Num


class FirstModule(Numerics, L2ScaleSteps):
    def scale_gradient(self, per_module: Num) -> Num:
        out: Num = per_module[0].reshape(())
        return out


MUTANT = NumpyAdapter("mutant-scale-norm-first-module", FirstModule())
