"""A strict stand-in for the tolerance model, so runner tests do not depend on its budgets.

A quantity passes when it equals the float64 reference within 1e-9 of the reference's
largest magnitude, with NaN/Inf at the same places.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from normspec.conformance.tolerance import Comparison

BUDGET = 1e-9


def strict_compare(method: str, dtype: str, quantity: str, tol_class: str, got: np.ndarray,
                   expected: np.ndarray, case: Any, *, check: str = "forward") -> Comparison:
    finite = np.isfinite(expected)
    scale = float(np.max(np.abs(expected[finite]), initial=0.0)) or 1.0
    with np.errstate(invalid="ignore"):
        diff = np.where(finite, np.abs(got - expected), 0.0)
    special_bad = ~finite & ~((np.isnan(expected) & np.isnan(got)) | (got == expected))
    bad = special_bad | (diff > BUDGET * scale) | (finite & ~np.isfinite(got))
    error = float(np.max(diff, initial=0.0)) / scale
    first = tuple(tuple(int(i) for i in row) for row in np.argwhere(bad)[:5])
    mismatched = int(bad.sum())
    message = "" if not mismatched else (
        f"Mismatched elements: {mismatched} / {bad.size}\nFirst mismatched indices: "
        f"{list(first)}\nMax absolute difference: {float(np.max(diff, initial=0.0)):.6g}")
    return Comparison(passed=not mismatched, error=error, budget=BUDGET,
                      headroom=error / BUDGET, mismatched=mismatched, total=int(bad.size),
                      first_mismatches=first, max_abs=float(np.max(diff, initial=0.0)),
                      max_rel=error, message=message)
