"""``mutant-scaler-ddof-swapped``: standardize fits the variance with the other ``ddof``.

Bug class: scikit-learn's StandardScaler (``ddof = 0``) and ``pandas``/``torch.std``'s default
(``ddof = 1``) confused, so ``var * n / (n - 1)`` is stored where the biased variance belongs or
the reverse. Exposed by every fit (forward ``y``, ``var``, ``rstd`` and all derivatives) with a
small reduction set (n = 7: a factor sqrt(7/6) in ``y``), and by the evaluation of fit-then-apply
trajectories; a single apply is unaffected (it reads the given variance).
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num


class DdofSwapped(Numerics):
    def scaler_variance(self, var_b: Num, n: int, ddof: int) -> Num:
        return super().scaler_variance(var_b, n, 1 - ddof)


MUTANT = NumpyAdapter("mutant-scaler-ddof-swapped", DdofSwapped())
