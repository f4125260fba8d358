"""The provider's answer, relayed to the agent as it arrives.

Two tasks per answer, joined by a bounded buffer: one reads the provider's chunks (and shows
each to the meter), the other writes them to the agent. When the agent keeps up, each chunk goes
out alone as soon as it arrives; when chunks arrive faster than they can be written, the ones
that piled up go out in one write instead of one each (a burst of server-sent events costs one
system call, not dozens). The buffer holds at most BACKLOG_BYTES: past that the reader stops
reading, so a slow agent slows the provider's stream down (back-pressure) instead of filling
memory. A third task notices the agent going away, which ends both at once and closes the
provider's stream.

An error answer is the exception: read whole (bounded) and relayed with the real key redacted,
since a provider may quote the credential it refused, and the agent must never see it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence

import httpx
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from porter.gateway.metering import Meter
from porter.gateway.providers import response_headers
from porter.redact import Redactor

log = logging.getLogger(__name__)

BACKLOG_BYTES = 64 * 1024
ERROR_BYTES = 256 * 1024  # an error answer past this is cut: errors are a few hundred bytes


class Backlog:
    """Chunks read but not yet written; bounded, with the reader's end (or failure)."""

    def __init__(self, limit: int = BACKLOG_BYTES) -> None:
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self._ended = False
        self._error: BaseException | None = None
        self._ready = asyncio.Event()
        self._room = asyncio.Event()

    async def put(self, chunk: bytes) -> None:
        while self._size >= self._limit:
            self._room.clear()
            await self._room.wait()
        self._parts.append(chunk)
        self._size += len(chunk)
        self._ready.set()

    def end(self, error: BaseException | None = None) -> None:
        self._ended, self._error = True, error
        self._ready.set()

    async def take(self) -> bytes | None:
        """Everything read so far, at once; None after the end (raising the reader's error)."""
        while not self._parts and not self._ended:
            self._ready.clear()
            await self._ready.wait()
        if not self._parts:
            if self._error is not None:
                raise self._error
            return None
        data = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
        self._parts, self._size = [], 0
        self._room.set()
        return data


class Relay(Response):
    def __init__(self, upstream: httpx.Response, meter: Meter, started: float, *,
                 secrets: Sequence[str] = ()) -> None:
        self.upstream = upstream
        # Only error answers are scrubbed: a successful one streams untouched.
        self.scrub = Redactor(secrets) if upstream.status_code >= 400 and secrets else None
        self.meter = meter
        self.started = started
        self.status_code = upstream.status_code
        self.background = None
        # Upstream is asked for identity; one that compresses anyway is decoded here, so the
        # agent and the meter both see plain bytes (and no content-encoding header).
        self.encoded = "content-encoding" in upstream.headers
        self.raw_headers = response_headers(upstream.headers.raw)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        backlog = Backlog()
        tasks = (asyncio.ensure_future(self._read(backlog)),
                 asyncio.ensure_future(self._write(backlog, send)),
                 asyncio.ensure_future(_disconnect(receive)))
        _, writer, _ = tasks
        try:
            await asyncio.wait(tasks[1:], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Closing returns the connection to the pool, or drops it mid-stream.
            await self.upstream.aclose()
            await finish(self.meter, self.status_code, self.started)
        if not writer.cancelled() and (error := writer.exception()) is not None:
            # The provider broke off mid-answer: raising aborts the agent's connection, so its
            # SDK sees a cut stream (and retries), never a short answer that looks complete.
            log.warning("an answer from %s broke off: %r", self.upstream.url.host, error)
            raise error

    async def _read(self, backlog: Backlog) -> None:
        chunks: AsyncIterator[bytes] = (self.upstream.aiter_bytes() if self.encoded
                                        else self.upstream.aiter_raw())
        try:
            if self.scrub is not None:
                await backlog.put(await self._scrubbed(chunks))
            else:
                async for chunk in chunks:
                    self.meter.feed(chunk)
                    await backlog.put(chunk)
        except Exception as exc:
            backlog.end(exc)
        else:
            backlog.end()

    async def _scrubbed(self, chunks: AsyncIterator[bytes]) -> bytes:
        """The whole error answer (at most ERROR_BYTES) with the secrets redacted."""
        assert self.scrub is not None
        body = bytearray()
        async for chunk in chunks:
            self.meter.feed(chunk)
            body += chunk[:ERROR_BYTES - len(body)]
        text = body.decode(errors="replace")
        return self.scrub.redact(text).encode()

    async def _write(self, backlog: Backlog, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        while (data := await backlog.take()) is not None:
            await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _disconnect(receive: Receive) -> None:
    """Returns when the agent has gone (the request body, if any, is already read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def finish(meter: Meter, status: int, started: float) -> None:
    try:
        await meter.finish(status, time.perf_counter() - started)
    except Exception:  # accounting must never break the answer the agent is reading
        log.exception("metering a gateway call failed")
