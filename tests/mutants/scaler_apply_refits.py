"""``mutant-scaler-apply-refits``: applying a fitted scaler recomputes the statistics.

Bug class: ``fit_transform`` where ``transform`` was meant (or a normalization layer left in
training mode), so the data being transformed is standardized with its own mean and variance
and the fitted state is ignored. Exposed by every apply-only case whose given statistics differ
from the batch's own, and by the evaluation batch of every fit-then-apply trajectory (drawn from
another distribution than the fit); fits are unaffected.
"""

from __future__ import annotations

from collections.abc import Callable

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num


class ApplyRefits(Numerics):
    def scaler_apply_statistics(self, fitted: tuple[Num, Num],
                                refit: Callable[[], tuple[Num, Num]]) -> tuple[Num, Num]:
        return refit()


MUTANT = NumpyAdapter("mutant-scaler-apply-refits", ApplyRefits())
