"""The reconciler's decisions (porter/deliveries.py) and GitHub's delivery list read as Porter's
types (porter/github_deliveries.py)."""

from __future__ import annotations

import pytest

from porter.deliveries import (
    DUPLICATE,
    IGNORED,
    LOST,
    MAX_REQUESTS,
    SPACING,
    WINDOW,
    Plan,
    events,
    plan,
)
from porter.errors import GitHubError
from porter.github_deliveries import Delivery, delivery, next_cursor
from porter.store.redeliveries import RedeliveryMark

NOW = 1_750_000_000.0
_ids = iter(range(1, 10_000))


def attempt(guid: str, code: int, *, ago: float = 60, event: str = "issue_comment",
            action: str | None = "created") -> Delivery:
    return Delivery(id=next(_ids), guid=guid, delivered_at=NOW - ago, redelivery=False,
                    status="OK" if 200 <= code < 300 else f"Invalid HTTP Response: {code}",
                    status_code=code, event=event, action=action, installation_id=42,
                    repository_id=7)


def decide(*deliveries: Delivery, recorded: tuple[str, ...] = (),
           marks: dict[str, RedeliveryMark] | None = None, now: float = NOW) -> dict[str, str]:
    """guid → what the plan does with it (absent: nothing)."""
    decided: Plan = plan(events(deliveries), recorded=recorded, marks=marks or {}, now=now)
    return {e.guid: name for name in ("redeliver", "check", "give_up", "waiting")
            for e in getattr(decided, name)}


def mark(requests: int, *, ago: float, verdict: str | None = LOST,
         gave_up: bool = False) -> RedeliveryMark:
    return RedeliveryMark(verdict, requests, NOW - ago, NOW if gave_up else None)


def test_failed_deliveries_are_redelivered_unless_settled() -> None:
    assert decide(
        attempt("failed", 502),
        attempt("timed-out", 0),
        attempt("recorded", 502),  # Porter has its row: a manual redelivery got through
        attempt("later-ok", 503), attempt("later-ok", 202, ago=30),
        attempt("other-event", 500, event="issues", action="opened"),
        attempt("edited", 500, action="edited"),
        attempt("too-old", 502, ago=WINDOW + 1),
        recorded=("recorded",),
    ) == {"failed": "redeliver", "timed-out": "redeliver"}


def test_a_2xx_that_is_not_porters_answer_is_checked_once() -> None:
    assert decide(attempt("proxy", 200)) == {"proxy": "check"}
    assert decide(attempt("proxy", 200), marks={"proxy": mark(0, ago=0, verdict=IGNORED)}) == {}
    assert decide(attempt("proxy", 200),
                  marks={"proxy": mark(0, ago=0, verdict=DUPLICATE)}) == {}
    assert decide(attempt("proxy", 200), marks={"proxy": mark(0, ago=0)}) == {
        "proxy": "redeliver"}


def test_redeliveries_are_spaced_then_given_up_once() -> None:
    guid = "failing"
    assert decide(attempt(guid, 401), marks={guid: mark(1, ago=SPACING[0] - 1)}) == {
        guid: "waiting"}
    assert decide(attempt(guid, 401), marks={guid: mark(1, ago=SPACING[0])}) == {
        guid: "redeliver"}
    assert decide(attempt(guid, 401), marks={guid: mark(2, ago=SPACING[1] - 1)}) == {
        guid: "waiting"}
    last = mark(MAX_REQUESTS, ago=SPACING[-1] - 1)
    assert decide(attempt(guid, 401), marks={guid: last}) == {guid: "waiting"}
    assert decide(attempt(guid, 401), marks={guid: mark(MAX_REQUESTS, ago=SPACING[-1])}) == {
        guid: "give_up"}
    assert decide(attempt(guid, 401),
                  marks={guid: mark(MAX_REQUESTS, ago=SPACING[-1], gave_up=True)}) == {}


def test_the_newest_attempt_of_an_event_is_the_one_asked_for() -> None:
    first, second = attempt("g", 502, ago=600), attempt("g", 504, ago=60)
    decided = plan(events([first, second]), recorded=(), marks={}, now=NOW)
    assert [e.newest.id for e in decided.redeliver] == [second.id]


def test_the_next_page_cursor_comes_from_the_link_header() -> None:
    link = ('<https://api.github.com/app/hook/deliveries?per_page=100&cursor=v1_999>; '
            'rel="next", <https://api.github.com/app/hook/deliveries?per_page=100>; rel="first"')
    assert next_cursor(link) == "v1_999"
    assert next_cursor('<https://api.github.com/app/hook/deliveries>; rel="first"') is None
    assert next_cursor(None) is None


def test_a_listed_delivery_reads_with_or_without_newer_fields() -> None:
    item = {"id": 12, "guid": "0b98", "delivered_at": "2019-06-03T00:57:16Z",
            "redelivery": False, "duration": 0.27, "status": "OK", "status_code": 200,
            "event": "issue_comment", "action": "created", "installation_id": 123,
            "repository_id": None}
    read = delivery(item)
    assert (read.id, read.guid, read.ok, read.repository_id, read.throttled_at) == (
        12, "0b98", True, None, None)
    assert read.delivered_at == 1559523436.0
    assert delivery({**item, "throttled_at": "2019-06-03T00:57:17Z"}).throttled_at == 1559523437.0
    with pytest.raises(GitHubError):
        delivery({"id": 12})
