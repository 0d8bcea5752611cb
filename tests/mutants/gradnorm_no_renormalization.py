"""``mutant-gradnorm-no-renormalization``: gradnorm skips the renormalization to sum T.

Bug class: the weights left as the optimizer step made them (``y = w - lr d``), so they drift
in scale and the task weighting couples to the global learning rate, which the paper's
renormalization ``w <- T w / sum w`` after every step prevents. Exposed by every training step
whose update does not already sum to T (``y`` and ``weights`` of single steps and trajectories;
the balanced ``all-at-target-T4`` and steps whose signed updates cancel survive).
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._gradnorm import GradNormSteps
from normspec.adapters.numpy_adapter._precision import Num


class NoRenormalization(Numerics, GradNormSteps):
    def gradnorm_renormalize(self, v: Num) -> Num:
        return v


MUTANT = NumpyAdapter("mutant-gradnorm-no-renormalization", NoRenormalization())
