"""``mutant-sn-eval-iterates``: spectral_norm's evaluation runs the power iteration.

Bug class: Flax's ``SpectralNorm(update_stats=False)`` behaviour, which still iterates from the
stored ``u`` and only does not store the result; the spec's evaluation reads the stored ``u``
and ``v`` and iterates not at all. Exposed by the evaluation cases (``eval-linear``,
``eval-conv``) and the ``eval`` call of every power-iteration trajectory.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._spectral_norm import SpectralSteps


class EvalIterates(Numerics, SpectralSteps):
    def sn_evaluation_iterates(self) -> bool:
        return True


MUTANT = NumpyAdapter("mutant-sn-eval-iterates", EvalIterates())
