"""``mutant-sn-frobenius``: spectral_norm's exact sigma is the Frobenius norm.

Bug class: ``torch.linalg.norm(M)`` (or ``jnp.linalg.norm``) without ``ord=2`` is the
Frobenius norm ``sqrt(sum sigma_i^2)``, not the largest singular value. Exposed by every exact
case whose weight has more than one nonzero singular value (``exact-*`` except
``exact-rank1``, where the two norms agree, and ``exact-zero``); power iteration is unaffected.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num
from normspec.adapters.numpy_adapter._spectral_norm import SpectralSteps


class Frobenius(Numerics, SpectralSteps):
    def sn_exact_sigma(self, m: Num) -> tuple[Any, Num, Num, Num]:
        _, uu, s, vv = super().sn_exact_sigma(m)
        return np.sqrt(np.sum(m * m)), uu, s, vv


MUTANT = NumpyAdapter("mutant-sn-frobenius", Frobenius())
