"""Timing a prepared call: warm-up, then repeated samples, summarized by median and spread.

Each sample times one call with :func:`time.perf_counter`; the call itself waits for the
device (the adapter's ``bench_prepare`` contract), so a sample is the call's wall time on
the device, launch included. Samples are taken until a time budget is spent, within
``[min_samples, max_samples]``. The summary is the median, the quartiles (IQR) and the extremes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Stats:
    """Summary of the samples of one measurement, in seconds."""

    median: float
    q1: float
    q3: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        """The summary of ``samples`` (at least one)."""
        if not samples:
            raise ValueError("argument 'samples': got none, expected at least one time")
        a = np.asarray(samples, dtype=np.float64)
        q1, med, q3 = np.percentile(a, [25.0, 50.0, 75.0])
        return cls(float(med), float(q1), float(q3), float(a.min()), float(a.max()), int(a.size))

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    def as_dict(self) -> dict[str, float | int]:
        return {"median": self.median, "q1": self.q1, "q3": self.q3, "min": self.min,
                "max": self.max, "n": self.n}


@dataclass(frozen=True)
class Budget:
    """How long to measure one call."""

    warmup: int = 2
    """Calls before timing (caches, allocator, lazy initialization)."""
    seconds: float = 0.5
    """Time to spend sampling, at least ``min_samples`` calls."""
    min_samples: int = 5
    max_samples: int = 200


QUICK = Budget(warmup=3, seconds=0.15, min_samples=5, max_samples=50)
FULL = Budget(warmup=2, seconds=0.5, min_samples=5, max_samples=200)


def measure(run: Callable[[], object], budget: Budget,
            clock: Callable[[], float] = time.perf_counter) -> Stats:
    """Warm ``run`` up, then time it repeatedly within ``budget``."""
    return measure_pair(run, None, budget, clock)[0]


def measure_pair(run: Callable[[], object], copy: Callable[[], object] | None, budget: Budget,
                 clock: Callable[[], float] = time.perf_counter
                 ) -> tuple[Stats, Stats | None]:
    """Time ``run`` and its copy roofline ``copy`` in alternation, one sample of each in turn.

    Alternating puts both under the same conditions: on a shared or throttling machine the
    load drifts over seconds, and a roofline measured at another moment could sit far above
    or below the kernel's. Calls that take longer than the whole sampling budget get
    ``min(3, min_samples)`` samples (a 4 s call needs no fifteen).
    """
    for _ in range(budget.warmup):
        start = clock()
        run()
        first = clock() - start
        if copy is not None:
            copy()
    wanted = budget.min_samples
    if budget.warmup and first > budget.seconds:
        wanted = min(3, budget.min_samples)
    samples: list[float] = []
    copies: list[float] = []
    spent = 0.0
    while len(samples) < budget.max_samples and (len(samples) < wanted or spent < budget.seconds):
        start = clock()
        run()
        elapsed = clock() - start
        samples.append(elapsed)
        spent += elapsed
        if copy is not None:
            start = clock()
            copy()
            copies.append(clock() - start)
    return Stats.of(samples), (Stats.of(copies) if copies else None)


def gbs(nbytes: int, seconds: float) -> float:
    """Effective bandwidth in GB/s (10^9 bytes per second)."""
    return nbytes / seconds / 1e9 if seconds > 0 else float("inf")


__all__ = ["FULL", "QUICK", "Budget", "Stats", "gbs", "measure", "measure_pair"]
