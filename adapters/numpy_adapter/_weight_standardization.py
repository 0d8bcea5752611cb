"""Weight standardization: the moment core over every axis of the weight but ``kept_axis``.

Per output channel ``o`` (one index of ``kept_axis``), over the other axes, in the dtype under
test (float32 for 16-bit storage)::

    mean = mean(x),  var = mean((x - mean)^2) (two passes, biased),
    rstd = 1 / sqrt(var + eps),  y = (x - mean) * rstd

It is batch normalization's geometry (reduce every axis but one) on a weight, with no affine:
the moment steps of :class:`._numerics.Numerics` (mean, variance, rstd, the Jacobian), so the
mutants of those steps apply to it as they do to the other moment methods.
"""

from __future__ import annotations

from ._moments import MomentMethod
from ._numerics import hyper_value

WEIGHT_STANDARDIZATION = MomentMethod(
    name="weight_standardization", primals=("x",),
    stats=(("mean", "mean"), ("var", "var"), ("rstd", "rstd")),
    setup=lambda nx, shape, h: (
        nx.batch_geometry(shape, hyper_value(h, "kept_axis", "weight_standardization")), True))
