"""Errors shared by the command-line modules (kept apart so that they import no CLI module)."""

from __future__ import annotations


class UsageError(Exception):
    """A bad name or file given on the command line; reported as one line, exit status 2."""


__all__ = ["UsageError"]
