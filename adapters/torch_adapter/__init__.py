"""The built-in ``torch`` adapter (entry point ``normspec.adapters.torch_adapter:ADAPTER``).

Importing this package does not import torch; torch loads on the first call that needs it.
Translations live in :mod:`.methods`, the generic derivatives in :mod:`.autodiff`, the protocol
implementation in :mod:`.adapter`. Known deviations are recorded in ``adapters/ledgers/torch.toml``.
"""

from __future__ import annotations

from .adapter import METHODS, TorchAdapter, make_adapter

ADAPTER = TorchAdapter()
"""The instance the entry point names."""

__all__ = ["ADAPTER", "METHODS", "TorchAdapter", "make_adapter"]
