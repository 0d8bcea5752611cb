"""``mutant-lrn-sliding-window-sum``: LRN window energies from one running sum across channels.

Bug class: Caffe's ``LRNFillScale`` (and kernels written after it) slides one accumulator along
the channels, adding the square that enters the window and subtracting the one that leaves.
The subtraction cancels: a square of 1e6 leaves a residue of about ``u * 1e6`` that every later
window inherits, so windows of small values downstream of a large one get a wrong scale. Values
of one magnitude (the normal cases) leave residues of a few ``u``, inside the budget; the
``mixed_scales-decades=*`` cases of local_response_norm expose it in float64 and float32. The
derivatives are left correct, as in a kernel whose backward recomputes the window sums.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._lrn import LocalResponseNorm
from normspec.adapters.numpy_adapter._numerics import MethodImpl
from normspec.adapters.numpy_adapter._precision import Num, Precision

_METHOD = "local_response_norm"


def sliding_sum(sq: Num, before: int, after: int) -> Num:
    """Window sums over channels ``[c - before, c + after]`` (axis 0) from one accumulator."""
    channels = sq.shape[0]
    out = np.empty_like(sq)
    acc = np.zeros_like(sq[0])
    for c in range(min(after, channels)):
        acc = acc + sq[c]
    for c in range(channels):
        if c + after < channels:
            acc = acc + sq[c + after]
        if c - before - 1 >= 0:
            acc = acc - sq[c - before - 1]
        out[c] = acc
    return out


@dataclass(frozen=True)
class SlidingLrn(LocalResponseNorm):
    def forward(self, nx: Numerics, prec: Precision, inputs: Mapping[str, Num | None],
                hyper: Mapping[str, Any]) -> dict[str, Num]:
        x = inputs["x"]
        assert x is not None
        size = int(hyper["size"])
        axis = int(hyper.get("channel_axis", 1)) % x.ndim
        coeff = prec.scalar(nx.lrn_coefficient(float(hyper["alpha"]), size))
        beta, k = prec.scalar(float(hyper["beta"])), prec.scalar(float(hyper["k"]))
        xc = np.moveaxis(x, axis, 0)
        scale = k + coeff * sliding_sum(xc * xc, *nx.lrn_window(size))
        y = xc * scale ** -beta
        return {"y": np.moveaxis(y, 0, axis), "scale": np.moveaxis(scale, 0, axis)}


class SlidingSumAdapter(NumpyAdapter):
    """The numpy adapter with :class:`SlidingLrn` in place of its local_response_norm."""

    def _prepare(self, method: str, inputs: Mapping[str, Any], hyper: Mapping[str, Any],
                 dtype: str, device: str
                 ) -> tuple[MethodImpl, Precision, dict[str, Num | None], Mapping[str, Any]]:
        impl, prec, loaded, hyper = super()._prepare(method, inputs, hyper, dtype, device)
        return (SlidingLrn() if method == _METHOD else impl), prec, loaded, hyper


MUTANT = SlidingSumAdapter("mutant-lrn-sliding-window-sum")
