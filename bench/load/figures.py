"""The load test's figures: one round's requests, a case's rounds, percentiles and ratios."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass
class Round:
    case: str
    records: list[tuple[str, float, float, bool]]
    window: float
    signed_in: int
    chart_ok: int
    failures: dict[str, int]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] * 1000


@dataclass
class Case:
    name: str
    rounds: list[Round] = field(default_factory=list)

    def rates(self) -> list[float]:
        return [len(r.records) / r.window for r in self.rounds]

    def durations(self, kind: str | None = None) -> list[float]:
        return [rec[2] for r in self.rounds for rec in r.records if (kind is None or rec[0] == kind) and rec[3]]

    def errors(self, kind: str | None = None) -> int:
        return sum(1 for r in self.rounds for rec in r.records if (kind is None or rec[0] == kind) and not rec[3])

    def count(self, kind: str) -> int:
        return sum(1 for r in self.rounds for rec in r.records if rec[0] == kind)

    def kinds(self) -> list[str]:
        return sorted({rec[0] for r in self.rounds for rec in r.records})


def print_case(case: Case) -> None:
    rates = case.rates()
    window = sum(r.window for r in case.rounds)
    print(
        f"\n{case.name}: {statistics.median(rates):.1f} requests/s (median of {len(rates)} rounds; "
        f"min {min(rates):.1f}, max {max(rates):.1f}), users signed in per round: "
        f"{', '.join(str(r.signed_in) for r in case.rounds)}; measured over {window:.0f} s"
    )
    print(f"  {'kind':<14} {'requests':>8} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for kind in [*case.kinds(), None]:
        d = case.durations(kind)
        n = case.count(kind) if kind else sum(len(r.records) for r in case.rounds)
        print(
            f"  {kind or 'all':<14} {n:>8} {n / window:>7.1f} {pct(d, 50):>8.0f} {pct(d, 95):>8.0f} "
            f"{pct(d, 99):>8.0f} {case.errors(kind):>6}"
        )
    failures: dict[str, int] = {}
    for r in case.rounds:
        for reason, count in r.failures.items():
            failures[reason] = failures.get(reason, 0) + count
    for reason, count in sorted(failures.items()):
        print(f"  failed: {count} x {reason}")


def latency_line(subject: Case, baseline: Case, kind: str | None = None) -> str:
    """p50 / p95 / p99 of one page kind (or all), subject / baseline."""
    parts = [
        f"p{q} {pct(subject.durations(kind), q):5.0f} / {pct(baseline.durations(kind), q):5.0f} ms"
        for q in (50, 95, 99)
    ]
    return f"  {kind or 'all':<14} " + "  ".join(parts)


def paired(subject: Case, baseline: Case) -> float:
    ratios = [s / b for s, b in zip(subject.rates(), baseline.rates(), strict=False) if b]
    return statistics.median(ratios) if ratios else float("nan")
