"""Pacing content creation on GitHub per installation: comments, reactions, pull requests.

GitHub allows an installation at most 80 content-creating requests a minute and 500 an hour
(docs/platform-notes.md §C.6). Each installation's recent creations are recorded, and one more
is admitted at `t` only if every window `(limit, seconds)` counts fewer than `limit` creations
at times `s` with `t - s < seconds`. So a burst of up to 80 goes out at once, and the budget is
spent as fast as GitHub allows, no faster. A cosmetic creation (a final reaction, a link
comment) must leave each window's `reserve` unspent, for the urgent ones.

Proof that no window of length `seconds` ever holds more than `limit`: suppose some interval
`[a, a + seconds)` held `limit + 1` admissions `s_0 <= ... <= s_limit`. When `s_limit` was
admitted, each earlier `s_i` had `s_limit - s_i <= s_limit - a < seconds`, so `limit` of them
counted and it would have been refused (a cosmetic one, sooner). Each window here is a second
longer than GitHub's, so every closed minute (hour) of GitHub's lies inside one of ours, with a
second to spare for a request's transit. tests/unit/test_pacing.py checks this with hypothesis.

The proof needs every admission to see all earlier ones: the record is kept in the database
(porter/store/pacing.py), read, decided on and written in one write transaction, so it holds
across restarts and across Porter processes sharing the database. This module only decides.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
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


def span(windows: Sequence[Window]) -> float:
    """The longest window: creations older than this no longer count anywhere."""
    return max((w.seconds for w in windows), default=0.0)


def creation_wait(times: Sequence[float], now: float, windows: Sequence[Window], *,
                  urgent: bool) -> float:
    """Seconds until one more creation fits under every window, given one installation's
    earlier creation `times` (sorted; at least those inside the longest window); 0: now."""
    wait = 0.0
    for window in windows:
        limit = window.limit if urgent else window.limit - window.reserve
        recent = len(times) - bisect.bisect_right(times, now - window.seconds)
        if recent >= limit:
            # The oldest creation that must leave the window before one more fits; a
            # microsecond more, so that rounding never leaves it just inside.
            oldest = times[len(times) - limit]
            wait = max(wait, oldest + window.seconds - now + 1e-6)
    return wait
