"""``mutant-grn-no-residual``: GRN without its own residual ``+ x``.

Bug class: ``y = gamma (x nx) + beta``, the residual left to the enclosing block (it is part of
the layer in the ConvNeXt-V2 code and timm). Exposed by every forward, vjp and jvp with x not
zero; zero_init (y = x) shows it most plainly.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter


class GrnNoResidual(Numerics):
    def grn_residual(self) -> bool:
        return False


MUTANT = NumpyAdapter("mutant-grn-no-residual", GrnNoResidual())
