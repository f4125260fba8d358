"""What the entrypoint says while it runs: its callback backoff, log chunks and transcript
(container/porter_entrypoint/callbacks.py and streams.py)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fakes.entrypoint_module import load

callbacks = load("callbacks")
streams = load("streams")
redact = load("redact")

TOKEN = "prt_runtoken_9f8e7d6c5b4a39281706f5e4d3c2b1a0"


# -- backoff and replies -----------------------------------------------------------------------


def test_backoff_doubles_with_jitter_up_to_sixty_times_the_base() -> None:
    delays = list(itertools.islice(callbacks.backoff_delays(0.5), 12))
    for attempt, delay in enumerate(delays):
        ceiling = min(30.0, 0.5 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert max(delays) <= 30.0


def test_a_zero_base_retries_at_once() -> None:
    assert list(itertools.islice(callbacks.backoff_delays(0.0), 3)) == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(("status", "ok", "retryable", "described"), [
    (200, True, False, "HTTP 200"),
    (204, True, False, "HTTP 204"),
    (0, False, True, "ConnectionRefusedError: refused"),
    (401, False, False, "HTTP 401"),
    (409, False, False, "HTTP 409"),
    (413, False, False, "HTTP 413"),
    (408, False, True, "HTTP 408"),
    (425, False, True, "HTTP 425"),
    (429, False, True, "HTTP 429"),
    (502, False, True, "HTTP 502"),
])
def test_a_reply_says_whether_to_try_again(
    status: int, ok: bool, retryable: bool, described: str
) -> None:
    reply = callbacks.Reply(status, None, "ConnectionRefusedError: refused" if not status else "")
    assert (reply.ok, reply.retryable, reply.describe()) == (ok, retryable, described)


# -- split_utf8 --------------------------------------------------------------------------------


def test_pieces_never_cut_a_character() -> None:
    assert list(streams.split_utf8("aé€😀b", 4)) == ["aé", "€", "😀", "b"]
    assert list(streams.split_utf8("", 4)) == []
    assert list(streams.split_utf8("abcdef", 4)) == ["abcd", "ef"]


@given(st.text(), st.integers(min_value=4, max_value=64))
def test_pieces_rejoin_to_the_text_and_fit_the_limit(text: str, limit: int) -> None:
    pieces = list(streams.split_utf8(text, limit))
    assert "".join(pieces) == text
    assert all(0 < len(p.encode()) <= limit for p in pieces)


# -- the log shipper and the transcript ---------------------------------------------------------


class RecordingCallback:
    """Stands in for Porter: accepts every call and keeps it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    def call(self, method: str, name: str, payload: Any = None, timeout: float = 30.0) -> Any:
        self.calls.append((method, name, payload))
        return callbacks.Reply(200, {})


def test_shipped_logs_are_redacted_even_when_a_secret_arrives_in_pieces() -> None:
    porter = RecordingCallback()
    shipper = streams.LogShipper(porter, redact.Redactor([TOKEN]), 1024)
    shipper.start()
    shipper.write("token: " + TOKEN[:10])
    shipper.write(TOKEN[10:] + "\n" + "é" * 1000)
    shipper.close(timeout=5.0)
    sent = [payload for _, name, payload in porter.calls if name == "logs"]
    assert [p["seq"] for p in sent] == list(range(len(sent)))
    assert all(len(p["text"].encode()) <= 1024 for p in sent)
    text = "".join(p["text"] for p in sent)
    assert text == "token: [REDACTED]\n" + "é" * 1000
    assert TOKEN[:10] not in text


def test_the_log_tail_is_redacted_and_starts_at_a_whole_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    transcript = streams.Transcript()
    transcript.redactor = redact.Redactor([TOKEN])
    transcript.note(f"cloning with {TOKEN}")
    assert capsys.readouterr().err == "porter: cloning with [REDACTED]\n"
    assert transcript.log_tail() == "porter: cloning with [REDACTED]\n"
    transcript.agent_output("x" * streams.LOG_TAIL_CHARS + "\nlast line\n")
    assert transcript.log_tail() == "last line\n"
    assert transcript.agent_text().endswith("x\nlast line\n")
