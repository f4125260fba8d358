"""Log lines: JSON or text, the ids of the work they belong to, and no secret in any part."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import logging.config
import re
import warnings
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import uvicorn

from porter.log_context import bound
from porter.logs import configure, remember_secret
from porter.settings import Settings

# A configured secret with no recognisable shape, one Porter learns while it runs, and two
# shaped ones nobody told it about.
PLAIN = "quiet-canary-4f1e9b7d2c"
LEARNED = "learned-canary-83a1c0d9e6"
GHS = "ghs_" + "C4nary" * 7
SK_ANT = "sk-ant-api03-" + "canaryKEY" * 4
CANARIES = (PLAIN, LEARNED, GHS, SK_ANT)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@contextlib.contextmanager
def logging_to(stream: io.StringIO, log_format: str = "auto") -> Iterator[None]:
    """Porter's logging, writing to `stream`; the records are all written when the block ends."""
    settings = Settings.from_mapping({"PORTER_LOG_FORMAT": log_format,
                                      "PORTER_SECRET_ANTHROPIC_API_KEY": PLAIN,
                                      "PORTER_LOG_LEVEL": "debug"})
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    listener = configure(settings, stream)
    try:
        yield
    finally:
        listener.stop()  # drains the queue
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.captureWarnings(False)


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_when_stderr_is_not_a_terminal() -> None:
    out = io.StringIO()
    with logging_to(out):
        logging.getLogger("porter.jobs").warning("job %s given up", 7)
    [line] = json_lines(out)
    assert line["level"] == "warning"
    assert line["logger"] == "porter.jobs"
    assert line["message"] == "job 7 given up"
    assert isinstance(line["time"], str) and line["time"].endswith("Z")
    assert datetime.fromisoformat(line["time"]).utcoffset() == timedelta(0)
    assert "exception" not in line


def test_text_at_a_terminal_and_the_setting_wins_over_the_guess() -> None:
    terminal, forced_json, forced_text = Terminal(), Terminal(), io.StringIO()
    for stream, log_format in ((terminal, "auto"), (forced_json, "json"),
                               (forced_text, "text")):
        with logging_to(stream, log_format), bound(task_id=3, run_id="r1"):
            logging.getLogger("porter.runs").info("run started")
    for stream in (terminal, forced_text):
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO porter\.runs: "
                            r"run started \[task=3 run=r1\]\n", stream.getvalue())
    assert json_lines(forced_json)[0]["message"] == "run started"


async def test_every_line_carries_the_ids_of_the_task_that_logged_it() -> None:
    log = logging.getLogger("porter.test")

    async def step(run_id: str) -> None:
        await asyncio.sleep(0)  # the other task's lines come in between
        log.info("run %s", run_id)

    async def run(task_id: int, run_id: str) -> None:
        with bound(task_id=task_id):
            log.info("task %s picked up", task_id)
            with bound(run_id=run_id):
                # A task started here copies the ids; a thread's line carries them too.
                await asyncio.create_task(step(run_id))
                await asyncio.to_thread(log.info, "thread of run %s", run_id)
            log.info("task %s done", task_id)

    out = io.StringIO()
    with logging_to(out, "json"):
        with bound(delivery_id="d-1"):
            await asyncio.gather(run(1, "r-a"), run(2, "r-b"))
        log.info("idle")
    ids = {line["message"]: {k: line[k] for k in ("delivery_id", "task_id", "run_id")
                             if k in line} for line in json_lines(out)}
    for task_id, run_id in ((1, "r-a"), (2, "r-b")):
        assert ids[f"task {task_id} picked up"] == {"delivery_id": "d-1", "task_id": task_id}
        assert ids[f"run {run_id}"] == {"delivery_id": "d-1", "task_id": task_id,
                                        "run_id": run_id}
        assert ids[f"thread of run {run_id}"] == ids[f"run {run_id}"]
        assert ids[f"task {task_id} done"] == {"delivery_id": "d-1", "task_id": task_id}
    assert ids["idle"] == {}


class ApiFailure(Exception):
    pass


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_secrets_are_redacted_from_message_arguments_and_tracebacks(log_format: str) -> None:
    remember_secret(LEARNED)
    out = io.StringIO()
    log = logging.getLogger("githubkit")
    with logging_to(out, log_format):
        log.info(f"configured key {PLAIN} in the message")
        log.info("learned token %s as an argument", LEARNED)
        try:
            try:
                raise ValueError(f"upstream said: token {GHS}")
            except ValueError as cause:
                raise ApiFailure(f"GitHub answered 422: {{'message': 'bad key {SK_ANT}'}}") \
                    from cause
        except ApiFailure:
            log.exception("publishing failed")
        logging.getLogger("uvicorn.error").error("dict args %(key)s", {"key": PLAIN})
    text = out.getvalue()
    for canary in CANARIES:
        assert canary not in text
    for kept in ("configured key [REDACTED] in the message",
                 "learned token [REDACTED] as an argument", "publishing failed",
                 "upstream said: token [REDACTED]", "bad key [REDACTED]", "dict args [REDACTED]",
                 "ApiFailure", "Traceback"):
        assert kept in text, kept
    if log_format == "json":
        [failure] = [line for line in json_lines(out) if line["message"] == "publishing failed"]
        assert isinstance(failure["exception"], str)
        assert "ApiFailure: GitHub answered 422" in failure["exception"]


def test_uvicorns_loggers_and_warnings_reach_the_same_handler() -> None:
    out = io.StringIO()
    with logging_to(out, "json"):
        # As `porter serve` configures it: no logging config of uvicorn's own.
        uvicorn.Config(lambda: None, log_config=None, log_level="warning")
        logging.getLogger("uvicorn.error").error("Exception in ASGI application: %s", GHS)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn(f"deprecated, key {PLAIN}", DeprecationWarning, stacklevel=1)
    lines = json_lines(out)
    assert [line["logger"] for line in lines] == ["uvicorn.error", "py.warnings"]
    assert lines[0]["message"] == "Exception in ASGI application: [REDACTED]"
    assert PLAIN not in str(lines[1]["message"]) and "[REDACTED]" in str(lines[1]["message"])


def test_a_uvicorn_configured_earlier_in_the_process_is_taken_back() -> None:
    # A uvicorn started with its own logging config (as a library user or a test server might)
    # gives its loggers unredacted handlers of their own and stops their propagation.
    logging.config.dictConfig(uvicorn.config.LOGGING_CONFIG)
    out = io.StringIO()
    with logging_to(out, "json"):
        logging.getLogger("uvicorn.error").error("upstream key %s", PLAIN)
    [line] = json_lines(out)
    assert line["logger"] == "uvicorn.error" and line["message"] == "upstream key [REDACTED]"


def test_a_line_whose_arguments_do_not_fit_is_written_without_them() -> None:
    out = io.StringIO()
    with logging_to(out, "json"):
        logging.getLogger("porter").info("count %d", PLAIN)
    [line] = json_lines(out)
    assert line["message"] == "count %d (log arguments did not fit the message)"
