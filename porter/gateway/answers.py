"""An answer's bytes as they pass, read incrementally into JSON values, in bounded memory. Pure.

The gateway forwards every chunk unchanged and at once; this only looks. An answer is one of:
- server-sent events (Anthropic, OpenAI, Gemini with `alt=sse`): each event's data is decoded when
  the event completes, and only events that may hold usage are decoded at all;
- one JSON object (a non-streamed answer);
- one JSON array, streamed element by element (Gemini's `streamGenerateContent` without SSE).

Nothing keeps a whole answer: a JSON answer is kept whole only up to `WHOLE` bytes, an event up to
`MAX_EVENT`; past that, only its first `HEAD` and last `TAIL` bytes are kept, and `clipped(head,
tail)` is called instead. Every dialect puts its usage after the content (and the model first),
so the tail holds the usage object; `last_object` finds it there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import orjson

from porter.gateway.usage import Usage, UsageReader

WHOLE = 64 * 1024  # a JSON answer this size or smaller is decoded whole
MAX_EVENT = 64 * 1024  # likewise one server-sent event (a Responses `response.completed` is big)
HEAD = 8 * 1024
TAIL = 32 * 1024

_BLANK_LINE = re.compile(rb"\r?\n\r?\n|\r\r")
_DATA = re.compile(rb"^data: ?(.*?)\r?$", re.MULTILINE)
# A key's quotes cannot be part of a JSON string (quotes inside one are escaped), so a match is a
# real key, at some depth; its value must then decode as an object holding token counts.
_MODEL = re.compile(rb'"(?:model|modelVersion)"\s*:\s*"([A-Za-z0-9._:@/\[\]-]{1,200})"')
_DECODER = json.JSONDecoder()
USAGE_KEYS = ("usage", "usageMetadata")


class AnswerReader:
    """Feed it the answer's chunks in order, then `close()`. `value(v)` gets each decoded JSON
    value that may hold usage; `clipped(head, tail)` each one too large to keep whole."""

    def __init__(self, value: Callable[[object], None],
                 clipped: Callable[[bytes, bytes], None]) -> None:
        self._value = value
        self._clipped = clipped
        self._mode = ""  # "", "sse" or "json": decided by the first byte that is not blank
        self._buffer = bytearray()
        self._head = b""  # the first bytes of a value too large to keep, once it is
        self._scanned = 0  # how much of the buffer was searched for an event's end
        self._separator = b""  # what ends an event in this stream, once seen
        self._size = 0

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        if not self._mode:
            start = chunk.lstrip()
            if not start:
                return
            self._mode = "json" if start[:1] in (b"{", b"[") else "sse"
            chunk = start
        if self._mode == "json":
            self._json(chunk)
        else:
            self._sse(chunk)

    def close(self) -> None:
        """The answer is complete: decode what is left."""
        if self._mode == "json":
            self._json_end()
        elif self._mode == "sse" and self._head:  # the last event may lack its blank line
            self._clipped(_data(self._head), _data(bytes(self._buffer), head=False))
        elif self._mode == "sse" and b'"usage' in self._buffer:
            self._event(bytes(self._buffer))
        self._buffer = bytearray()
        self._head = b""

    # -- one JSON value -----------------------------------------------------------------------

    def _json(self, chunk: bytes) -> None:
        self._size += len(chunk)
        self._buffer += chunk
        if self._size > WHOLE:
            self._keep_ends()

    def _json_end(self) -> None:
        if self._head:
            self._clipped(self._head, bytes(self._buffer))
            return
        try:
            value = orjson.loads(self._buffer)
        except orjson.JSONDecodeError:
            return  # an error page, or an answer cut short: nothing to read
        for item in value if isinstance(value, list) else [value]:
            self._value(item)

    def _keep_ends(self) -> None:
        if not self._head:
            self._head = bytes(self._buffer[:HEAD])
            del self._buffer[:HEAD]
        if len(self._buffer) > TAIL:
            del self._buffer[:-TAIL]

    # -- server-sent events -------------------------------------------------------------------

    def _sse(self, chunk: bytes) -> None:
        buffer = self._buffer
        buffer += chunk
        if not self._separator:
            # A stream ends its events one way throughout: LF LF (Anthropic, OpenAI) or
            # CR LF CR LF (Gemini). Found once, it is then searched for as plain bytes.
            found = _BLANK_LINE.search(buffer)
            self._separator = found.group() if found else b""
        consumed = 0
        if self._separator:
            width = len(self._separator)
            # An event's end may straddle two chunks: search from a little before the end of
            # what was already searched.
            start = max(0, self._scanned - width + 1)
            while (end := buffer.find(self._separator, start)) != -1:
                head, self._head = self._head, b""
                if head:
                    self._clipped(_data(head), _data(bytes(buffer[consumed:end]), head=False))
                elif buffer.find(b'"usage', consumed, end) != -1:  # most events are deltas
                    self._event(bytes(buffer[consumed:end]))
                consumed = start = end + width
        if consumed:
            del buffer[:consumed]
        if self._head or len(buffer) > MAX_EVENT:
            self._keep_ends()
        self._scanned = len(self._buffer)

    def _event(self, event: bytes) -> None:
        try:
            self._value(orjson.loads(_data(event)))
        except orjson.JSONDecodeError:
            return


def _data(event: bytes, *, head: bool = True) -> bytes:
    """An event's data lines, joined. A tail of an event starts mid-line: it is kept as it is."""
    lines = _DATA.findall(event)
    if lines:
        return b"\n".join(lines)
    return b"" if head else event


def last_object(tail: bytes, keys: tuple[str, ...]) -> dict[str, object] | None:
    """The last `"key": {…}` in `tail`, for any of `keys`, whose value decodes as an object
    holding numbers (a usage object); None when there is none."""
    names = b"|".join(re.escape(key.encode()) for key in keys)
    found = list(re.finditer(rb'"(?:' + names + rb')"\s*:\s*\{', tail))
    for match in reversed(found):
        text = tail[match.end() - 1:].decode("utf-8", "replace")
        try:
            value, _ = _DECODER.raw_decode(text)
        except ValueError:
            continue
        if isinstance(value, dict) and any(isinstance(v, int) for v in value.values()):
            return value
    return None


def first_model(data: bytes) -> str | None:
    found = _MODEL.search(data)
    return found.group(1).decode() if found else None


class AnswerUsage:
    """One answer's usage and model, read from its bytes as they pass."""

    def __init__(self, provider: str) -> None:
        self._reader = UsageReader(provider)
        self._answer = AnswerReader(self._reader.take, self._clipped)

    @property
    def usage(self) -> Usage | None:
        return self._reader.usage

    @property
    def model(self) -> str | None:
        return self._reader.model

    def feed(self, chunk: bytes) -> None:
        self._answer.feed(chunk)

    def close(self) -> None:
        self._answer.close()

    def _clipped(self, head: bytes, tail: bytes) -> None:
        raw = last_object(tail, USAGE_KEYS)
        if raw is not None:
            self._reader.take_usage(raw, first_model(head) or first_model(tail))
