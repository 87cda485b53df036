"""Interleaved timing: baseline and subject alternate round by round, so drift moves both alike.

Timing a baseline and then a subject one after the other lets anything that changes in between
(another process, CPU frequency, a warm cache) land on one side only; the ratio then moved between
1.9x and 4.5x from run to run (issue 11). Here each round runs every case once, in an order rotated
each round, and the figures are min / median / max over rounds plus the median of the per-round
ratios (each ratio compares two timings taken seconds apart). Before each timing the garbage of the
case before it is collected, untimed: otherwise a case that leaves much behind (an import's row
objects) has its collection paid by whichever case runs next (the import bench's baseline read
14-16 us/resource after the baseline and 26-30 after the import).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Timings:
    name: str
    samples: tuple[float, ...]

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)


def interleave(cases: dict[str, Callable[[], object]], *, rounds: int, warmup: int = 1) -> dict[str, Timings]:
    """Time each case once per round, rotating the order; ``warmup`` untimed rounds first."""
    names = list(cases)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(warmup + rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            started = time.perf_counter()
            cases[name]()
            elapsed = time.perf_counter() - started
            if index >= warmup:
                samples[name].append(elapsed)
    return {name: Timings(name, tuple(values)) for name, values in samples.items()}


def paired_ratio(subject: Timings, baseline: Timings) -> float:
    """The median over rounds of subject / baseline, each pair timed in the same round."""
    return statistics.median(s / b for s, b in zip(subject.samples, baseline.samples, strict=True))


def line(label: str, timings: Timings, *, per: float, unit: str, baseline: Timings | None = None) -> str:
    """One printed line: min / median / max scaled by ``per`` (e.g. 1e6 / values for us/value), and the ratio."""
    text = (
        f"{label:<34} min {timings.min * per:8.2f}  median {timings.median * per:8.2f}  "
        f"max {timings.max * per:8.2f} {unit}"
    )
    if baseline is None:
        return text + "  (baseline)"
    return text + f"  ratio {paired_ratio(timings, baseline):4.2f}x"
