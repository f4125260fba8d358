"""A fake model provider on loopback speaking Anthropic, OpenAI (Chat Completions and Responses)
and Gemini, for the LLM gateway's tests, end-to-end runs of real agent CLIs, and the benchmark.

    provider = FakeProvider()
    with provider.serve() as url:              # uvicorn in a thread; also `async with`
        provider.push("anthropic", Reply.sse(anthropic_events([Tool("Write", {...})])))
        ...                                    # point PORTER_LLM_ANTHROPIC_URL at url
        provider.requests[-1].headers["x-api-key"]

What it does:
- records every request as it arrives (`requests`: method, path, query, headers, body bytes),
  before answering, so a test sees even a call it is still holding;
- answers each dialect from its own queue (`push(dialect, *replies)`, dialects "anthropic",
  "chat", "responses", "gemini"); a queued item is a `Reply` or a function of the `Recorded`
  request returning one; when a queue is empty it answers "Done." with usage, as JSON or as a
  stream, as the request asked (`"stream": true`, or Gemini's `:streamGenerateContent`);
- `Reply.json(...)`, `Reply.sse(events)`, `Reply.error(dialect, status, message)`;
  `Reply.sse(..., hold_after=n)` sends n events then waits until `reply.gate.release()`
  (`reply.gate.reached` is set once it waits, `reply.gate.abandoned` if the client went away
  meanwhile); `drop_after=n` sends n events then cuts the connection; `gzip=True` compresses
  the body (SSE: flushed per event) and says so in content-encoding, whatever was asked;
- GET .../models and count_tokens get canned answers; any other path is a 404 (recorded).
- For the benchmark, a default answer reads `fake_events` (text deltas) and `fake_hold_s`
  (seconds to hold a stream open after its first event) from the request body: unknown body
  fields pass through the gateway untouched. `python -m tests.fakes.llm_provider --port P`
  serves the defaults in a process of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.types import Receive, Scope, Send

from tests.fakes.llm_dialects import MODELS, STREAMED, WHOLE, Text, Usage


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lowercase names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Gate:
    """Where a held stream waits; released from any thread."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.released = threading.Event()
        self.abandoned = threading.Event()

    def release(self) -> None:
        self.released.set()


@dataclass
class Reply:
    status: int = 200
    body: bytes | None = None  # a whole answer, or
    events: list[bytes] | None = None  # a server-sent-event stream
    headers: dict[str, str] = field(default_factory=dict)
    hold_after: int | None = None
    drop_after: int | None = None
    gzip: bool = False
    hold_s: float = 0.0  # after the first event (the benchmark's long streams)
    gate: Gate = field(default_factory=Gate)
    sent: int = 0  # events handed to the server so far (a blocked send stops the count)

    @classmethod
    def json(cls, data: Any, status: int = 200, **options: Any) -> Reply:
        body = data if isinstance(data, bytes) else json.dumps(data).encode()
        return cls(status, body=body, headers={"content-type": "application/json",
                                                **options.pop("headers", {})}, **options)

    @classmethod
    def sse(cls, events: list[bytes], **options: Any) -> Reply:
        return cls(events=list(events), headers={"content-type": "text/event-stream",
                                                 "cache-control": "no-cache",
                                                 **options.pop("headers", {})}, **options)

    @classmethod
    def error(cls, dialect: str, status: int, message: str = "fake failure",
              retry_after: int | None = None) -> Reply:
        shape: dict[str, Any] = (
            {"type": "error", "error": {"type": "api_error", "message": message}}
            if dialect == "anthropic" else
            {"error": {"code": status, "message": message, "status": "INTERNAL"}}
            if dialect == "gemini" else
            {"error": {"message": message, "type": "server_error", "code": None}})
        headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
        return cls.json(shape, status, headers=headers)


Scripted = Reply | Callable[[Recorded], Reply]


def dialect_of(path: str) -> str | None:
    if path.endswith("/messages"):
        return "anthropic"
    if path.endswith("/chat/completions"):
        return "chat"
    if path.endswith("/responses"):
        return "responses"
    if path.endswith((":generateContent", ":streamGenerateContent")):
        return "gemini"
    return None


def default_reply(dialect: str, request: Recorded) -> Reply:
    try:
        asked = request.json()
    except ValueError:
        asked = {}
    asked = asked if isinstance(asked, dict) else {}
    pieces = int(asked.get("fake_events", 3))
    parts = [Text("Done. " * max(1, pieces))]
    streamed = asked.get("stream") is True or request.path.endswith(":streamGenerateContent")
    if streamed:
        return Reply.sse(STREAMED[dialect](parts, Usage(), pieces=pieces),
                         hold_s=float(asked.get("fake_hold_s", 0)))
    return Reply.json(WHOLE[dialect](parts, Usage()))


def canned(request: Recorded) -> Reply | None:
    """models lists and token counts; None: not one of those."""
    path = request.path
    if path.endswith("/count_tokens"):
        return Reply.json({"input_tokens": 12})
    if path.endswith(":countTokens"):
        return Reply.json({"totalTokens": 12})
    if "/models" in path and request.method in ("GET", "HEAD") and ":" not in path:
        models = [{"id": m, "name": f"models/{m}", "type": "model", "object": "model"}
                  for m in MODELS.values()]
        return Reply.json({"data": models, "models": models, "has_more": False})
    return None


class FakeProvider:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.completed = 0  # answers sent to the end
        self.abandoned = 0  # streams whose client went away before the end
        self._queues: dict[str, deque[Scripted]] = {d: deque() for d in WHOLE}
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def push(self, dialect: str, *replies: Scripted) -> None:
        self._queues[dialect].extend(replies)

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def _reply(self, request: Recorded) -> Reply:
        if (fixed := canned(request)) is not None:
            return fixed
        dialect = dialect_of(request.path)
        if dialect is None or request.method != "POST":
            return Reply.json({"error": {"message": f"no route {request.path}"}}, 404)
        queue = self._queues[dialect]
        if not queue:
            return default_reply(dialect, request)
        scripted = queue.popleft()
        return scripted(request) if callable(scripted) else scripted

    # -- the ASGI app -------------------------------------------------------------------------

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        request = Recorded(scope["method"], scope["path"], scope["query_string"].decode(),
                           {k.decode().lower(): v.decode() for k, v in scope["headers"]},
                           b"".join(chunks))
        self.requests.append(request)
        reply = self._reply(request)
        headers = [(k.encode(), v.encode()) for k, v in reply.headers.items()]
        if reply.gzip:
            headers.append((b"content-encoding", b"gzip"))
        compressor = zlib.compressobj(wbits=31) if reply.gzip else None

        def encode(data: bytes, last: bool = False) -> bytes:
            if compressor is None:
                return data
            return compressor.compress(data) + compressor.flush(
                zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)

        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        if reply.events is None:
            await send({"type": "http.response.body", "body": encode(reply.body or b"", True)})
            self.completed += 1
            return
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            for index, event in enumerate(reply.events):
                if index == reply.drop_after:
                    raise ConnectionAbortedError("the fake provider cut the stream")
                if index == reply.hold_after and not await _held(reply.gate, gone):
                    self.abandoned += 1
                    return
                await send({"type": "http.response.body", "body": encode(event),
                            "more_body": True})
                reply.sent += 1
                if index == 0 and reply.hold_s:
                    await asyncio.wait((gone,), timeout=reply.hold_s)
                if gone.done():
                    self.abandoned += 1
                    return
            await send({"type": "http.response.body", "body": encode(b"", True)})
            self.completed += 1
        finally:
            gone.cancel()

    # -- serving ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def serve(self, *, host: str = "127.0.0.1", port: int = 0, fast: bool = False
              ) -> Iterator[str]:
        """uvicorn in a background thread on a socket bound first; yields the base URL."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
        bound = sock.getsockname()[1]
        config = uvicorn.Config(self.app, interface="asgi3", log_level="critical", lifespan="off",
                                loop="uvloop" if fast else "asyncio",
                                http="httptools" if fast else "auto", access_log=False,
                                server_header=False, timeout_graceful_shutdown=1,
                                backlog=1024)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=lambda: server.run(sockets=[sock]),
                                  name=f"fake-llm-{bound}", daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        if not server.started:
            server.should_exit = True
            raise RuntimeError("the fake provider did not start")
        self._server, self._thread = server, thread
        try:
            yield f"http://{host}:{bound}"
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            sock.close()

    @contextlib.asynccontextmanager
    async def serving(self, **options: Any) -> Any:
        with self.serve(**options) as url:
            yield url


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _held(gate: Gate, gone: asyncio.Future[None]) -> bool:
    """Wait at the gate; False when the client went away first."""
    gate.reached.set()
    while not gate.released.is_set():
        if gone.done():
            gate.abandoned.set()
            return False
        await asyncio.sleep(0.005)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description="serve the fake model provider's defaults")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with FakeProvider().serve(host=args.host, port=args.port, fast=True) as url:
        print(url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
