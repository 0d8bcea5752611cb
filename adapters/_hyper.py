"""Reading canonical hyperparameters in adapters: each error names the argument, the value
and what was expected. Shared by the adapters that translate ``hyper`` key by key."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any


def required(hyper: Mapping[str, Any], name: str) -> Any:
    """``hyper[name]``; ValueError listing the keys when it is missing."""
    if name not in hyper:
        raise ValueError(f"argument 'hyper': got keys {sorted(hyper)}, expected a value for "
                         f"{name!r}")
    return hyper[name]


def real(hyper: Mapping[str, Any], name: str) -> float:
    """``hyper[name]`` as a float; TypeError for anything but a real number (bool included)."""
    value = required(hyper, name)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"argument 'hyper[{name!r}]': got {value!r}, expected a real number")
    return float(value)


def integer(hyper: Mapping[str, Any], name: str, default: int | None = None) -> int:
    """``hyper[name]`` (or ``default``) as an int; TypeError for anything but an integer."""
    value = hyper.get(name, default) if default is not None else required(hyper, name)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"argument 'hyper[{name!r}]': got {value!r}, expected an integer")
    return int(value)


def axis(hyper: Mapping[str, Any], name: str, ndim: int, default: int | None = None) -> int:
    """``hyper[name]`` as an axis of an ``ndim``-d input, normalized to ``[0, ndim)``."""
    value = integer(hyper, name, default)
    if not -ndim <= value < ndim:
        raise ValueError(f"argument 'hyper[{name!r}]': got {value}, expected an axis in "
                         f"[{-ndim}, {ndim - 1}] for a {ndim}-d input")
    return value % ndim


__all__ = ["axis", "integer", "real", "required"]
