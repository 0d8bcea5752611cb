"""``mutant-qk-wrong-axis``: each head's queries and keys are normalized over the sequence axis.

Bug class: the reduction axis of the per-head norm mixed up with the token axis (``dim=-2``
instead of ``dim=-1``, or a ``(B, T, H, Dh)`` tensor normalized as if it were ``(B, H, T, Dh)``),
so every query is divided by the norm of a column of the head's ``(T, Dh)`` matrix. Exposed by
every qk_norm case with more than one token (l2-learned-bhtd, rms-head-qwen3-bhtd, ...), forward
(``q_hat`` and the logits) and every derivative; not by single-token cases (l2-decode-tq1's
queries are still wrong because Tk = 3).
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._qk_norm import QkSteps


class WrongAxis(Numerics, QkSteps):
    def qk_axes(self, bthd: bool, hidden: bool) -> tuple[int, ...]:
        return (1,) if bthd else (2,)


MUTANT = NumpyAdapter("mutant-qk-wrong-axis", WrongAxis())
