"""`porter deliveries`: the App's recent webhook deliveries and what became of each in Porter.

GitHub's side of each attempt (its status code and words) beside Porter's side of the event:
the task it became, ignored, a duplicate, or missing, and how often a redelivery was asked for.
`--redeliver` first runs one pass of the lost-delivery reconciler (porter/deliveries.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from porter.agents import Registry
from porter.app_credentials import overlay, stored_app_in_file
from porter.deliveries import (
    DUPLICATE,
    IGNORED,
    MAX_REQUESTS,
    WINDOW,
    Event,
    PassResult,
    Reconciler,
    acted_on,
    events,
)
from porter.errors import ConfigError
from porter.github_deliveries import Delivery
from porter.runtime import build_github
from porter.settings import Settings
from porter.store import Store
from porter.store.redeliveries import Recorded, RedeliveryMark

HEADERS = ("delivered", "id", "guid", "event", "GitHub", "Porter")


def run(settings: Settings, *, limit: int, redeliver: bool,
        out: Callable[[str], None] = print, clock: Callable[[], float] = time.time) -> int:
    settings = overlay(settings, stored_app_in_file(settings))
    github = build_github(settings)
    if github is None:
        raise ConfigError(
            "porter deliveries asks GitHub as the App, which is not configured: set "
            "PORTER_GITHUB_APP_ID and PORTER_GITHUB_PRIVATE_KEY (or _FILE), or register it "
            "at /setup")

    async def report() -> None:
        store = await Store.open(settings.store_location)
        try:
            reconciler = Reconciler(github=github, store=store, handle=settings.mention,
                                    agents=Registry.from_settings(settings).names, clock=clock)
            if redeliver:
                for line in pass_lines(await reconciler.run_once()):
                    out(line)
            listed, more = await reconciler.recent(since=0, limit=limit)
            found = events(listed)
            guids = [event.guid for event in found]
            lines = table(listed, found, await store.recorded_deliveries(guids),
                          await store.redelivery_marks(guids), now=clock())
            for line in lines:
                out(line)
            if more:
                out(f"(the {limit} newest; --limit shows more)")
        finally:
            await store.close()

    asyncio.run(report())
    return 0


def pass_lines(result: PassResult) -> list[str]:
    lines = [f"read {result.listed} deliveries; asked GitHub to redeliver "
             f"{len(result.requested)}"]
    lines += [f"  redeliver {e.newest.id} {e.guid} {_event(e.newest)}" for e in result.requested]
    lines += [f"  lost {e.guid} {_event(e.newest)}: still failing after {MAX_REQUESTS} "
              "redeliveries" for e in result.given_up]
    return lines


def table(listed: Sequence[Delivery], found: Sequence[Event], recorded: dict[str, Recorded],
          marks: dict[str, RedeliveryMark], *, now: float) -> list[str]:
    """One row per attempt, newest first; Porter's side is the event's, shared by its attempts."""
    if not listed:
        return ["(no webhook deliveries)"]
    sides = {e.guid: porter_side(e, recorded.get(e.guid), marks.get(e.guid), now=now)
             for e in found}
    rows = [[_time(d.delivered_at), str(d.id), d.guid, _event(d),
             f"{d.status_code} {d.status}" + (" (redelivery)" if d.redelivery else ""),
             sides[d.guid]] for d in listed]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADERS)]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in [list(HEADERS), *rows]]


def porter_side(event: Event, recorded: Recorded | None, mark: RedeliveryMark | None, *,
                now: float) -> str:
    """What Porter made of an event, and what the reconciler did about it."""
    newest = event.newest
    if recorded is not None:
        side = (f"task {recorded.task_id} ({recorded.task_state})" if recorded.task_id
                else f"command (job {recorded.job_id})" if recorded.job_id else "recorded")
    elif not acted_on(newest.event, newest.action):
        side = "not for Porter"
    elif mark is not None and mark.verdict in (IGNORED, DUPLICATE):
        side = mark.verdict
    elif event.porter_answered:
        side = "ignored"  # Porter answered and recorded nothing: it did not address Porter
    elif event.someone_answered and (mark is None or mark.verdict is None):
        side = "not recorded (a 2xx from something else: the next pass checks it)"
    else:
        side = "missing" if newest.delivered_at >= now - WINDOW else \
            "missing (too old to redeliver)"
    if mark is not None and mark.requests:
        side += f", redelivery requested {mark.requests}x"
    if mark is not None and mark.gave_up_at is not None:
        side += ", given up"
    return side


def _event(delivery: Delivery) -> str:
    return f"{delivery.event}.{delivery.action}" if delivery.action else delivery.event


def _time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")
