"""Porter's log lines: JSON or text, each with the ids of the work it belongs to, and no secret.

A record is captured where it is logged (its message rendered, its traceback formatted and the
delivery, task and run ids of porter/log_context.py taken from the emitting task), then crosses a
queue to a thread that redacts and writes it, so neither redaction nor the write runs on the
event loop. Redaction (porter/redact.py) knows every secret setting's value, the secrets Porter
learns while it runs (`remember_secret`), and the shapes of well-known tokens, and applies to
the message and the exception text alike, whichever library logged them.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TextIO
from urllib.parse import urlsplit

import orjson

from porter import log_context
from porter.redact import PLACEHOLDER, Redactor
from porter.settings import SETTINGS, Secret, Settings
from porter.settings.database import DatabaseUrl

FORMATS = ("auto", "json", "text")
# Runtime secrets kept, newest last. Each costs every log line a few dozen substring searches
# (~6 µs), so the oldest are let go rather than slowing logging down as a server lives on; and
# one shaped like a token (an installation token, an sk- key) is not kept at all, since its
# shape already gives it away.
MAX_LEARNED = 64
_SHAPES_ONLY = Redactor(())
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Secrets:
    """The values redacted from every line: configured ones and learned ones. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._configured: tuple[str, ...] = ()
        self._learned: dict[str, None] = {}  # insertion-ordered: the oldest first
        self._version = 0
        self._redactor = Redactor(())
        self._built = 0

    def configure(self, values: Iterable[str]) -> None:
        with self._lock:
            self._configured = tuple(values)
            self._version += 1

    def remember(self, values: Iterable[str | None]) -> None:
        kept = [value for value in values if value and not _shaped(value)]
        with self._lock:
            for value in kept:
                if value in self._configured:
                    continue
                if value in self._learned:
                    self._learned.pop(value)  # a secret seen again is kept longest
                else:
                    self._version += 1
                self._learned[value] = None
                while len(self._learned) > MAX_LEARNED:
                    del self._learned[next(iter(self._learned))]

    def values(self) -> tuple[str, ...]:
        with self._lock:
            return (*self._configured, *self._learned)

    def redactor(self) -> Redactor:
        """The redactor for the secrets known now, rebuilt outside the lock when they changed,
        so remember() never waits on a rebuild."""
        with self._lock:
            if self._built == self._version:
                return self._redactor
            version, values = self._version, (*self._configured, *self._learned)
        redactor = Redactor(values)
        with self._lock:
            if version >= self._built:
                self._redactor, self._built = redactor, version
        return redactor


def _shaped(value: str) -> bool:
    return _SHAPES_ONLY.redact(value) == PLACEHOLDER


_SECRETS = _Secrets()


def remember_secret(*values: str | None) -> None:
    """Redact these values from every log line from now on (tokens Porter mints, keys it
    decrypts). None and empty values are ignored."""
    _SECRETS.remember(values)


def known_secrets() -> tuple[str, ...]:
    """Every secret Porter knows now: the configured ones and those it learned while running."""
    return _SECRETS.values()


def redact(text: str) -> str:
    """`text` as a log line would show it: the known secrets and token shapes replaced."""
    return _SECRETS.redactor().redact(text)


def configured_secrets(settings: Settings) -> list[str]:
    """The value of every secret setting, and the operator's agent keys."""
    values: list[str] = []
    for declared in SETTINGS:
        value = settings.value_of(declared)
        if declared.secret and value:
            values.append(value.get() if isinstance(value, Secret) else str(value))
    values += [secret.get() for secret in settings.agent_secrets.values()]
    if isinstance(settings.database, DatabaseUrl) and (
            password := urlsplit(settings.database.get()).password):
        values.append(password)  # PORTER_DATABASE's: a driver's message might quote it
    return values


def _capture(record: logging.LogRecord) -> None:
    """Render the message and traceback and take the ids, in the emitting thread and task (the
    arguments may change, and the ids are unknown, once the record has crossed the queue)."""
    if "porter_ids" in record.__dict__:
        return
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: the arguments might be secrets, so drop them
        message = f"{record.msg!s} (log arguments did not fit the message)"
    exception = record.exc_text
    if record.exc_info and record.exc_info[0] is not None:
        exception = logging.Formatter().formatException(record.exc_info)
    if record.stack_info:
        exception = "\n".join(part for part in (exception, record.stack_info) if part)
    record.msg, record.args = message, None
    record.exc_info = record.exc_text = record.stack_info = None
    record.__dict__["porter_ids"] = log_context.current()
    record.__dict__["porter_exception"] = exception


def _ids(record: logging.LogRecord) -> dict[str, object]:
    ids: dict[str, object] = record.__dict__["porter_ids"]
    return ids


def _exception(record: logging.LogRecord) -> str | None:
    exception: str | None = record.__dict__["porter_exception"]
    return exception


class _Capturing(logging.handlers.QueueHandler):
    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        _capture(record)
        return record


class Redacting(logging.Filter):
    """Replaces known secrets and token shapes in a record's message and exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        _capture(record)
        record.msg = redact(str(record.msg))
        if exception := _exception(record):
            record.__dict__["porter_exception"] = redact(exception)
        return True


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the ids, exception."""

    def format(self, record: logging.LogRecord) -> str:
        _capture(record)
        line: dict[str, object] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.msg,
            **_ids(record),
        }
        if exception := _exception(record):
            line["exception"] = exception
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """What a person at a terminal reads: the ids in brackets after the message."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        _capture(record)
        text = super().format(record)
        if ids := _ids(record):
            text += " [" + " ".join(f"{name.removesuffix('_id')}={value}"
                                    for name, value in ids.items()) + "]"
        if exception := _exception(record):
            text += "\n" + exception
        return text


def formatter(log_format: str, stream: TextIO) -> logging.Formatter:
    """JSON for json, and for auto unless the stream is a terminal."""
    if log_format not in FORMATS:
        raise ValueError(f"log format {log_format!r} is not one of {', '.join(FORMATS)}")
    text = log_format == "text" or (log_format == "auto" and _is_terminal(stream))
    return TextFormatter() if text else JsonFormatter()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def configure(settings: Settings, stream: TextIO | None = None) -> logging.handlers.QueueListener:
    """Send every logger's records (uvicorn's, httpx's, githubkit's too) through the queue to
    `stream` (stderr). The caller stops the returned listener at exit, which drains the queue."""
    out = stream if stream is not None else sys.stderr
    _SECRETS.configure(configured_secrets(settings))
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter(settings.log_format, out))
    handler.addFilter(Redacting())
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(records, handler)
    root = logging.getLogger()
    root.handlers[:] = [_Capturing(records)]
    root.setLevel(settings.log_level.upper())
    # A uvicorn configured earlier in this process (its default log_config) gave its loggers
    # their own handlers, which write unredacted and stop propagation: take them back.
    for name in UVICORN_LOGGERS:
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    logging.captureWarnings(True)  # warnings.warn text goes through redaction too
    listener.start()
    return listener
