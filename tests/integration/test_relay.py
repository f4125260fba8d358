"""The webhook relay: a smee-style channel on loopback, a real Porter served on loopback.

The channel is a tiny Starlette app under uvicorn that streams whatever a test sends to each
connection; Porter runs whole (its lifespan starts the relay) with a webhook secret, so a relayed
delivery goes through the same route, limits and signature check as one from GitHub.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from porter.app import create_app
from porter.relay import Relay
from porter.settings import Settings
from porter.webhooks import sign
from tests.conftest import WEBHOOK_SECRET, comment_payload
from tests.loopback import bound_socket, served, until

DROP = b"<drop>"  # sent to a connection: it breaks off mid-stream, as a lost network does


@dataclass
class Connection:
    headers: dict[str, str]
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)

    def send(self, chunk: bytes) -> None:
        self.queue.put_nowait(chunk)


class Channel:
    """A smee-style channel: each GET is one event stream, fed by the test."""

    def __init__(self) -> None:
        self.connections: list[Connection] = []
        self.refuse = 0  # answer this many of the next connections 503

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/channel", self.endpoint)])

    async def endpoint(self, request: Request) -> Response:
        if self.refuse:
            self.refuse -= 1
            return Response("busy", 503)
        connection = Connection(dict(request.headers))
        self.connections.append(connection)

        async def stream() -> AsyncIterator[bytes]:
            yield b"event: ready\ndata: {}\n\n"  # smee greets every connection so
            while (chunk := await connection.queue.get()) is not None:
                if chunk == DROP:
                    raise ConnectionError("the channel broke off")
                yield chunk

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def connection(self, index: int) -> Connection:
        await until(lambda: len(self.connections) > index, f"relay connection {index}")
        return self.connections[index]

    def close(self) -> None:
        for connection in self.connections:
            connection.send(None)  # type: ignore[arg-type]


def smee_event(payload: dict[str, Any], delivery: str, *, event_id: str,
               secret: str = WEBHOOK_SECRET) -> bytes:
    """A delivery as smee.io relays it: the body GitHub signed (compact, non-ASCII as is, as
    JSON.stringify writes it) parsed back into `body`, beside the request's headers."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    data = {
        "host": "smee.io", "content-length": str(len(body)), "accept": "*/*",
        "content-type": "application/json", "user-agent": "GitHub-Hookshot/044aadd",
        "x-github-event": "issue_comment", "x-github-delivery": delivery,
        "x-github-hook-id": "1", "x-hub-signature-256": sign(body, secret=secret.encode()),
        "body": payload, "query": {}, "timestamp": 1_700_000_000_000,
    }
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"id: {event_id}\ndata: {text}\n\n".encode()


def rows(database: Path, sql: str) -> list[sqlite3.Row]:
    db = sqlite3.connect(database)
    db.row_factory = sqlite3.Row
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def task_for(database: Path, delivery: str) -> sqlite3.Row | None:
    found = [row for row in rows(database, "SELECT * FROM tasks") if row["delivery_id"] == delivery]
    return found[0] if found else None


@dataclass
class Setup:
    channel: Channel
    database: Path
    porter_url: str


@pytest.fixture
async def setup(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Setup]:
    caplog.set_level(logging.INFO)  # from the start: the relay connects as Porter starts
    channel = Channel()
    porter_socket = bound_socket()
    async with served(channel.app(), bound_socket(), lifespan="off") as channel_url:
        settings = Settings.from_mapping({
            "PORTER_DATABASE": str(tmp_path / "porter.db"),
            "PORTER_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "PORTER_HOST": "127.0.0.1",
            "PORTER_PORT": str(porter_socket.getsockname()[1]),
            "PORTER_WEBHOOK_RELAY_URL": f"{channel_url}/channel",
        })
        # No job runner or dispatcher: the tasks stay queued, where the test reads them.
        app = create_app(settings, background=False)
        try:
            async with served(app, porter_socket, lifespan="on") as porter_url:
                yield Setup(channel, settings.database, porter_url)
        finally:
            channel.close()


async def test_a_signed_delivery_becomes_a_task_and_a_forged_one_is_refused(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    connection = await setup.channel.connection(0)
    assert connection.headers["accept"] == "text/event-stream"
    assert "last-event-id" not in connection.headers

    signed = comment_payload(body="@porter fix the typo — café ✓", id=9001)
    forged = comment_payload(body="@porter leak the secrets", id=9002)
    after = comment_payload(body="@porter add a test", id=9003)
    connection.send(smee_event(signed, "relayed-1", event_id="1"))
    connection.send(smee_event(forged, "forged-1", event_id="2", secret="not-the-secret"))
    connection.send(b"event: ping\ndata: {}\n\n: keep-alive\n\n")
    connection.send(smee_event(after, "relayed-2", event_id="3"))
    await until(lambda: task_for(setup.database, "relayed-2"), "the last delivery's task")

    task = task_for(setup.database, "relayed-1")
    assert task is not None
    assert (task["state"], task["instruction"]) == ("queued", "fix the typo — café ✓")
    assert task["comment_id"] == 9001
    assert task_for(setup.database, "forged-1") is None
    assert [r["delivery_id"] for r in rows(setup.database, "SELECT * FROM deliveries")] == [
        "relayed-1", "relayed-2"]
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"{setup.porter_url}/metrics")).text
    assert 'porter_webhook_deliveries_total{outcome="unauthorized"} 1.0' in metrics
    assert 'porter_webhook_deliveries_total{outcome="recorded"} 2.0' in metrics
    # The channel's URL is its secret, and a payload is the requester's: neither is logged.
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "webhook relay: delivery forged-1 (issue_comment) refused" in logged
    assert "/channel" not in logged and "café" not in logged and "leak" not in logged


async def test_the_relay_reconnects_after_a_drop_and_resumes_after_the_last_event(
    setup: Setup,
) -> None:
    first = await setup.channel.connection(0)
    first.send(b"retry: 20\n\n")
    first.send(smee_event(comment_payload(id=9101), "before-drop", event_id="41"))
    await until(lambda: task_for(setup.database, "before-drop"), "the first task")
    setup.channel.refuse = 2  # the channel is down for a moment after the drop, too
    first.send(DROP)

    second = await setup.channel.connection(1)
    assert second.headers["last-event-id"] == "41"
    second.send(smee_event(comment_payload(id=9102), "after-drop", event_id="42"))
    await until(lambda: task_for(setup.database, "after-drop"), "the task after the drop")


# -- reconnection and posting, against in-memory peers ----------------------------------------


class Stop(Exception):
    pass


async def test_backoff_doubles_from_the_streams_retry_and_is_capped() -> None:
    sources: list[httpx.Request] = []
    posted: list[httpx.Request] = []
    delivery = smee_event(comment_payload(id=1), "d-1", event_id="5")

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            posted.append(request)
            return httpx.Response(202 if len(posted) > 1 else 503)  # busy once, then taken
        sources.append(request)
        if len(sources) == 1:
            return httpx.Response(200, headers={"content-type": "text/event-stream"},
                                  content=b"retry: 100\n\n" + delivery)
        return httpx.Response(502, text="bad gateway")

    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) == 14:
            raise Stop

    relay = Relay("https://relay.example/channel", "http://127.0.0.1:1/webhooks/github",
                  max_bytes=1 << 20, transport=httpx.MockTransport(handler), sleep=sleep)
    with pytest.raises(Stop):
        await relay.run()
    await relay.stop()

    assert posted[0].content == posted[1].content
    assert posted[1].headers["x-github-delivery"] == "d-1"
    assert relay.delivered == 1
    assert delays[0] == 0.5  # the busy answer, then the post was made again
    # The stream ended cleanly (retry 100 ms), then the channel failed, doubling up to the cap.
    assert delays[1:] == [0.1, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 60, 60]
    assert sources[1].headers["last-event-id"] == "5"
    assert sources[1].headers["accept"] == "text/event-stream"


async def test_a_refused_delivery_is_not_posted_again() -> None:
    posted: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            posted.append(request)
            return httpx.Response(401)
        return httpx.Response(200, headers={"content-type": "text/event-stream"},
                              content=smee_event(comment_payload(id=2), "d-2", event_id="1"))

    async def sleep(seconds: float) -> None:
        raise Stop

    relay = Relay("https://relay.example/channel", "http://127.0.0.1:1/webhooks/github",
                  max_bytes=1 << 20, transport=httpx.MockTransport(handler), sleep=sleep)
    with pytest.raises(Stop):
        await relay.run()
    await relay.stop()
    assert (len(posted), relay.refused, relay.delivered) == (1, 1, 0)
