"""Server-sent events for the live pages: the feed's rows (`/live/feed`) and one task's header,
timeline and log (`/live/tasks/{id}`).

A stream wakes on `services.changes` (every task change, every new task) or after a second at
most, then reads from the store what changed: a wake-up carries nothing, so one missed costs
a second. Every task is checked against the viewer before it is sent, and the viewer is
identified afresh every half minute, so a signed-out session or a lost repository stops the
flow. Rows are rendered from the same templates as the pages, so the browser only swaps HTML
it would have been served anyway (porter/web/static/porter.js).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from porter.errors import Unauthorized
from porter.web.services import services
from porter.web.task_access import visible_task
from porter.web.task_view import head_context, head_html, row_html, row_key, timeline_html
from porter.web.viewer import Viewer, identify

WAKE = 1.0  # the longest a stream sleeps between reads
HEARTBEAT = 15.0  # a comment line this often keeps proxies from closing a quiet stream
RECHECK = 30.0  # identify the viewer again this often
# Then end: the browser reconnects where it left off. uvicorn's graceful shutdown waits for
# open responses, so this also bounds how long an open tab can hold a stopping server.
LIFETIME = 60.0
ROWS = 50  # feed rows per read
CHUNKS = 64  # log chunks per read (16 KiB each at most)
OVERLAP = 2.0  # see Feed
REPLAY = 300.0  # a feed further behind than this reloads instead of replaying
RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # porter/tokens.py new_run_id's shape, and more


def event(name: str, data: dict[str, Any], *, event_id: str | None = None) -> str:
    """One SSE event. JSON escapes line breaks, so the data is always a single line."""
    head = f"event: {name}\n" + (f"id: {event_id}\n" if event_id else "")
    return f"{head}data: {json.dumps(data)}\n\n"


@dataclass
class Sent:
    """What one read of the store produced: the events, whether the stream goes on, and
    whether more is waiting (then the next read follows at once)."""

    messages: list[str]
    going: bool = True
    more: bool = False


class Follower(Protocol):
    async def step(self, request: Request, viewer: Viewer) -> Sent:
        """Read what changed since the last step."""

    def position(self) -> str:
        """Where the stream stands, as an SSE id: a reconnecting browser sends it back."""


async def stream(request: Request, viewer: Viewer, follower: Follower) -> AsyncIterator[str]:
    """Step the follower at every wake-up and send what it found, until the client leaves, the
    viewer is gone, or the stream's lifetime is up. Quiet streams send a comment now and then,
    with the position, so a browser that reconnects later resumes from there."""
    svc = services(request)
    loop = asyncio.get_running_loop()
    started = beat = checked = loop.time()
    yield "retry: 1000\n\n"
    while loop.time() - started < LIFETIME and not await request.is_disconnected():
        if loop.time() - checked >= RECHECK:
            viewer, checked = await identify(request), loop.time()
            if not viewer.signed_in:
                return
        version = svc.changes.version
        sent = await follower.step(request, viewer)
        for message in sent.messages:
            yield message
        if not sent.going:
            return
        if sent.messages:
            beat = loop.time()
        elif loop.time() - beat >= HEARTBEAT:
            yield f": keep-alive\nid: {follower.position()}\n\n"
            beat = loop.time()
        if svc.changes.version == version and not sent.more:
            await svc.changes.wait(WAKE)
    yield f"id: {follower.position()}\n\n"


def sse(request: Request, viewer: Viewer, follower: Follower) -> Response:
    return StreamingResponse(stream(request, viewer, follower), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def live_viewer(request: Request) -> Viewer:
    viewer = await identify(request)
    if not viewer.signed_in:
        raise Unauthorized("sign in with GitHub first")
    return viewer


# -- the feed ---------------------------------------------------------------------------------


@dataclass
class Feed:
    """Which tasks changed since `since`. A change is stamped before its transaction queues for
    the writer, so one stamped earlier can commit after one stamped later: each read looks
    `OVERLAP` seconds back, and `sent` (task id → its change time and what its row showed)
    keeps those rows from being sent twice. What the row shows is compared, not the change
    time: two changes can carry the same time, and most alter nothing a row shows."""

    since: float
    sent: dict[int, tuple[float, tuple[object, ...]]] = field(default_factory=dict)

    async def step(self, request: Request, viewer: Viewer) -> Sent:
        svc = services(request)
        if self.since < svc.clock() - REPLAY:
            self.since = svc.clock()
            return Sent([event("reload", {})])
        # Room for every row already sent that is still in the window, and ROWS more.
        limit = ROWS + len(self.sent)
        tasks = await svc.store.tasks_changed_since(viewer.visible(), self.since - OVERLAP,
                                                    limit=limit)
        messages: list[str] = []
        for task in tasks:
            if len(messages) == ROWS:
                return Sent(messages, more=True)
            self.since = max(self.since, task.updated_at)
            shown = self.sent.get(task.id)
            self.sent[task.id] = (task.updated_at, row_key(task))
            if shown is not None and shown[1] == row_key(task):
                continue
            if viewer.sees(task.repo):  # the query filtered already; never trust one check
                messages.append(event(
                    "task", {"id": task.id, "state": task.state.value,
                             "html": row_html(svc, task)},
                    event_id=self.position()))
        more = len(tasks) == limit
        if not more:  # everything up to now was read: a quiet feed's position still moves
            self.since = max(self.since, svc.clock() - OVERLAP)
        self.sent = {k: shown for k, shown in self.sent.items()
                     if shown[0] >= self.since - OVERLAP}
        return Sent(messages, more=more)

    def position(self) -> str:
        return f"{self.since:.6f}"


async def feed(request: Request) -> Response:
    viewer = await live_viewer(request)
    svc = services(request)
    since = _number(request.headers.get("last-event-id")) \
        or _number(request.query_params.get("since")) or svc.clock() - OVERLAP
    return sse(request, viewer, Feed(since=min(since, svc.clock())))


# -- one task ---------------------------------------------------------------------------------


@dataclass
class TaskFollower:
    """The task's header and timeline when it changes, and its log chunks after `after`."""

    task_id: int
    run_id: str
    after: int
    shown: tuple[object, ...] = ()  # what the header and timeline last showed

    async def step(self, request: Request, viewer: Viewer) -> Sent:
        svc = services(request)
        task = await svc.store.get_task(self.task_id)
        if task is None or not viewer.sees(task.repo):
            return Sent([], going=False)
        messages = []
        run = await svc.store.current_run(task.id)
        # Not the heartbeat's time: the header would be sent again at every heartbeat.
        shown = (task, await svc.store.last_event_id(task.id),
                 run and (run.id, run.machine_id, run.state, run.result))
        if shown != self.shown:
            self.shown = shown
            head = head_html(await head_context(request, viewer, task))
            messages.append(event("state", {
                "state": task.state.value, "head": head,
                "timeline": await timeline_html(svc, task)}))
        if run is not None and run.id != self.run_id:
            self.run_id, self.after = run.id, -1
            messages.append(event("attempt", {"run": run.id}))
        chunks = await svc.store.run_logs_after(run.id, self.after, limit=CHUNKS) \
            if run is not None else []
        for seq, text in chunks:
            self.after = seq
            messages.append(event("log", {"seq": seq, "text": text},
                                  event_id=self.position()))
        return Sent(messages, more=len(chunks) == CHUNKS)

    def position(self) -> str:
        return f"{self.run_id}:{self.after}"


async def task_stream(request: Request) -> Response:
    viewer = await live_viewer(request)
    task = await visible_task(request, viewer)
    run_id, after = request.query_params.get("run", ""), request.query_params.get("after")
    resumed = request.headers.get("last-event-id", "")
    if ":" in resumed:
        run_id, _, after = resumed.rpartition(":")
    # The run id goes back out in every event's `id:` line: a line break in it would let a
    # crafted URL write events of its own into the stream.
    if not RUN_ID.fullmatch(run_id):
        run_id = ""
    seq = _number(after)
    return sse(request, viewer, TaskFollower(task.id, run_id, int(seq) if seq is not None else -1))


def _number(raw: str | None) -> float | None:
    """A float the page or the browser sent back; None for anything else."""
    try:
        value = float(raw) if raw and len(raw) < 32 else None
    except ValueError:
        return None
    return value if value is not None and value == value and abs(value) < 1e12 else None


routes: list[BaseRoute] = [
    Route("/live/feed", feed, methods=["GET"]),
    Route("/live/tasks/{task_id}", task_stream, methods=["GET"]),
]
