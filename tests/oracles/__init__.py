"""Independent arbitrary-precision evaluations of each method, and the seeded proof cases.

One module per method, named like the reference module. Each defines:

``mp_forward(primals, hyper) -> dict[str, list[mpmath.mpf] nested like the output]``
    the method's definition evaluated with mpmath at ``DPS`` digits, written from the
    equations on the spec page, never from the reference code;
``proof_cases() -> list[ProofCase]``
    at least 50 seeded cases, stress inputs included.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import mpmath
import numpy as np

DPS = 50
"""Decimal digits used by every oracle (the issue asks for 40 or more)."""


@dataclass(frozen=True)
class ProofCase:
    """One seeded input: differentiable primals (None = absent) and everything else."""

    name: str
    primals: dict[str, np.ndarray | None]
    hyper: dict[str, Any]
    fd: bool = True
    """Whether the finite-difference proof uses this case (small, smooth, away from kinks)."""
    fd_step: float = 1e-3
    tags: frozenset[str] = field(default_factory=frozenset)


def mp_array(a: np.ndarray) -> np.ndarray:
    """Exact conversion of a float64 array to an object array of mpf."""
    out = np.empty(a.shape, dtype=object)
    for idx, v in np.ndenumerate(a):
        out[idx] = mpmath.mpf(float(v))
    return out


def to_float(a: np.ndarray) -> np.ndarray:
    """Round an object array of mpf to float64 (nearest)."""
    out = np.empty(a.shape, dtype=np.float64)
    for idx, v in np.ndenumerate(a):
        out[idx] = float(v)
    return out


def rows(a: np.ndarray, reduce_axes: tuple[int, ...]
         ) -> Iterator[tuple[tuple[Any, ...], np.ndarray]]:
    """Yield ``(index into the kept axes, flat object array of the reduced values)``."""
    keep = tuple(i for i in range(a.ndim) if i not in reduce_axes)
    moved = np.transpose(a, keep + reduce_axes)
    kept_shape = tuple(a.shape[i] for i in keep)
    flat = moved.reshape((*kept_shape, -1))
    for idx in np.ndindex(*kept_shape):
        yield idx, flat[idx]


def mp_sum(values: Any) -> Any:
    return mpmath.fsum(values)


def seeded(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


Builder = Callable[[np.random.Generator], tuple[dict[str, np.ndarray | None], dict[str, Any]]]


def oracle(method: str) -> ModuleType:
    """The oracle module of ``method`` (tests/oracles/<method>.py)."""
    return importlib.import_module(f"{__name__}.{method}")
