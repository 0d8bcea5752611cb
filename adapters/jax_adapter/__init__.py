"""The built-in ``jax`` adapter: Flax linen layers and jax.numpy compositions, jax.vjp/jax.jvp.

Importing this package does not import JAX or Flax; they load on the adapter's first call.
``ADAPTER`` is the instance behind the ``normspec.adapters`` entry point ``jax``.
"""

from __future__ import annotations

from .adapter import JaxAdapter, make_adapter

ADAPTER = make_adapter()
"""The adapter instance the entry point ``jax`` names."""

__all__ = ["ADAPTER", "JaxAdapter", "make_adapter"]
