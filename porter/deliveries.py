"""Lost deliveries: GitHub never redelivers a webhook on its own, so Porter asks it to.

A pass lists the App's recent deliveries and finds the comments Porter acts on that never reached
it: every attempt failed (Porter was down, a deploy, a timeout), or something other than Porter
answered (a proxy, a relay: a 2xx that is not Porter's 202, with no delivery recorded, whose
payload Porter would have recorded). It asks GitHub to send each again. A redelivery keeps its
guid (X-GitHub-Delivery), which intake dedupes on, so asking twice is harmless; asking forever is
not, so a guid is asked for at most MAX_REQUESTS times, spaced out (table `redeliveries`), and a
delivery still failing after that (a wrong webhook secret) is logged as lost.

`plan` is the decision, pure; `Reconciler` is the I/O around it. The runtime runs a pass every
PORTER_DELIVERY_RECONCILE_INTERVAL seconds; `porter deliveries --redeliver` runs one now.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field

from porter.errors import BadRequest, GitHubError
from porter.github import GitHubApp
from porter.github_deliveries import Delivery
from porter.log_context import bound
from porter.store import Store
from porter.store.redeliveries import RedeliveryMark
from porter.webhooks import TRIGGER_EVENTS, Ignored, decode_delivery

log = logging.getLogger(__name__)

WINDOW = 2 * 24 * 3600  # GitHub redelivers deliveries of the past 3 days: keep a day's margin
MAX_REQUESTS = 3  # redeliveries asked for one guid over its life
SPACING = (15 * 60, 2 * 3600)  # wait after the 1st request, after the 2nd: outlast a short outage
MAX_PAGES = 30  # 3,000 deliveries: a pass never pages forever
MAX_PER_PASS = 30  # requests (and payload checks) per pass; the rest wait for the next
PORTER_ANSWER = 202  # porter/web/intake.py answers every delivery it took with 202

LOST, IGNORED, DUPLICATE = "lost", "ignored", "duplicate"  # redeliveries.verdict


def acted_on(event: str, action: str | None) -> bool:
    """Deliveries Porter may act on (porter/webhooks.py); the rest it ignores whatever they say."""
    return event in TRIGGER_EVENTS and action == "created"


@dataclass(frozen=True)
class Event:
    """One event GitHub delivered: its attempts (the first and any redeliveries), newest first."""

    guid: str
    attempts: tuple[Delivery, ...]

    @property
    def newest(self) -> Delivery:
        return self.attempts[0]

    @property
    def porter_answered(self) -> bool:
        """Porter's webhook route answered one attempt: it took the delivery, or ignored it."""
        return any(a.status_code == PORTER_ANSWER for a in self.attempts)

    @property
    def someone_answered(self) -> bool:
        return any(a.ok for a in self.attempts)


def events(deliveries: Iterable[Delivery]) -> list[Event]:
    """Attempts grouped by guid, newest event first."""
    grouped: dict[str, list[Delivery]] = {}
    for delivery in deliveries:
        grouped.setdefault(delivery.guid, []).append(delivery)
    found = [Event(guid, tuple(sorted(attempts, key=lambda a: (a.delivered_at, a.id),
                                      reverse=True)))
             for guid, attempts in grouped.items()]
    return sorted(found, key=lambda e: (e.newest.delivered_at, e.newest.id), reverse=True)


@dataclass(frozen=True)
class Plan:
    redeliver: list[Event] = field(default_factory=list)  # ask GitHub again now
    check: list[Event] = field(default_factory=list)  # a 2xx not from Porter: read the payload
    give_up: list[Event] = field(default_factory=list)  # lost, out of requests: log it once
    waiting: list[Event] = field(default_factory=list)  # lost, asked for recently


def plan(found: Iterable[Event], *, recorded: Collection[str],
         marks: Mapping[str, RedeliveryMark], now: float) -> Plan:
    """What to do about each event: nothing, read its payload, ask again, or give up."""
    decided = Plan()
    for event in found:
        newest = event.newest
        if (not acted_on(newest.event, newest.action) or newest.delivered_at < now - WINDOW
                or event.guid in recorded or event.porter_answered):
            continue
        mark = marks.get(event.guid)
        verdict = mark.verdict if mark else None
        if verdict in (IGNORED, DUPLICATE):
            continue
        if event.someone_answered and verdict is None:
            decided.check.append(event)
            continue
        requests = mark.requests if mark else 0
        if mark and requests and now < (mark.last_requested_at or 0) + _spacing(requests):
            decided.waiting.append(event)  # the last redelivery may not have been made yet
        elif requests < MAX_REQUESTS:
            decided.redeliver.append(event)
        elif mark is None or mark.gave_up_at is None:
            decided.give_up.append(event)
    return decided


def _spacing(requests: int) -> float:
    """How long after the `requests`-th request the next one (or giving up) waits."""
    return SPACING[min(requests, len(SPACING)) - 1]


@dataclass(frozen=True)
class PassResult:
    listed: int  # deliveries read from GitHub
    requested: list[Event]  # asked to be redelivered
    given_up: list[Event]
    checked: int  # payloads read to tell a proxy's answer from Porter's
    truncated: bool  # more deliveries within the window than one pass reads


class Reconciler:
    """One pass: list, decide, check what needs checking, ask GitHub again."""

    def __init__(self, *, github: GitHubApp, store: Store, handle: str,
                 agents: Collection[str], clock: Callable[[], float]) -> None:
        self._github = github
        self._store = store
        self._handle = handle
        self._agents = agents
        self._clock = clock

    async def recent(self, *, since: float,
                     limit: int | None = None) -> tuple[list[Delivery], bool]:
        """Deliveries since `since` (newest first, at most `limit`); whether more were left."""
        found: list[Delivery] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            page = await self._github.webhook_deliveries(cursor)
            for delivery in page.deliveries:
                if delivery.delivered_at < since:
                    return found, False
                if limit is not None and len(found) >= limit:
                    return found, True
                found.append(delivery)
            cursor = page.cursor
            if cursor is None:
                return found, False
        return found, True

    async def run_once(self) -> PassResult:
        now = self._clock()
        listed, truncated = await self.recent(since=now - WINDOW)
        if truncated:
            log.warning("more webhook deliveries within %d hours than one pass reads (%d): "
                        "older lost ones are not looked for", WINDOW // 3600, len(listed))
        found = events(listed)
        guids = [event.guid for event in found]
        recorded = await self._store.recorded_deliveries(guids)
        marks = await self._store.redelivery_marks(guids)
        decided = plan(found, recorded=recorded, marks=marks, now=now)
        lost = list(decided.redeliver)
        for event in decided.check[:MAX_PER_PASS]:
            if await self._verdict(event) == LOST:
                lost.append(event)
        requested = []
        for event in lost[:MAX_PER_PASS]:
            try:
                await self._redeliver(event)
            except GitHubError as exc:
                with bound(delivery_id=event.guid):
                    log.warning("GitHub refused to redeliver %s: %s", event.newest.id,
                                exc.message)
                if exc.retryable:
                    break  # rate-limited or unreachable: the next pass tries again
                continue
            requested.append(event)
        for event in decided.give_up:
            await self._give_up(event)
        await self._store.prune_redeliveries(now - 2 * WINDOW)
        return PassResult(len(listed), requested, decided.give_up,
                          min(len(decided.check), MAX_PER_PASS), truncated)

    async def _verdict(self, event: Event) -> str:
        """Whether a delivery someone else answered is one Porter would have recorded."""
        newest = event.newest
        payload = await self._github.delivery_payload(newest.id)
        verdict = LOST
        try:
            decoded = decode_delivery(newest.event, event.guid, payload or {},
                                      handle=self._handle, agents=self._agents)
        except BadRequest:
            decoded = Ignored("malformed payload")
        if isinstance(decoded, Ignored):
            verdict = IGNORED
        elif await self._store.comment_recorded(decoded.comment_key):
            verdict = DUPLICATE  # its comment arrived under another guid
        await self._store.note_verdict(event.guid, newest.event, verdict)
        return verdict

    async def _redeliver(self, event: Event) -> None:
        newest = event.newest
        await self._github.redeliver(newest.id)
        asked = await self._store.note_redelivery_request(event.guid, newest.event, LOST)
        with bound(delivery_id=event.guid):
            log.info("asked GitHub to redeliver %s %s (GitHub: %s; request %d of %d)",
                     newest.event, newest.action, _said(newest), asked, MAX_REQUESTS)

    async def _give_up(self, event: Event) -> None:
        newest = event.newest
        await self._store.note_gave_up(event.guid)
        with bound(delivery_id=event.guid):
            log.error("webhook delivery lost: %s %s still not received after %d redeliveries "
                      "(GitHub: %s). Check the webhook URL and PORTER_GITHUB_WEBHOOK_SECRET "
                      "against the App's settings on GitHub.", newest.event, newest.action,
                      MAX_REQUESTS, _said(newest))


def _said(delivery: Delivery) -> str:
    """What GitHub reports of an attempt: its status code and its own words."""
    if delivery.status_code and delivery.status:
        return f"{delivery.status_code} {delivery.status}"
    return delivery.status or str(delivery.status_code)
