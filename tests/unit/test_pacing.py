"""Pacing's decision (porter/pacing.py) and claim priorities (porter/priorities.py).

Whatever the order and timing of requests, no minute holds more than GitHub's 80 creations for
one installation and no hour more than 500; a burst goes out at once; a caller who waits the
time it was told is admitted.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from porter.pacing import CONTENT_CREATION, Window, creation_wait, span
from porter.priorities import priority


def most_in_any_window(times: list[float], seconds: float) -> int:
    """The most admissions any closed interval of length `seconds` holds."""
    times = sorted(times)
    return max((bisect.bisect_right(times, t + seconds) - i for i, t in enumerate(times)),
               default=0)


class Record:
    """One installation's creations, kept as porter/store/pacing.py keeps them: the decision
    sees only those inside the longest window, and an admission is recorded."""

    def __init__(self, windows: Sequence[Window] = CONTENT_CREATION) -> None:
        self.windows = tuple(windows)
        self.times: list[float] = []

    def take(self, now: float, *, urgent: bool = True) -> float:
        recent = self.times[bisect.bisect_right(self.times, now - span(self.windows)):]
        wait = creation_wait(recent, now, self.windows, urgent=urgent)
        if wait <= 0:
            bisect.insort(self.times, now)
        return wait


def drive(record: Record, gaps: list[float], cosmetic: list[bool] | None = None) -> list[float]:
    """Ask for one creation after each gap; a refused caller retries after the wait it was given
    (all later asks queue behind it, as one installation's jobs run one at a time)."""
    now, admitted = 1_000.0, []
    for n, gap in enumerate(gaps):
        now += gap
        urgent = not (cosmetic and cosmetic[n % len(cosmetic)])
        while (wait := record.take(now, urgent=urgent)) > 0:
            now += wait
        admitted.append(now)
    return admitted


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.just(0.0), st.floats(0, 5), st.floats(0, 400)),
                min_size=1, max_size=1200),
       st.lists(st.booleans(), max_size=7))
@example([0.0] * 700, [])  # one long burst
@example(([0.0] * 79 + [59.0]) * 8, [])  # bursts a minute apart
@example([0.0] * 700, [True, False])
def test_no_minute_holds_more_than_80_and_no_hour_more_than_500(
    gaps: list[float], cosmetic: list[bool],
) -> None:
    admitted = drive(Record(), gaps, cosmetic=cosmetic)
    assert len(admitted) == len(gaps)  # every caller got through in the end
    assert most_in_any_window(admitted, 60.0) <= 80
    assert most_in_any_window(admitted, 3600.0) <= 500


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 30), min_size=1, max_size=60), st.integers(1, 6),
       st.floats(1, 100))
def test_any_window_holds_at_most_its_limit(gaps: list[float], limit: int,
                                            seconds: float) -> None:
    admitted = drive(Record([Window(limit, seconds)]), gaps)
    # Half-open windows of exactly `seconds`: anything closed and a hair shorter fits.
    assert most_in_any_window(admitted, seconds * (1 - 1e-9)) <= limit


def test_a_burst_goes_out_at_once_then_waits_for_the_oldest_to_leave_the_minute() -> None:
    record = Record()
    assert [record.take(100.0) for _ in range(80)] == [0.0] * 80
    wait = record.take(100.0)
    assert 60.0 < wait <= 61.0 + 1e-3  # GitHub's minute, and a second for transit
    assert record.take(100.0 + wait) == 0.0


def test_cosmetic_creations_leave_the_reserve_to_urgent_ones() -> None:
    record = Record([Window(4, 60.0, reserve=2)])
    assert [record.take(0.0, urgent=False) for _ in range(2)] == [0.0, 0.0]
    assert record.take(0.0, urgent=False) == pytest.approx(60.0)  # the reserve is not theirs
    assert [record.take(0.0) for _ in range(2)] == [0.0, 0.0]  # an urgent one may spend it
    assert record.take(0.0) == pytest.approx(60.0)


def test_the_hour_is_kept_after_the_minutes_are() -> None:
    record = Record()
    now = 0.0
    for _ in range(500):
        while (wait := record.take(now)) > 0:
            now += wait
    assert now < 400  # 80 a minute: the 500 went out within seven minutes
    wait = creation_wait(record.times, now, CONTENT_CREATION, urgent=True)
    assert now + wait >= 3600  # the 501st waits for the hour that began with the first


def test_the_documented_limits() -> None:
    assert {(w.limit, w.seconds) for w in CONTENT_CREATION} == {(80, 61.0), (500, 3601.0)}
    assert all(0 < w.reserve < w.limit for w in CONTENT_CREATION)


def test_the_first_eyes_go_before_publishing_before_replies_before_cosmetic_edits() -> None:
    eyes = priority("react", {"content": "eyes", "comment_id": 1})
    publish = priority("publish", {"changeset": {}})
    reply = priority("comment", {"body": "hi"})
    status = priority("status", {"task_id": 1})
    rocket = priority("react", {"content": "rocket"})
    assert eyes < publish < reply < status == rocket
    assert priority("machine.launch", {"run_id": "r"}) == publish
    assert priority("something.new", {}) == reply
    # A PR's link comment waits behind the installation's other PRs.
    assert publish < priority("publish.link", {"pr_number": 7, "pr_url": "u"})
