"""``mutant-l2-scale-detached``: the learned scalar g gets no gradient.

Bug class: FixNorm's learned g confused with the original FixNorm's fixed radius r (a constant,
or a ``register_buffer`` instead of an ``nn.Parameter``), or ScaleNorm's g' detached. Exposed by
the VJP (and the second order) of every fix_norm and scale_norm case whose ``sum(g u)`` is not
zero: nearly all of them.
"""

from __future__ import annotations

import numpy as np
from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._l2_scale import L2ScaleSteps
from normspec.adapters.numpy_adapter._precision import Num


class ScaleDetached(Numerics, L2ScaleSteps):
    def scale_gradient(self, per_module: Num) -> Num:
        return np.zeros((), dtype=per_module.dtype)


MUTANT = NumpyAdapter("mutant-l2-scale-detached", ScaleDetached())
