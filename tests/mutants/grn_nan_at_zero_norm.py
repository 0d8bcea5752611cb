"""``mutant-grn-nan-at-zero-norm``: the norm's derivative ``x / gx`` taken as is.

At a zero channel that is 0 / 0 = NaN.

Bug class: the naive derivative of the L2 norm (what autodiff of sqrt(sum x^2) gives, JAX's
jnp.linalg.norm included) instead of the subgradient 0 PyTorch's autograd returns. Exposed by
the derivatives of the cases with a zero channel: zeros, zero_channel, zero_channel-nchw.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num


class GrnNanAtZeroNorm(Numerics):
    def grn_unit(self, x: Num, gx: Num) -> Num:
        out: Num = x / gx
        return out


MUTANT = NumpyAdapter("mutant-grn-nan-at-zero-norm", GrnNanAtZeroNorm())
