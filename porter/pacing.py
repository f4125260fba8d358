"""Pacing content creation on GitHub per installation: comments, reactions, pull requests.

GitHub allows an installation at most 80 content-creating requests a minute and 500 an hour
(docs/platform-notes.md §C.6). Each installation keeps the times of its recent creations, and
one more is admitted at `t` only if every window `(limit, seconds)` counts fewer than `limit`
creations at times `s` with `t - s < seconds`. So a burst of up to 80 goes out at once, and the
budget is spent as fast as GitHub allows, no faster. A cosmetic creation (a final reaction, a
link comment) must leave each window's `reserve` unspent, for the urgent ones.

Proof that no window of length `seconds` ever holds more than `limit`: suppose some interval
`[a, a + seconds)` held `limit + 1` admissions `s_0 <= ... <= s_limit`. When `s_limit` was
admitted, each earlier `s_i` had `s_limit - s_i <= s_limit - a < seconds`, so `limit` of them
counted and it would have been refused (a cosmetic one, sooner). Each window here is a second
longer than GitHub's, so every closed minute (hour) of GitHub's lies inside one of ours, with a
second to spare for a request's transit. tests/unit/test_pacing.py checks this with hypothesis.

The record is this process's memory: a restart forgets it (at worst one extra burst), and two
Porter processes against one database would each keep their own.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    limit: int
    seconds: float
    reserve: int = 0  # kept for urgent creations: a cosmetic one fits only under limit - reserve


# GitHub's 80/minute and 500/hour, one second longer each (see above). A quarter of the minute
# and a fifth of the hour are kept for urgent creations (👀, pull requests, replies), so that a
# busy installation's final reactions and link comments cannot hold its pull requests back.
CONTENT_CREATION = (Window(80, 61.0, reserve=20), Window(500, 3601.0, reserve=100))


class Pacer:
    """Admits content creations per installation under every window."""

    def __init__(self, windows: Sequence[Window] = CONTENT_CREATION, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._windows = tuple(windows)
        self._span = max((w.seconds for w in self._windows), default=0.0)
        self._clock = clock
        self._times: dict[int, list[float]] = {}

    def wait(self, installation_id: int, now: float | None = None, *,
             urgent: bool = True) -> float:
        """Seconds until one more creation would be admitted; 0 if it would be now."""
        now = self._clock() if now is None else now
        times = self._forget(installation_id, now)
        wait = 0.0
        for window in self._windows:
            limit = window.limit if urgent else window.limit - window.reserve
            recent = len(times) - bisect.bisect_right(times, now - window.seconds)
            if recent >= limit:
                # The oldest creation that must leave the window before one more fits; a
                # microsecond more, so that rounding never leaves it just inside.
                oldest = times[len(times) - limit]
                wait = max(wait, oldest + window.seconds - now + 1e-6)
        return wait

    def take(self, installation_id: int, now: float | None = None, *,
             urgent: bool = True) -> float:
        """Record a creation now and return 0, or return the wait and record nothing."""
        now = self._clock() if now is None else now
        wait = self.wait(installation_id, now, urgent=urgent)
        if wait <= 0:
            bisect.insort(self._times.setdefault(installation_id, []), now)
            return 0.0
        return wait

    def _forget(self, installation_id: int, now: float) -> list[float]:
        """The installation's creations still inside the longest window."""
        times = self._times.get(installation_id, [])
        gone = bisect.bisect_right(times, now - self._span)
        if gone:
            del times[:gone]
        if not times:
            self._times.pop(installation_id, None)
        return times
