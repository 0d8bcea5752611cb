"""Option values shared by ``normspec run`` and the pytest plugin, validated the same way."""

from __future__ import annotations

import math

MAX_TIMEOUT = 86_400.0
"""The longest per-call timeout accepted (one day): a larger value cannot be waited on
reliably (``inf`` or ``1e300`` overflow the pipe's poll) and would never end a hung run."""


def seconds(text: str) -> float:
    """A timeout in seconds: a finite number with ``0 < value <= MAX_TIMEOUT``.

    Raises ValueError naming the value and the accepted range.
    """
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"got {text!r}, expected a number of seconds") from None
    if not (math.isfinite(value) and 0 < value <= MAX_TIMEOUT):
        raise ValueError(f"got {text!r}, expected a number of seconds in (0, {MAX_TIMEOUT:g}]")
    return value


__all__ = ["MAX_TIMEOUT", "seconds"]
