"""``mutant-adain-biased-variance``: AdaIN with the biased variance where the spec says unbiased.

Bug class: building AdaIN from an instance-norm layer or ``torch.var(unbiased=False)`` /
``jnp.var`` while the paper's code uses ``torch.var``'s Bessel-corrected default. The factors
cancel in ``y`` when content and style have equal spatial sizes, so it needs the catalog's
unequal sizes (the style has one more row): every ``variance_estimator="unbiased"`` case with a
small set (n = 7, 13, 2) exposes it, and the statistics ``var``/``style_var`` everywhere.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._adaptive_instance_norm import AdainSteps
from normspec.adapters.numpy_adapter._precision import Num


class AdainBiasedVariance(Numerics, AdainSteps):
    def adain_variance(self, biased: Num, n: int, estimator: str) -> Num:
        return biased


MUTANT = NumpyAdapter("mutant-adain-biased-variance", AdainBiasedVariance())
