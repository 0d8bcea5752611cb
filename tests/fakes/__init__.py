"""Fake adapters for the runner's own tests: a correct one and one per way of misbehaving."""
