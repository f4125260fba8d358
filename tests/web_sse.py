"""Reading Porter's server-sent events in-process, as a browser's EventSource would.

httpx's ASGI transport hands back a response only once the app has finished it, and an event
stream never finishes: this drives the ASGI app directly, parses events as they are sent, and
disconnects like a closed tab when the test is done.

    async with EventStream(world, "/live/feed", cookies=browser.client.cookies) as stream:
        name, data = await stream.next("task")
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from tests.fakes.world import World

Event = tuple[str, Any]


class EventStream:
    def __init__(self, world: World, url: str, *, cookies: Mapping[str, str] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        self._app = world.client._transport.app  # type: ignore[attr-defined]
        parts = urlsplit(url)
        sent = {"host": "porter.test", "accept": "text/event-stream", **(headers or {})}
        if cookies:
            sent["cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        self._scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1", "method": "GET", "scheme": "http", "path": parts.path,
            "raw_path": parts.path.encode(), "query_string": parts.query.encode(),
            "root_path": "", "client": ("127.0.0.1", 50000), "server": ("porter.test", 80),
            "headers": [(k.lower().encode(), v.encode()) for k, v in sent.items()],
        }
        self.status: int | None = None
        self.body = ""  # everything received, comments included
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.seen: list[Event] = []
        self._started = asyncio.Event()
        self._gone = asyncio.Event()
        self._buffer = ""
        self._task: asyncio.Task[None] | None = None
        self._asked = False

    async def __aenter__(self) -> EventStream:
        self._task = asyncio.create_task(self._app(self._scope, self._receive, self._send))
        async with asyncio.timeout(5):
            await self._started.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._gone.set()
        assert self._task is not None
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            async with asyncio.timeout(5):
                await self._task
        if not self._task.done():
            self._task.cancel()

    @property
    def finished(self) -> bool:
        return self._task is not None and self._task.done()

    async def _receive(self) -> dict[str, Any]:
        if not self._asked:
            self._asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self._started.set()
        elif message["type"] == "http.response.body":
            text = message.get("body", b"").decode()
            self.body += text
            self._buffer += text
            while "\n\n" in self._buffer:
                block, self._buffer = self._buffer.split("\n\n", 1)
                self._parse(block)

    def _parse(self, block: str) -> None:
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        if data:
            event = (name, json.loads("\n".join(data)))
            self.seen.append(event)
            self.events.put_nowait(event)

    async def next(self, name: str | None = None, *, within: float = 3.0) -> Any:
        """The data of the next event named `name` (any event when None), skipping others;
        TimeoutError when none comes `within` seconds."""
        async with asyncio.timeout(within):
            while True:
                got, data = await self.events.get()
                if name is None or got == name:
                    return data

    async def drain(self, seconds: float) -> list[Event]:
        """Every event that arrives within `seconds`."""
        found: list[Event] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while True:
                    found.append(await self.events.get())
        return found
