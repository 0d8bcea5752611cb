"""Adapters: the contract (:mod:`.protocol`), discovery (:mod:`.registry`) and the built-ins.

Frameworks are imported only inside their adapter modules, never by importing this package.
"""

from __future__ import annotations

from .protocol import CALLS, CHECKS, DERIVATIVE_CHECKS, DTYPES, Adapter, Array, Kind, Support

__all__ = ["CALLS", "CHECKS", "DERIVATIVE_CHECKS", "DTYPES", "Adapter", "Array", "Kind", "Support"]
