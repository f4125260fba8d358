"""What the run says while it runs: its transcript (the agent's output and the entrypoint's own
notes), the log shipper that streams it to Porter redacted, and the heartbeats that carry the
stage and bring back a cancel request. Best effort: none of it ever fails the run.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator

from porter_entrypoint.callbacks import Callback
from porter_entrypoint.redact import Redactor

LOG_FLUSH_S = 0.5
LOG_IDLE_FLUSH_S = 1.0  # a quiet stream is flushed whole, held-back tail included
LOG_BACKLOG_BYTES = 1 << 20  # Porter unreachable: keep at most this much unsent log
LOG_TAIL_CHARS = 64 * 1024
AGENT_TEXT_CHARS = 1 << 20  # window searched for the agent's final JSON result


def split_utf8(text: str, max_bytes: int) -> Iterator[str]:
    """Split text into pieces of at most max_bytes UTF-8 bytes without cutting a character."""
    data = text.encode()
    while data:
        cut = min(len(data), max_bytes)
        while cut < len(data) and (data[cut] & 0xC0) == 0x80:
            cut -= 1
        yield data[:cut].decode()
        data = data[cut:]


class LogShipper:
    """Streams redacted log chunks to Porter on its own thread; best effort, never fatal."""

    def __init__(self, callback: Callback, redactor: Redactor, chunk_bytes: int) -> None:
        self._callback = callback
        self._redactor = redactor
        self._chunk_bytes = chunk_bytes
        self._lock = threading.Lock()  # guards _pending and _last_write
        self._send_lock = threading.Lock()  # guards _outbox and _seq
        self._pending = ""
        self._last_write = time.monotonic()
        self._outbox: list[tuple[int, str, int]] = []  # (seq, text, failures)
        self._seq = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="log-shipper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def write(self, text: str) -> None:
        with self._lock:
            self._pending += text
            self._last_write = time.monotonic()

    def close(self, timeout: float) -> None:
        """Send everything left, giving up after `timeout` seconds."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        self._thread.join(timeout=timeout)
        self._cut(final=True)
        while self._outbox and time.monotonic() < deadline:
            if not self._send_one():
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    def _loop(self) -> None:
        while not self._stop.wait(LOG_FLUSH_S):
            with self._lock:
                idle = time.monotonic() - self._last_write > LOG_IDLE_FLUSH_S
            self._cut(final=idle)
            while self._outbox and not self._stop.is_set() and self._send_one():
                pass

    def _cut(self, final: bool) -> None:
        with self._lock:
            text = self._pending
            cut = len(text) if final else max(0, len(text) - self._redactor.holdback)
            cut = self._redactor.safe_cut(text, cut)
            ready, self._pending = text[:cut], text[cut:]
        with self._send_lock:
            for piece in split_utf8(self._redactor.redact(ready), self._chunk_bytes):
                self._outbox.append((self._seq, piece, 0))
                self._seq += 1
            while sum(len(t) for _, t, _ in self._outbox) > LOG_BACKLOG_BYTES:
                self._outbox.pop(0)  # Porter unreachable for long: keep the newest output

    def _send_one(self) -> bool:
        with self._send_lock:
            if not self._outbox:
                return False
            seq, text, failures = self._outbox[0]
            reply = self._callback.call("POST", "logs", {"seq": seq, "text": text}, timeout=15.0)
            if reply.ok or not reply.retryable or failures >= 2:
                self._outbox.pop(0)  # delivered, refused, or given up: the seq gap shows it
                return reply.ok
            self._outbox[0] = (seq, text, failures + 1)
            return False


class Transcript:
    """Everything the run printed: agent output plus the entrypoint's own notes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._agent = ""
        self._all = ""
        self._truncated = False
        self.redactor = Redactor([])
        self.shipper: LogShipper | None = None

    def agent_output(self, text: str) -> None:
        with self._lock:
            self._agent = _bounded_tail(self._agent + text, AGENT_TEXT_CHARS)
            self._append(text)
        if self.shipper:
            self.shipper.write(text)

    def note(self, message: str) -> None:
        line = f"porter: {message}\n"
        with self._lock:
            self._append(line)
        if self.shipper:
            self.shipper.write(line)
        sys.stderr.write(self.redactor.redact(line))
        sys.stderr.flush()

    def agent_text(self) -> str:
        with self._lock:
            return self._agent

    def log_tail(self) -> str:
        with self._lock:
            tail, truncated = self._all, self._truncated
        if truncated and "\n" in tail:
            tail = tail.split("\n", 1)[1]  # drop a partial first line (and any partial secret)
        return self.redactor.redact(tail)

    def _append(self, text: str) -> None:
        combined = self._all + text
        if len(combined) > LOG_TAIL_CHARS:
            self._truncated = True
        self._all = _bounded_tail(combined, LOG_TAIL_CHARS)


def _bounded_tail(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[-limit:]


class Heartbeater:
    """Sends heartbeats on its own thread and records a cancel request."""

    def __init__(self, callback: Callback, redactor: Redactor, interval: float) -> None:
        self._callback = callback
        self._redactor = redactor
        self._interval = interval
        self._lock = threading.Lock()
        self.stage = "clone"
        self._message = ""
        self.cancel = threading.Event()
        self.fenced = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def set_stage(self, stage: str, message: str) -> None:
        with self._lock:
            self.stage, self._message = stage, message
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=15.0)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            self._beat()
            self._wake.wait(self._interval)

    def _beat(self) -> None:
        with self._lock:
            payload = {"stage": self.stage, "message": self._redactor.redact(self._message)[:200]}
        reply = self._callback.call("POST", "heartbeat", payload, timeout=10.0)
        if reply.ok and isinstance(reply.body, dict) and reply.body.get("cancel") is True:
            self.cancel.set()
        elif reply.status in (401, 409):
            # This attempt was superseded or revoked: stop spending on it.
            self.fenced = True
            self.cancel.set()
        # Any other failure: retried at the next interval, never fatal.
