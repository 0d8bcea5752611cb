"""``mutant-sn-order-swapped``: spectral_norm's power iteration runs in the other order.

Bug class: the two PyTorch APIs disagree (the hook updates ``v`` then ``u``, the
parametrization ``u`` then ``v``), so code ported between them swaps the order. Exposed by every
power-iteration training call (``power-*``, every ``traj-*`` step): ``u``, ``v`` and ``sigma``
differ; exact mode and evaluation are unaffected.
"""

from __future__ import annotations

from typing import Any

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num
from normspec.adapters.numpy_adapter._spectral_norm import SpectralSteps


class OrderSwapped(Numerics, SpectralSteps):
    def sn_iteration(self, m: Num, u: Num, v: Num, eps: Any, order: str) -> tuple[Num, Num]:
        other = "u_first" if order == "v_first" else "v_first"
        return super().sn_iteration(m, u, v, eps, other)


MUTANT = NumpyAdapter("mutant-sn-order-swapped", OrderSwapped())
