"""``mutant-bin-clip-slope-open``: the gate's gradient is cut at the clip's ends.

Bug class: the slope of ``clip(rho, 0, 1)`` taken as 1 only strictly inside (0, 1), as
``jax.lax.clamp`` differentiates (``jnp.clip`` gives 1/2 there): a gate clamped to exactly 0
or 1 by the optimizer step gets no gradient and can never move back. Exposed by the
batch_instance_norm cases with a gate at 0 or 1 (train-rho=mixed-ncl, train-flax-biased-ends,
train-rho=ends-nchw, eval-ends-batch1, ...) in the vjp, jvp and second-order checks of every
dtype; the forward is unaffected.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num


class ClipSlopeOpen(Numerics):
    def gate_clip(self, rho: Num) -> tuple[Num, Num]:
        r, _ = super().gate_clip(rho)
        return r, ((rho > 0) & (rho < 1)).astype(rho.dtype)


MUTANT = NumpyAdapter("mutant-bin-clip-slope-open", ClipSlopeOpen())
