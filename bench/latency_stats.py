"""The pure half of bench/latency.py: which requests create content, how many fall in any window,
and one line of figures per step with its goal.

GitHub's secondary limits on content creation (docs/platform-notes.md §C.6): at most 80
content-creating requests a minute and 500 an hour, per installation; comments, pull requests
and reactions count, and Porter counts its check runs too.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

CREATES_CONTENT = re.compile(
    r"/repos/[^/]+/[^/]+/(issues/\d+/comments|(issues|pulls)/comments/\d+/reactions"
    r"|pulls|pulls/\d+/comments(/\d+/replies)?|check-runs)"
)
PER_MINUTE, PER_HOUR = 80, 500


def creates_content(method: str, path: str) -> bool:
    """Whether a REST request (path without /api/v3) counts against the content limits."""
    return method == "POST" and CREATES_CONTENT.fullmatch(path) is not None


def most_in_window(times: Iterable[float], window: float) -> int:
    """The most events in any half-open interval [t, t + window): two pointers over the
    sorted times, so a burst straddling any boundary is caught."""
    ordered = sorted(times)
    most, start = 0, 0
    for end, at in enumerate(ordered):
        while ordered[start] <= at - window:
            start += 1
        most = max(most, end - start + 1)
    return most


@dataclass(frozen=True)
class Goal:
    limit_ms: float
    on: str = "p50"  # "p50" or "max": which figure must stay within the limit


@dataclass(frozen=True)
class Step:
    """One measured step: latencies in seconds (None: it never happened in the run)."""

    name: str
    latencies: Sequence[float | None]
    goal: Goal | None = None

    @property
    def seen(self) -> list[float]:
        return [x for x in self.latencies if x is not None]

    @property
    def missing(self) -> int:
        return len(self.latencies) - len(self.seen)

    def figure(self, which: str) -> float:
        seen = self.seen
        if not seen:
            return float("nan")
        return (statistics.median(seen) if which == "p50" else max(seen)) * 1000

    def verdict(self) -> str:
        if self.goal is None:
            return ""
        value = self.figure(self.goal.on)
        kept = not self.missing and value <= self.goal.limit_ms
        return f"{'PASS' if kept else 'MISS'} ({self.goal.on} ≤ {self.goal.limit_ms:g} ms)"

    def line(self, baseline_ms: float) -> str:
        p50, top = self.figure("p50"), self.figure("max")
        ratio = p50 / baseline_ms if baseline_ms > 0 else float("nan")
        gone = f", {self.missing} never" if self.missing else ""
        return (f"  {self.name:<36}{len(self.seen):>4}{gone:<10}{p50:>10.0f}{top:>10.0f}"
                f"{ratio:>9.1f}×  {self.verdict()}")


HEADER = f"  {'step':<36}{'n':>4}{'':<10}{'p50 ms':>10}{'max ms':>10}{'÷ base':>10}  goal"


def window_lines(creations: dict[int, list[float]], *, check: bool) -> list[str]:
    """Per installation, the most content-creating requests in any minute and any hour."""
    lines = []
    for installation, times in sorted(creations.items()):
        minute, hour = most_in_window(times, 60), most_in_window(times, 3600)
        verdict = ""
        if check:
            kept = minute <= PER_MINUTE and hour <= PER_HOUR
            verdict = f"  {'PASS' if kept else 'MISS'} (≤ {PER_MINUTE}/min, ≤ {PER_HOUR}/h)"
        lines.append(f"  installation {installation}: {len(times)} content-creating requests, "
                     f"most {minute} in a minute, {hour} in an hour{verdict}")
    return lines
