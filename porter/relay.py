"""A webhook relay for development: GitHub → a smee.io-style channel → this Porter.

A laptop has no URL GitHub can reach. With PORTER_WEBHOOK_RELAY_URL set, the App delivers to a
channel (smee.io, or a smee server of one's own), and `porter serve` reads the channel as a
server-sent-events stream and posts each delivery to its own /webhooks/github over HTTP, with
GitHub's headers. Going through the listener, not into the app in-process, keeps the body limits,
the signature check and the metrics exactly as for a direct delivery: the relay is trusted with
nothing, and a delivery it forged or changed is refused like any other.

A relay delivers only what its re-serialisation preserves. smee parses each delivery's JSON and
sends it on inside its own event, re-serialised by JSON.stringify (compact, non-ASCII as is);
the signature covers the bytes GitHub sent, so a delivery passes only where JSON.stringify
reproduces them. Porter adds no difference of its own: it posts the body's JSON text exactly as
it stands in the event, which is JSON.stringify's output byte for byte (re-encoding it in Python
would write some numbers and escapes differently). A delivery the round trip changed is answered
401 and logged, never its payload.

`EventStream` (the text/event-stream framing) and `delivery_of` (smee's event → a delivery) are
pure; `Relay` is the I/O around them, started and stopped by the app's lifespan (`start`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from porter.settings import Settings

log = logging.getLogger(__name__)

INITIAL_DELAY_S = 1.0  # before reconnecting, until the stream's `retry:` says otherwise
MAX_DELAY_S = 60.0  # backoff cap while the channel keeps failing
# smee pings every few tens of seconds; a stream silent for this long is dead, not idle.
READ_TIMEOUT_S = 90.0
POST_ATTEMPTS = 6  # Porter's own listener may not be up yet when the first event arrives
IGNORED_EVENTS = frozenset({"ready", "ping"})  # smee's connection and keep-alive events
# Of the headers smee passes on, those a webhook route reads: never Host, Content-Length or
# hop-by-hop ones, which describe the request to smee, not the one Porter makes.
_FORWARDED = re.compile(r"x-github-[a-z0-9-]+|x-hub-signature(?:-256)?|user-agent")
_EOL = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"


# -- the text/event-stream framing ------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    type: str  # "message" when the stream named none
    data: str
    id: str  # the stream's last event id when this event was dispatched


class EventStream:
    """An incremental text/event-stream parser, by the WHATWG HTML rules for server-sent
    events: feed bytes as they arrive, take back each event once its blank line has come.

    Lines end in CRLF, LF or CR (a CRLF split across two chunks is one line end); `:` starts a
    comment; an event still open when the stream ends is never dispatched. A line longer than
    `max_line` bytes, or an event whose data passes `max_event`, is dropped whole (counted in
    `dropped`) without being held in memory. `last_event_id` and `retry_ms` outlive a
    connection: call `reconnected()` when a new one starts.
    """

    def __init__(self, *, max_line: int, max_event: int) -> None:
        self._max_line = max_line
        self.max_event = max_event
        self.last_event_id = ""
        self.retry_ms: int | None = None
        self.dropped = 0
        self.reconnected()

    def reconnected(self) -> None:
        """Forget what the previous connection left unfinished."""
        self._pending = bytearray()
        self._scanned = 0  # bytes at the head of _pending known to hold no line end
        self._after_cr = False
        self._overlong = False  # the current line passed max_line: its rest is skipped
        self._at_start = True
        self._reset_event()

    def _reset_event(self) -> None:
        self._data: list[str] = []
        self._size = 0
        self._type = ""
        self._id = self.last_event_id
        self._dropping = False

    def feed(self, chunk: bytes) -> list[Event]:
        events: list[Event] = []
        if not chunk:
            return events
        buffer = self._pending
        buffer += chunk
        start = 0
        if self._after_cr:
            self._after_cr = False
            if buffer[:1] == b"\n":
                start = 1
        position = max(start, self._scanned)
        while (end := _EOL.search(buffer, position)) is not None:
            if end.group() == b"\r" and end.end() == len(buffer):
                self._after_cr = True  # an LF opening the next chunk ends nothing more
            line = None if self._overlong else bytes(buffer[start:end.start()])
            self._overlong = False
            self._line(line, events)
            start = position = end.end()
        del buffer[:start]
        self._scanned = len(buffer)
        if len(buffer) > self._max_line:
            self._overlong = True
            buffer.clear()
            self._scanned = 0
        return events

    def _line(self, raw: bytes | None, events: list[Event]) -> None:
        if raw is None:  # the tail of an overlong line: the event it belongs to is lost
            self._dropping = True
            return
        if self._at_start:
            self._at_start = False
            raw = raw.removeprefix(_BOM)
        if not raw:
            self._dispatch(events)
            return
        if self._dropping or raw.startswith(b":"):
            return
        name, colon, value = raw.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        text = value.decode("utf-8", "replace")
        if name == b"data":
            self._size += len(value) + 1
            if self._size > self.max_event:
                self._data, self._dropping = [], True
                return
            self._data.append(text)
        elif name == b"event":
            self._type = text
        elif name == b"id":
            if "\0" not in text:
                self._id = text
        elif name == b"retry" and value.isdigit():
            self.retry_ms = int(value)

    def _dispatch(self, events: list[Event]) -> None:
        self.last_event_id = self._id
        if self._dropping:
            self.dropped += 1
        elif self._data:
            events.append(Event(self._type or "message", "\n".join(self._data), self._id))
        self._reset_event()


# -- smee's events ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    headers: dict[str, str]
    body: bytes

    @property
    def name(self) -> str:
        """How a log line names it: delivery id and event, never anything from the payload."""
        return (f"{self.headers.get('x-github-delivery', '(no id)')[:64]} "
                f"({self.headers.get('x-github-event', '')[:64]})")


def delivery_of(event: Event) -> Delivery | None:
    """The GitHub delivery a smee event carries, or None for anything else.

    smee's event data is one JSON object: the original request's headers as top-level
    lower-case keys, `body` (the parsed payload), `query` and `timestamp`.
    """
    if event.type in IGNORED_EVENTS:
        return None
    members = json_members(event.data)
    if members is None or "x-github-event" not in members or "body" not in members:
        return None
    payload, text = members["body"]
    if not isinstance(payload, dict):
        return None
    headers = {name: value for name, (value, _) in members.items()
               if _FORWARDED.fullmatch(name) and isinstance(value, str)}
    headers["content-type"] = "application/json"
    # Lines are decoded with replacement, so the text holds no lone surrogate to refuse here.
    return Delivery(headers, text.encode())


_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")


def json_members(text: str) -> dict[str, tuple[Any, str]] | None:
    """The members of a JSON object text: name → (value, the value's exact text), or None when
    `text` is not one JSON object."""
    members: dict[str, tuple[Any, str]] = {}
    try:
        at = _skip(text, 0)
        if text[at:at + 1] != "{":
            return None
        at = _skip(text, at + 1)
        if text[at:at + 1] == "}":
            return members if _skip(text, at + 1) == len(text) else None
        while True:
            name, at = _DECODER.raw_decode(text, at)
            at = _skip(text, at)
            if not isinstance(name, str) or text[at:at + 1] != ":":
                return None
            start = _skip(text, at + 1)
            value, at = _DECODER.raw_decode(text, start)
            members[name] = (value, text[start:at])
            at = _skip(text, at)
            if text[at:at + 1] == "}":
                return members if _skip(text, at + 1) == len(text) else None
            if text[at:at + 1] != ",":
                return None
            at = _skip(text, at + 1)
    except (json.JSONDecodeError, RecursionError):
        return None


def _skip(text: str, at: int) -> int:
    match = _SPACE.match(text, at)
    return match.end() if match else at


# -- the relay --------------------------------------------------------------------------------


def local_webhook_url(host: str, port: int) -> str:
    """Porter's own webhook route as seen from this host: a wildcard address is reached on
    loopback."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/webhooks/github"


def start(settings: Settings) -> Relay | None:
    """The relay `porter serve` runs, started; None when PORTER_WEBHOOK_RELAY_URL is unset."""
    if not settings.webhook_relay_url:
        return None
    if settings.github_webhook_secret is None:
        log.warning("webhook relay: PORTER_GITHUB_WEBHOOK_SECRET is not set, so Porter will "
                    "refuse every delivery the relay brings")
    relay = Relay(settings.webhook_relay_url, local_webhook_url(settings.host, settings.port),
                  max_bytes=settings.max_body_bytes)
    relay.start()
    return relay


class Relay:
    """Reads the channel for as long as it runs, reconnecting with capped exponential backoff
    (from the stream's `retry:`) and resuming with `Last-Event-ID`; posts each delivery to
    `target`, one at a time and in order."""

    def __init__(
        self,
        source: str,
        target: str,
        *,
        max_bytes: int,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._source = source
        self._target = target
        # The channel's URL is its only secret (whoever has it reads the deliveries): Porter's
        # logs name its host alone.
        self._where = urlsplit(source).netloc
        self._stream = EventStream(max_line=max_bytes, max_event=max_bytes)
        self._sleep = sleep
        self._inbound = httpx.AsyncClient(
            transport=transport, follow_redirects=True,
            timeout=httpx.Timeout(10.0, read=READ_TIMEOUT_S))
        # Loopback: no proxy from the environment may stand between Porter and itself.
        self._outbound = httpx.AsyncClient(transport=transport, trust_env=False,
                                           timeout=httpx.Timeout(30.0))
        self._task: asyncio.Task[None] | None = None
        self._connected = False
        self.delivered = 0  # deliveries Porter answered 2xx
        self.refused = 0  # deliveries Porter refused (4xx), or that never reached it

    def start(self) -> None:
        logging.getLogger("httpx").addFilter(self._hide_channel)
        self._task = asyncio.create_task(self.run(), name="webhook-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._inbound.aclose()
        await self._outbound.aclose()
        logging.getLogger("httpx").removeFilter(self._hide_channel)

    def _hide_channel(self, record: logging.LogRecord) -> bool:
        """httpx logs each request's URL: not the channel's, which is its only secret."""
        args = record.args if isinstance(record.args, tuple) else ()
        return not any(str(arg).startswith(self._source) for arg in args)

    async def run(self) -> None:
        failures = 0  # attempts in a row that never got a stream: each doubles the wait
        while True:
            self._connected = False
            try:
                await self._listen()
                log.info("webhook relay: %s ended the stream; reconnecting", self._where)
            except _Refused as exc:
                log.warning("webhook relay: %s answered %s", self._where, exc)
            except (httpx.HTTPError, OSError) as exc:
                log.warning("webhook relay: lost %s (%s)", self._where, type(exc).__name__)
            except Exception as exc:  # a bug here must not end the relay for good
                # The type only: a message could quote the payload.
                log.error("webhook relay: unexpected %s", type(exc).__name__)
            failures = 0 if self._connected else failures + 1
            await self._sleep(self._delay(failures))

    def _delay(self, failures: int) -> float:
        base = (self._stream.retry_ms / 1000 if self._stream.retry_ms is not None
                else INITIAL_DELAY_S)
        return float(min(MAX_DELAY_S, base * 2 ** min(max(failures - 1, 0), 16)))

    async def _listen(self) -> None:
        """One connection, until the channel ends it; raises when it fails."""
        # Bytes: an event id may be any text but NUL, and httpx would encode str as ASCII.
        headers = {b"accept": b"text/event-stream", b"cache-control": b"no-cache"}
        if self._stream.last_event_id:
            headers[b"last-event-id"] = self._stream.last_event_id.encode()
        async with self._inbound.stream("GET", self._source, headers=headers) as response:
            kind = response.headers.get("content-type", "")
            if response.status_code != 200 or not kind.startswith("text/event-stream"):
                raise _Refused(f"{response.status_code} ({kind or 'no content type'})")
            log.info("webhook relay: listening to %s, posting to %s", self._where, self._target)
            self._connected = True
            self._stream.reconnected()
            dropped = self._stream.dropped
            async for chunk in response.aiter_bytes():
                for event in self._stream.feed(chunk):
                    if (delivery := delivery_of(event)) is not None:
                        await self._post(delivery)
                if self._stream.dropped != dropped:
                    dropped = self._stream.dropped
                    log.warning("webhook relay: dropped an event larger than %d bytes",
                                self._stream.max_event)

    async def _post(self, delivery: Delivery) -> None:
        """Post until Porter answers for good: its listener may still be starting, or busy."""
        delay = 0.5
        for attempt in range(1, POST_ATTEMPTS + 1):
            try:
                response = await self._outbound.post(self._target, content=delivery.body,
                                                     headers=delivery.headers)
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            else:
                if response.status_code < 300:
                    self.delivered += 1
                    log.info("webhook relay: delivery %s answered %d", delivery.name,
                             response.status_code)
                    return
                if response.status_code == 401:
                    self.refused += 1
                    log.warning("webhook relay: delivery %s refused: its signature does not "
                                "match PORTER_GITHUB_WEBHOOK_SECRET, or the relay changed its "
                                "body", delivery.name)
                    return
                if response.status_code < 500 and response.status_code != 429:
                    self.refused += 1
                    log.warning("webhook relay: delivery %s refused (%d)", delivery.name,
                                response.status_code)
                    return
                outcome = str(response.status_code)
            if attempt < POST_ATTEMPTS:
                await self._sleep(delay)
                delay *= 2
        self.refused += 1
        log.warning("webhook relay: delivery %s lost: Porter did not take it (%s)",
                    delivery.name, outcome)


class _Refused(Exception):
    """The channel answered, but not with an event stream."""
