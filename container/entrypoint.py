#!/usr/bin/env python3
"""Porter's agent-container entrypoint (standard library only).

Runs inside an ephemeral machine whose only environment is PORTER_URL, PORTER_RUN_ID and
PORTER_RUN_TOKEN. It fetches the run spec, clones the repository at the base commit, runs the
coding agent unprivileged with a clean environment, streams redacted logs and heartbeats, collects
the changes as a changeset and reports the result. Whatever happens, it tries hard to report:
Porter must never lose a run silently.

Knobs read from the entrypoint's own environment (never passed to the agent), mostly for tests:
  PORTER_CALLBACK_BACKOFF_S   base delay of the callback retry backoff (default 1; cap = 60 x base)
  PORTER_COMPLETE_DEADLINE_S  how long to keep retrying the complete callback (default 900)
  PORTER_KILL_GRACE_S         SIGTERM -> SIGKILL grace for the agent's process group (default 10)
  PORTER_WORKDIR              where the per-run workspace is created (default: the temp dir)
  PORTER_KEEP_WORKSPACE       "1" keeps the workspace after the run (debugging)
Arguments, set by whoever starts the machine (the local runner, or the image's ENTRYPOINT):
  --porter-sandbox-ro=PATH    show a host path read-only inside the agent's sandbox (repeatable)
  --porter-sandbox-hide=PATH  mask a host path even where a read-only path would show it
  --porter-unsandboxed        run the agent without bubblewrap (the operator asked, loudly)
  --porter-sandbox-check      only check that the sandbox works here; exit 0 or say why, exit 3
  --porter-workdir=DIR        where the run's workspace is made (wins over PORTER_WORKDIR)
Exit status: 0 = Porter accepted the result (even a failed run), 1 = the result could not be
reported, 2 = no usable configuration or spec.
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import dataclasses
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import sandbox

EXIT_REPORTED = 0
EXIT_UNREPORTED = 1
EXIT_NO_SPEC = 2
EXIT_NO_SANDBOX = 3

SPEC_ATTEMPTS = 6
POLL_S = 0.1
LOG_FLUSH_S = 0.5
LOG_IDLE_FLUSH_S = 1.0  # a quiet stream is flushed whole, held-back tail included
LOG_BACKLOG_BYTES = 1 << 20  # Porter unreachable: keep at most this much unsent log
LOG_TAIL_CHARS = 64 * 1024
AGENT_TEXT_CHARS = 1 << 20  # window searched for the agent's final JSON result
SUMMARY_LINES = 40
SUMMARY_TEXT_BYTES = 8 * 1024
SUMMARY_RESULT_BYTES = 16 * 1024
COMMIT_SUBJECT_CHARS = 72
MIN_SECRET_CHARS = 8  # shorter env values ("auto", "1") are settings, not secrets
REDACTED = "[redacted]"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
GIT_IDENTITY = ("Porter Agent", "porter-agent@users.noreply.github.com")
# Agents known to need these in a container; agent.env from the spec may override them.
AGENT_ENV_DEFAULTS = {
    "GOOSE_DISABLE_KEYRING": "1",
    "GOOSE_MODE": "auto",
    "GEMINI_CLI_TRUST_WORKSPACE": "true",
}
CHANGESET_MODES = {"100644", "100755", "120000"}


# --------------------------------------------------------------------------------------------
# Errors and small records


class ConfigError(Exception):
    """The machine was started without the environment the entrypoint needs."""


class SpecUnavailable(Exception):
    """The spec could not be fetched (refused, not found, or Porter unreachable)."""


class StageFailure(Exception):
    """A stage failed in a way the requester should hear about."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage
        self.message = message


@dataclass(frozen=True)
class Config:
    porter_url: str
    run_id: str
    run_token: str
    backoff_s: float | None
    complete_deadline_s: float | None
    kill_grace_s: float
    workdir: str | None
    keep_workspace: bool
    sandbox: sandbox.Policy | None  # None: the operator turned the sandbox off


@dataclass(frozen=True)
class AgentSpec:
    name: str
    argv: list[str]
    env: dict[str, str]
    output: str


@dataclass(frozen=True)
class Limits:
    agent_timeout_s: float
    heartbeat_interval_s: float
    max_changeset_bytes: int
    log_chunk_bytes: int
    clone_timeout_s: float
    callback_backoff_s: float | None
    complete_deadline_s: float | None


@dataclass(frozen=True)
class Spec:
    task_id: Any
    repo: str
    clone_url: str
    clone_token: str
    base_ref: str
    base_sha: str
    agent: AgentSpec
    prompt: str
    limits: Limits


@dataclass
class Outcome:
    status: str
    summary: str = ""
    exit_code: int | None = None
    cost_usd: float | None = None
    usage: dict[str, Any] | None = None
    changeset: dict[str, Any] | None = None
    error: dict[str, str] | None = None


def failed(stage: str, message: str, summary: str = "") -> Outcome:
    return Outcome("failed", summary=summary, error={"stage": stage, "message": message})


# --------------------------------------------------------------------------------------------
# Configuration and spec


def _float_env(environ: dict[str, str], name: str) -> float | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number") from exc
    if value < 0:
        raise ConfigError(f"{name} must not be negative")
    return value


SANDBOX_RO = "--porter-sandbox-ro="
SANDBOX_HIDE = "--porter-sandbox-hide="
UNSANDBOXED = "--porter-unsandboxed"
SANDBOX_CHECK = "--porter-sandbox-check"


def sandbox_policy(argv: list[str]) -> sandbox.Policy | None:
    """The sandbox the arguments ask for; None only when told --porter-unsandboxed."""
    if UNSANDBOXED in argv:
        return None
    read_only = tuple(a[len(SANDBOX_RO):] for a in argv if a.startswith(SANDBOX_RO))
    hidden = tuple(a[len(SANDBOX_HIDE):] for a in argv if a.startswith(SANDBOX_HIDE))
    for path in (*read_only, *hidden):
        if not os.path.isabs(path):
            raise ConfigError(f"sandbox paths must be absolute: {path!r}")
    return sandbox.Policy(read_only=read_only, hidden=hidden,
                          bwrap=shutil.which(sandbox.BWRAP) or sandbox.BWRAP)


WORKDIR = "--porter-workdir="


def _workdir(environ: dict[str, str], argv: list[str]) -> str | None:
    """Where workspaces go: the runner's argument, else PORTER_WORKDIR, else the temp dir."""
    given = next((a[len(WORKDIR):] for a in argv if a.startswith(WORKDIR)), None)
    return given or environ.get("PORTER_WORKDIR") or None


def load_config(environ: dict[str, str], argv: list[str]) -> Config:
    missing = [n for n in ("PORTER_URL", "PORTER_RUN_ID", "PORTER_RUN_TOKEN") if not environ.get(n)]
    if missing:
        raise ConfigError("missing environment: " + ", ".join(missing))
    if not environ["PORTER_URL"].startswith(("http://", "https://")):
        raise ConfigError("PORTER_URL must be an http(s) URL")
    run_id = environ["PORTER_RUN_ID"]
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", run_id):
        raise ConfigError("PORTER_RUN_ID has unexpected characters")
    grace = _float_env(environ, "PORTER_KILL_GRACE_S")
    return Config(
        porter_url=environ["PORTER_URL"].rstrip("/"),
        run_id=run_id,
        run_token=environ["PORTER_RUN_TOKEN"],
        backoff_s=_float_env(environ, "PORTER_CALLBACK_BACKOFF_S"),
        complete_deadline_s=_float_env(environ, "PORTER_COMPLETE_DEADLINE_S"),
        kill_grace_s=10.0 if grace is None else grace,
        workdir=_workdir(environ, argv),
        keep_workspace=environ.get("PORTER_KEEP_WORKSPACE") == "1",
        sandbox=sandbox_policy(argv),
    )


def _require(obj: dict[str, Any], key: str, kind: type, where: str = "") -> Any:
    value = obj.get(key)
    if not isinstance(value, kind):
        raise ValueError(f"spec field {where}{key} is missing or not a {kind.__name__}")
    return value


def _number(obj: dict[str, Any], key: str, default: float | None) -> float | None:
    value = obj.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"spec field limits.{key} must be a positive number")
    return float(value)


def parse_spec(raw: dict[str, Any]) -> Spec:
    """Validate the spec Porter served; raise ValueError naming the offending field."""
    agent = _require(raw, "agent", dict)
    argv = _require(agent, "argv", list, "agent.")
    if not argv or not all(isinstance(a, str) and a for a in argv):
        raise ValueError("spec field agent.argv must be a non-empty list of strings")
    env = agent.get("env") or {}
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise ValueError("spec field agent.env must map strings to strings")
    limits = raw.get("limits") or {}
    if not isinstance(limits, dict):
        raise ValueError("spec field limits must be an object")
    base_sha = _require(raw, "base_sha", str)
    if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", base_sha):
        raise ValueError("spec field base_sha is not a full commit id")
    clone_url = _require(raw, "clone_url", str)
    if clone_url.startswith("-"):
        raise ValueError("spec field clone_url is not a URL or path")
    return Spec(
        task_id=raw.get("task_id"),
        repo=str(raw.get("repo") or ""),
        clone_url=clone_url,
        clone_token=str(raw.get("clone_token") or ""),
        base_ref=str(raw.get("base_ref") or ""),
        base_sha=base_sha,
        agent=AgentSpec(
            name=str(agent.get("name") or argv[0]),
            argv=list(argv),
            env=dict(env),
            output=str(agent.get("output") or "text"),
        ),
        prompt=_require(raw, "prompt", str),
        limits=Limits(
            agent_timeout_s=_number(limits, "agent_timeout_s", 3000.0) or 3000.0,
            heartbeat_interval_s=_number(limits, "heartbeat_interval_s", 15.0) or 15.0,
            max_changeset_bytes=int(_number(limits, "max_changeset_bytes", 10 << 20) or 0),
            log_chunk_bytes=max(1024, int(_number(limits, "log_chunk_bytes", 16384) or 0)),
            clone_timeout_s=_number(limits, "clone_timeout_s", 900.0) or 900.0,
            callback_backoff_s=_number(limits, "callback_backoff_s", None),
            complete_deadline_s=_number(limits, "complete_deadline_s", None),
        ),
    )


# --------------------------------------------------------------------------------------------
# Redaction


def _split_tolerant(secret: str) -> str:
    # Also matches the secret wrapped across lines by a terminal-width printer.
    return r"(?:\r?\n)?".join(re.escape(c) for c in secret)


def _base64_fragments(secret: str) -> Iterator[str]:
    """The part of base64(anything + secret + anything) that depends only on the secret."""
    raw = secret.encode()
    for offset in range(3):
        data = b"\0" * offset + raw
        start, end = (8 * offset + 5) // 6, (8 * len(data)) // 6
        encoded = base64.b64encode(data).decode()[start:end]
        if len(encoded) >= MIN_SECRET_CHARS:
            yield encoded
            yield encoded.replace("+", "-").replace("/", "_")


class Redactor:
    """Replaces known secret values (raw, wrapped across lines, or base64-encoded)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        values = sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)
        patterns: list[str] = []
        for value in values:
            patterns.append(_split_tolerant(value))
            patterns.extend(re.escape(f) for f in dict.fromkeys(_base64_fragments(value)))
        self._re = re.compile("|".join(patterns)) if patterns else None
        # Longest text a single match can span: every gap filled with "\r\n".
        self.holdback = max((3 * len(v) for v in values), default=0)

    def redact(self, text: str) -> str:
        return self._re.sub(REDACTED, text) if self._re else text

    def safe_cut(self, text: str, cut: int) -> int:
        """Move `cut` so that it does not split a match."""
        if self._re is None:
            return cut
        for match in self._re.finditer(text, max(0, cut - self.holdback)):
            if match.start() < cut < match.end():
                return match.end()
            if match.start() >= cut:
                break
        return cut


# --------------------------------------------------------------------------------------------
# HTTP callbacks


@dataclass(frozen=True)
class Reply:
    status: int  # 0 = no HTTP response (connection error, timeout)
    body: Any
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        return self.status == 0 or self.status in (408, 425, 429) or self.status >= 500

    def describe(self) -> str:
        return f"HTTP {self.status}" if self.status else (self.error or "no response")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect would carry the run token to wherever Porter's URL points; never follow one.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Callback:
    """Porter's run callbacks, authenticated with the run token."""

    def __init__(self, base_url: str, run_id: str, token: str) -> None:
        self._base = f"{base_url}/api/runs/{run_id}/"
        self._token = token
        self._opener = urllib.request.build_opener(_NoRedirect())

    def call(self, method: str, name: str, payload: Any = None, timeout: float = 30.0) -> Reply:
        data = None if payload is None else json.dumps(payload).encode()
        # The scheme was checked in load_config (http/https only).
        request = urllib.request.Request(self._base + name, data=data, method=method)  # noqa: S310
        request.add_header("Authorization", f"Bearer {self._token}")
        request.add_header("Accept", "application/json")
        request.add_header("User-Agent", "porter-entrypoint/1")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(request, timeout=timeout) as response:
                return Reply(response.status, _json_or_none(response.read()))
        except urllib.error.HTTPError as exc:
            try:
                body = exc.read()
            except (OSError, http.client.HTTPException):
                body = b""
            return Reply(exc.code, _json_or_none(body), body[:300].decode("utf-8", "replace"))
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return Reply(0, None, f"{type(exc).__name__}: {exc}")


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def backoff_delays(base: float) -> Iterator[float]:
    """Capped exponential backoff with jitter."""
    cap = 60.0 * base
    attempt = 0
    while True:
        yield min(cap, base * 2**attempt) * random.uniform(0.5, 1.0)  # noqa: S311 (jitter)
        attempt += 1


def fetch_spec(callback: Callback, base_backoff: float, stop: threading.Event) -> dict[str, Any]:
    delays = backoff_delays(base_backoff)
    reply = Reply(0, None, "not tried")
    for _ in range(SPEC_ATTEMPTS):
        reply = callback.call("GET", "spec")
        if reply.ok and isinstance(reply.body, dict):
            return reply.body
        if reply.ok:
            raise SpecUnavailable("Porter served a spec that is not a JSON object")
        if not reply.retryable:
            raise SpecUnavailable(f"Porter refused the spec request ({reply.describe()})")
        if stop.wait(next(delays)):
            break
    raise SpecUnavailable(f"could not fetch the spec ({reply.describe()})")


# --------------------------------------------------------------------------------------------
# Logs, transcript, heartbeats


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


# --------------------------------------------------------------------------------------------
# Processes


def kill_group(proc: subprocess.Popen[bytes], grace_s: float, *, tree: bool = False) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after the grace period.

    With `tree`, every descendant gets the SIGTERM too: a sandbox's processes lead sessions of
    their own inside its PID namespace, so the group of the bwrap process does not reach them.
    """
    pgid = proc.pid  # start_new_session=True made the child its group leader
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        proc.wait()
        return
    if tree:
        for pid in descendants(proc.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        proc.poll()
        _reap_orphans(proc)
        if not _group_alive(pgid):
            break
        time.sleep(0.05)
    else:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    proc.wait()
    _reap_orphans(proc)


def descendants(root: int) -> list[int]:
    """Every process under `root`, as this PID namespace sees them."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            found.append(pid)
            todo.append(pid)
    return found


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running (zombies awaiting a reaper are not)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def _reap_orphans(proc: subprocess.Popen[bytes]) -> None:
    # As PID 1 (docker without --init) orphaned grandchildren become our zombies; reap them,
    # but only once our own child's status is collected so subprocess keeps its exit code.
    if os.getpid() != 1 or proc.returncode is None:
        return
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


@dataclass
class ProcResult:
    returncode: int
    output: str


def run_interruptible(
    argv: list[str],
    *,
    cwd: str | None,
    env: dict[str, str],
    timeout_s: float,
    interrupted: Callable[[], str | None],
    grace_s: float,
) -> ProcResult:
    """Run a helper command (git), stopping it when `interrupted()` names a reason or on timeout."""
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.append(_read_all(proc)), daemon=True)
    reader.start()
    started = time.monotonic()
    reason: str | None = None
    while proc.poll() is None:
        reason = interrupted()
        if reason is None and time.monotonic() - started > timeout_s:
            reason = f"timed out after {int(timeout_s)} s"
        if reason:
            kill_group(proc, grace_s)
            break
        time.sleep(POLL_S)
    reader.join(timeout=5.0)
    output = b"".join(chunks).decode("utf-8", "replace")
    if reason in ("cancelled", "terminated"):
        raise Interrupted(reason)
    if reason:
        raise TimedOut(reason)
    return ProcResult(proc.returncode, output)


def _read_all(proc: subprocess.Popen[bytes]) -> bytes:
    assert proc.stdout is not None
    return proc.stdout.read()


class Interrupted(Exception):
    """The run was stopped from outside: "cancelled" (Porter asked) or "terminated" (SIGTERM)."""


class TimedOut(Exception):
    """A helper command ran over its time limit."""


# --------------------------------------------------------------------------------------------
# Clone


def git_env(*, home: str, extra_config: dict[str, str] | None = None) -> dict[str, str]:
    """A minimal environment for git; config passed via GIT_CONFIG_* so it never hits argv."""
    env = {
        "PATH": os.environ.get("PATH") or DEFAULT_PATH,
        "HOME": home,
        "LANG": "C.UTF-8",
        "GIT_TERMINAL_PROMPT": "0",
        "GCM_INTERACTIVE": "never",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ALLOW_PROTOCOL": "http:https:file",
    }
    pairs = list((extra_config or {}).items())
    env["GIT_CONFIG_COUNT"] = str(len(pairs))
    for i, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


def auth_header(token: str) -> dict[str, str]:
    if not token:
        return {}
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return {"http.extraHeader": f"Authorization: Basic {basic}"}


def clone_repo(
    spec: Spec,
    checkout: str,
    *,
    home: str,
    transcript: Transcript,
    interrupted: Callable[[], str | None],
    grace_s: float,
) -> None:
    """Clone at base_sha into `checkout`; the token lives only in the git child's environment."""
    authed = git_env(home=home, extra_config=auth_header(spec.clone_token))
    plain = git_env(home=home)

    def git(args: list[str], env: dict[str, str], what: str, cwd: str | None = checkout) -> None:
        try:
            result = run_interruptible(
                ["git", "-c", "core.hooksPath=/dev/null", *args],
                cwd=cwd,
                env=env,
                timeout_s=spec.limits.clone_timeout_s,
                interrupted=interrupted,
                grace_s=grace_s,
            )
        except TimedOut as exc:
            raise StageFailure("clone", f"git {what} {exc}") from exc
        if result.output.strip():
            transcript.note(f"git {what}: {result.output.strip()}")
        if result.returncode != 0:
            last = (result.output.strip().splitlines() or ["no output"])[-1]
            raise StageFailure("clone", f"git {what} failed: {last}")

    target = spec.repo or spec.clone_url
    transcript.note(f"cloning {target} at {spec.base_sha}")
    clone_args = ["clone", "--no-checkout", "--no-hardlinks", "--", spec.clone_url, checkout]
    git(clone_args, authed, "clone", cwd=os.path.dirname(checkout))
    if not _has_commit(checkout, spec.base_sha, plain):
        git(["fetch", "--quiet", "origin", spec.base_sha], authed, "fetch")
    git(
        ["-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", spec.base_sha],
        plain,
        "checkout",
    )
    for key, value in (("user.name", GIT_IDENTITY[0]), ("user.email", GIT_IDENTITY[1])):
        git(["config", key, value], plain, "config")


def _has_commit(checkout: str, sha: str, env: dict[str, str]) -> bool:
    probe = subprocess.run(
        ["git", "cat-file", "-e", f"{sha}^{{commit}}"],
        cwd=checkout,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return probe.returncode == 0


# --------------------------------------------------------------------------------------------
# Agent


def agent_environment(
    spec: Spec, *, home: str, prompt_file: str, sandboxed: bool
) -> dict[str, str]:
    """The agent's whole environment: nothing of the entrypoint's leaks in."""
    env = {
        "PATH": os.environ.get("PATH") or DEFAULT_PATH,
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "USER": sandbox.AGENT_USER,
        "LOGNAME": sandbox.AGENT_USER,
        **AGENT_ENV_DEFAULTS,
    }
    if os.geteuid() == 0 and not sandboxed:
        env["IS_SANDBOX"] = "1"  # bare root: Claude Code refuses to skip permissions otherwise
    env.update(spec.agent.env)
    env["HOME"] = home
    env["PORTER_PROMPT_FILE"] = prompt_file
    return env


@dataclass(frozen=True)
class Jail:
    """How the agent's processes are started: in the sandbox, or (operator's choice) bare."""

    policy: sandbox.Policy | None
    mounts: sandbox.Mounts

    @property
    def home(self) -> str:
        return sandbox.HOME if self.policy else self.mounts.home

    @property
    def prompt_file(self) -> str:
        return sandbox.PROMPT if self.policy else (self.mounts.prompt or "")

    def argv(self, argv: list[str]) -> list[str]:
        return sandbox.command(self.policy, self.mounts, argv) if self.policy else argv


@dataclass
class AgentRun:
    returncode: int | None = None  # negative: killed by that signal
    ended_by: str | None = None  # "cancelled" | "timed_out" | "terminated"
    spawn_error: str | None = None
    seconds: float = 0.0


AGENT_PIDFILE = "--porter-agent-pidfile="


def _note_agent(pid: int) -> None:
    """Tell a local runner which process is the agent (its session leader), so the agent's
    whole session can be killed even if this entrypoint is killed first. Best effort."""
    for arg in sys.argv[1:]:
        if not arg.startswith(AGENT_PIDFILE):
            continue
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
                start = fh.read().rsplit(")", 1)[-1].split()[19]
            with open(arg[len(AGENT_PIDFILE):], "w", encoding="utf-8") as fh:
                fh.write(f"{pid} {start}\n")
        except (OSError, IndexError):
            pass


def run_agent(
    spec: Spec,
    *,
    jail: Jail,
    env: dict[str, str],
    transcript: Transcript,
    interrupted: Callable[[], str | None],
    grace_s: float,
) -> AgentRun:
    """Run the agent in its own session, stream its output, stop it on cancel or timeout."""
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            jail.argv(spec.agent.argv),
            cwd=jail.mounts.checkout,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            umask=0o022,
        )
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        return AgentRun(spawn_error=f"{type(exc).__name__}: {exc}")
    _note_agent(proc.pid)
    threading.Thread(target=_feed_stdin, args=(proc, spec.prompt), daemon=True).start()
    pump = threading.Thread(target=_pump_output, args=(proc, transcript), daemon=True)
    pump.start()
    try:
        ended_by = _supervise(proc, started + spec.limits.agent_timeout_s, interrupted)
        returncode = proc.returncode  # before the group kill: the agent's own exit status
    finally:
        # Also ends background children left after a normal exit. In the sandbox, bwrap's
        # exit ends its whole PID namespace: nothing of the agent survives, nothing else is hit.
        kill_group(proc, grace_s, tree=jail.policy is not None)
    pump.join(timeout=5.0)
    returncode = proc.returncode if returncode is None else returncode
    if jail.policy and returncode == 1 and not ended_by:
        # bwrap's own failures (no such command, a mount it could not make) exit 1 with a line
        # of its own: the agent never started.
        first = _first_line(transcript.agent_text())
        if first.startswith("bwrap: "):
            return AgentRun(spawn_error=first[len("bwrap: "):])
    if jail.policy and returncode > 128:
        returncode = 128 - returncode  # bwrap reports its child's death by signal N as 128 + N
    return AgentRun(
        returncode=returncode,
        ended_by=ended_by,
        seconds=time.monotonic() - started,
    )


def _supervise(
    proc: subprocess.Popen[bytes], deadline: float, interrupted: Callable[[], str | None]
) -> str | None:
    """Wait for the agent; the reason it had to be stopped, or None if it exited by itself."""
    while True:
        try:
            proc.wait(timeout=POLL_S)
            return None
        except subprocess.TimeoutExpired:
            pass
        if reason := interrupted():
            return reason
        if time.monotonic() > deadline:
            return "timed_out"


def _feed_stdin(proc: subprocess.Popen[bytes], prompt: str) -> None:
    assert proc.stdin is not None
    try:
        proc.stdin.write(prompt.encode())
    except OSError:
        pass  # the agent does not read stdin: fine, it has the prompt file
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()


def _pump_output(proc: subprocess.Popen[bytes], transcript: Transcript) -> None:
    assert proc.stdout is not None
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    fd = proc.stdout.fileno()
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        transcript.agent_output(decoder.decode(data))
    tail = decoder.decode(b"", final=True)
    if tail:
        transcript.agent_output(tail)


# --------------------------------------------------------------------------------------------
# Interpreting the agent's output


@dataclass
class AgentReport:
    summary: str
    structured: bool = False  # the summary came from the agent's own result object
    cost_usd: float | None = None
    usage: dict[str, Any] | None = None
    error: str | None = None


def last_json_result(text: str) -> dict[str, Any] | None:
    """The last JSON object in the output, preferring Claude's `"type": "result"` object."""
    decoder = json.JSONDecoder()
    starts = [m.start() for m in re.finditer(r"(?m)^[ \t]*\{", text)]
    fallback: dict[str, Any] | None = None
    for start in reversed(starts[-200:]):
        try:
            obj, _ = decoder.raw_decode(text, text.index("{", start))
        except ValueError:
            continue
        if isinstance(obj, dict):
            if obj.get("type") == "result":
                return obj
            fallback = fallback or obj
    return fallback


def text_summary(text: str) -> str:
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()][-SUMMARY_LINES:]
    summary = "\n".join(lines)
    encoded = summary.encode()
    if len(encoded) > SUMMARY_TEXT_BYTES:
        summary = encoded[-SUMMARY_TEXT_BYTES:].decode("utf-8", "ignore")
    return summary


def interpret_output(output_kind: str, text: str) -> AgentReport:
    if output_kind == "claude-json":
        result = last_json_result(text)
        if result is not None:
            return _claude_report(result)
    return AgentReport(summary=text_summary(text))


def _claude_report(result: dict[str, Any]) -> AgentReport:
    summary = result.get("result")
    summary = summary if isinstance(summary, str) else ""
    summary = summary.encode()[:SUMMARY_RESULT_BYTES].decode("utf-8", "ignore")
    cost = result.get("total_cost_usd", result.get("total_cost"))
    usage = result.get("usage")
    report = AgentReport(
        summary=summary,
        structured=True,
        cost_usd=float(cost)
        if isinstance(cost, int | float) and not isinstance(cost, bool)
        else None,
        usage=usage if isinstance(usage, dict) else None,
    )
    if result.get("is_error") is True:
        subtype = str(result.get("subtype") or "error")
        first = _first_line(summary)
        report.error = f"the agent reported an error ({subtype})" + (f": {first}" if first else "")
    return report


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


def _last_line(text: str) -> str:
    return next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "")


def describe_exit(name: str, returncode: int) -> str:
    if returncode < 0:
        try:
            signame = signal.Signals(-returncode).name
        except ValueError:
            signame = f"signal {-returncode}"
        return f"the agent ({name}) was killed by {signame} ({-returncode})"
    return f"the agent ({name}) exited with code {returncode}"


def exit_code_of(returncode: int | None) -> int | None:
    if returncode is None:
        return None
    return 128 - returncode if returncode < 0 else returncode


def commit_message(report: AgentReport, prompt: str) -> str:
    subject = _first_line(report.summary) if report.structured else ""
    if not subject:
        subject = "Porter: " + (_first_line(prompt) or "changes")
    if len(subject) > COMMIT_SUBJECT_CHARS:
        subject = subject[: COMMIT_SUBJECT_CHARS - 1] + "…"
    return subject


# --------------------------------------------------------------------------------------------
# Collect


class GitAs:
    """Runs git in the checkout inside the agent's sandbox, so repo config the agent wrote
    (filters, fsmonitor) can never run with the entrypoint's privileges or see its secrets."""

    def __init__(self, jail: Jail) -> None:
        self._jail = jail
        self._env = git_env(
            home=jail.home,
            extra_config={
                "core.hooksPath": "/dev/null",
                "core.fsmonitor": "false",
            },
        )
        self._env["PATH"] = DEFAULT_PATH if jail.policy else self._env["PATH"]

    def __call__(self, args: list[str], stdin: bytes | None = None) -> bytes:
        result = subprocess.run(
            self._jail.argv(["git", *args]),
            cwd=self._jail.mounts.checkout,
            env=self._env,
            input=stdin,
            capture_output=True,
            timeout=600,
            check=False,
            start_new_session=True,
        )
        if result.returncode != 0:
            message = result.stderr.decode("utf-8", "replace").strip().splitlines() or ["failed"]
            raise StageFailure("collect", f"git {args[0]} failed: {message[-1]}")
        return bytes(result.stdout)


def collect_changeset(
    *,
    jail: Jail,
    base_sha: str,
    max_bytes: int,
    message: str,
    transcript: Transcript,
) -> dict[str, Any] | None:
    """The changes against base_sha (committed or not), read from the index; None if none."""
    if not os.path.isdir(os.path.join(jail.mounts.checkout, ".git")):
        raise StageFailure("collect", "the checkout's .git directory is gone")
    git = GitAs(jail)
    git(["add", "-A"])
    raw = git(["diff-index", "--cached", "--raw", "-z", "--no-renames", "--no-abbrev", base_sha])
    fields = raw.split(b"\0")
    entries: list[tuple[str, str, str | None]] = []  # (path, mode, blob sha | None = deleted)
    for meta, raw_path in zip(fields[0:-1:2], fields[1::2], strict=False):
        _, new_mode, _, new_sha, status = meta.decode().lstrip(":").split(" ")
        try:
            path = raw_path.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StageFailure("collect", f"a changed path is not UTF-8: {raw_path!r}") from exc
        if status.startswith("D"):
            entries.append((path, "", None))
        elif new_mode == "160000":
            transcript.note(f"skipped {path}: nested repositories and submodules are not collected")
        elif new_mode in CHANGESET_MODES:
            entries.append((path, new_mode, new_sha))
        else:
            raise StageFailure("collect", f"unsupported file mode {new_mode} for {path}")
    if not entries:
        return None
    blobs = [sha for _, _, sha in entries if sha]
    sizes = _blob_sizes(git, blobs)
    total = sum(sizes[sha] for sha in blobs)  # each file is sent whole, even if identical
    if total > max_bytes:
        raise StageFailure(
            "collect",
            f"the changes are too large: {total} bytes in {len(entries)} files "
            f"(the limit is {max_bytes} bytes)",
        )
    contents = _blob_contents(git, blobs)
    files: list[dict[str, Any]] = []
    for path, mode, sha in entries:
        if sha is None:
            files.append({"path": path, "deleted": True})
        else:
            content = base64.b64encode(contents[sha]).decode()
            files.append({"path": path, "mode": mode, "content_b64": content})
    transcript.note(f"collected {len(files)} changed files ({total} bytes)")
    return {"base_sha": base_sha, "message": message, "files": files}


def _blob_sizes(git: GitAs, shas: list[str]) -> dict[str, int]:
    out = git(["cat-file", "--batch-check"], stdin="".join(f"{s}\n" for s in shas).encode())
    sizes: dict[str, int] = {}
    for line in out.decode().splitlines():
        sha, _, size = line.split(" ")
        sizes[sha] = int(size)
    return sizes


def _blob_contents(git: GitAs, shas: list[str]) -> dict[str, bytes]:
    unique = list(dict.fromkeys(shas))
    out = git(["cat-file", "--batch"], stdin="".join(f"{s}\n" for s in unique).encode())
    contents: dict[str, bytes] = {}
    pos = 0
    for _ in unique:
        header_end = out.index(b"\n", pos)
        sha, kind, size = out[pos:header_end].decode().split(" ")
        if kind != "blob":
            raise StageFailure("collect", f"object {sha} is a {kind}, not a file")
        start = header_end + 1
        contents[sha] = out[start : start + int(size)]
        pos = start + int(size) + 1
    return contents


# --------------------------------------------------------------------------------------------
# Complete


def complete_payload(outcome: Outcome, transcript: Transcript) -> dict[str, Any]:
    redact = transcript.redactor.redact
    error = None
    if outcome.error:
        error = {"stage": outcome.error["stage"], "message": redact(outcome.error["message"])}
    return {
        "status": outcome.status,
        "summary": redact(outcome.summary),
        "exit_code": outcome.exit_code,
        "cost_usd": outcome.cost_usd,
        "usage": outcome.usage,
        "changeset": outcome.changeset,
        "error": error,
        "log_tail": transcript.log_tail(),
    }


def post_complete(
    callback: Callback,
    payload: dict[str, Any],
    *,
    base_backoff: float,
    deadline_s: float,
    transcript: Transcript,
) -> bool:
    """Deliver the result until Porter accepts it; False if it was refused or time ran out."""
    delays = backoff_delays(base_backoff)
    give_up_at = time.monotonic() + deadline_s
    while True:
        reply = callback.call("POST", "complete", payload, timeout=120.0)
        if reply.ok:
            transcript.note(f"Porter accepted the result ({payload['status']})")
            return True
        if reply.status in (401, 409):
            transcript.note(f"Porter refused the result ({reply.describe()}): attempt superseded")
            return False
        if not reply.retryable:
            if payload["status"] == "failed" and payload["changeset"] is None:
                transcript.note(f"Porter rejected the result ({reply.describe()})")
                return False
            # Porter could not take this result (too big, invalid): still report that it ended.
            detail = transcript.redactor.redact(reply.error)[:200]
            transcript.note(f"Porter rejected the result ({reply.describe()}); reporting a failure")
            payload = {
                **payload,
                "status": "failed",
                "changeset": None,
                "error": {
                    "stage": "collect",
                    "message": f"Porter rejected the result ({reply.describe()}): {detail}",
                },
            }
            continue
        delay = next(delays)
        if time.monotonic() + delay > give_up_at:
            transcript.note(f"could not deliver the result ({reply.describe()}); giving up")
            return False
        time.sleep(delay)


# --------------------------------------------------------------------------------------------
# The run


class Run:
    """One run: spec → clone → agent → collect → complete."""

    def __init__(self, config: Config, terminate: threading.Event) -> None:
        self.config = config
        self.terminate = terminate
        self.callback = Callback(config.porter_url, config.run_id, config.run_token)
        self.transcript = Transcript()
        self.transcript.redactor = Redactor([config.run_token])
        self.heartbeat: Heartbeater | None = None
        self.stage = "clone"

    def interrupted(self) -> str | None:
        if self.heartbeat and self.heartbeat.cancel.is_set():
            return "cancelled"
        if self.terminate.is_set():
            return "terminated"
        return None

    def execute(self) -> int:
        base_backoff = self.config.backoff_s if self.config.backoff_s is not None else 1.0
        try:
            raw = fetch_spec(self.callback, base_backoff, self.terminate)
        except SpecUnavailable as exc:
            self.transcript.note(str(exc))
            return EXIT_NO_SPEC
        spec: Spec | None = None
        workspace: str | None = None
        try:
            spec = parse_spec(raw)
        except ValueError as exc:
            outcome = failed("clone", f"the run spec is malformed: {exc}")
        else:
            self._start_streams(spec)
            workspace, outcome = self._perform_guarded(spec)
        return self._report(outcome, spec, workspace, base_backoff)

    def _start_streams(self, spec: Spec) -> None:
        secrets = [self.config.run_token, spec.clone_token, *spec.agent.env.values()]
        redactor = Redactor(secrets)
        self.transcript.redactor = redactor
        shipper = LogShipper(self.callback, redactor, spec.limits.log_chunk_bytes)
        shipper.start()
        self.transcript.shipper = shipper
        self.heartbeat = Heartbeater(self.callback, redactor, spec.limits.heartbeat_interval_s)
        self.heartbeat.set_stage("clone", f"cloning {spec.repo}")
        self.heartbeat.start()

    def _perform_guarded(self, spec: Spec) -> tuple[str | None, Outcome]:
        workspace: str | None = None
        try:
            # Named by run, so a runner that kills this machine can remove what it left.
            workspace = tempfile.mkdtemp(prefix=f"porter-run-{self.config.run_id}-",
                                         dir=self.config.workdir)
            return workspace, self._perform(spec, workspace)
        except StageFailure as exc:
            self.transcript.note(f"{exc.stage} failed: {exc.message}")
            return workspace, failed(exc.stage, exc.message, text_summary(self._agent_text()))
        except Interrupted as exc:
            return workspace, self._interrupted_outcome(str(exc))
        except Exception as exc:
            self.transcript.note("internal error:\n" + traceback.format_exc().rstrip())
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            return workspace, failed(self.stage, f"the entrypoint crashed: {last}")

    def _agent_text(self) -> str:
        return self.transcript.agent_text()

    def _interrupted_outcome(self, reason: str) -> Outcome:
        if reason == "cancelled":
            return Outcome("cancelled", summary="The run was cancelled.")
        if reason == "terminated":
            return failed(self.stage, "the machine was stopped before the run finished")
        return failed(self.stage, reason)

    def _set_stage(self, stage: str, message: str) -> None:
        self.stage = stage
        if self.heartbeat:
            self.heartbeat.set_stage(stage, message)

    def _perform(self, spec: Spec, workspace: str) -> Outcome:
        policy = self.config.sandbox
        if policy is None:
            self.transcript.note("running the agent WITHOUT a sandbox (--porter-unsandboxed)")
        else:
            try:
                sandbox.self_check(policy)
            except sandbox.SandboxUnavailable as exc:
                raise StageFailure("agent", f"no agent runs without its sandbox: {exc}") from None
        checkout = os.path.join(workspace, "work")
        mounts = sandbox.prepare(workspace, checkout)
        clone_repo(
            spec,
            checkout,
            home=mounts.home,
            transcript=self.transcript,
            interrupted=self.interrupted,
            grace_s=self.config.kill_grace_s,
        )
        prompt_file = os.path.join(workspace, "prompt.md")
        with open(prompt_file, "w", encoding="utf-8") as fh:
            fh.write(spec.prompt)
        jail = Jail(policy, dataclasses.replace(mounts, prompt=prompt_file))

        self._set_stage("agent", f"running {spec.agent.name}")
        env = agent_environment(spec, home=jail.home, prompt_file=jail.prompt_file,
                                sandboxed=policy is not None)
        run = run_agent(
            spec,
            jail=jail,
            env=env,
            transcript=self.transcript,
            interrupted=self.interrupted,
            grace_s=self.config.kill_grace_s,
        )
        return self._finish(spec, run, jail)

    def _finish(self, spec: Spec, run: AgentRun, jail: Jail) -> Outcome:
        name = spec.agent.name
        if run.spawn_error:
            self.transcript.note(f"could not start {name}: {run.spawn_error}")
            return failed("agent", f"could not start the agent ({name}): {run.spawn_error}")
        report = interpret_output(spec.agent.output, self._agent_text())
        base = Outcome(
            "failed",
            summary=report.summary,
            exit_code=exit_code_of(run.returncode),
            cost_usd=report.cost_usd,
            usage=report.usage,
        )
        if run.ended_by == "timed_out":
            self.transcript.note(f"{name} ran over {int(spec.limits.agent_timeout_s)} s; stopped")
            base.status = "timed_out"
            base.exit_code = None
            base.error = {
                "stage": "agent",
                "message": f"the agent ran longer than {int(spec.limits.agent_timeout_s)} s",
            }
            return base
        if run.ended_by:
            self.transcript.note(f"{name} stopped: {run.ended_by}")
            outcome = self._interrupted_outcome(run.ended_by)
            outcome.summary = outcome.summary or report.summary
            return outcome
        assert run.returncode is not None
        self.transcript.note(f"{describe_exit(name, run.returncode)} after {run.seconds:.1f} s")
        if report.error:
            suffix = f" (exit code {base.exit_code})" if run.returncode else ""
            base.error = {"stage": "agent", "message": report.error + suffix}
            return base
        if run.returncode != 0:
            last = _last_line(self._agent_text())[:200]
            base.error = {
                "stage": "agent",
                "message": describe_exit(name, run.returncode) + (f": {last}" if last else ""),
            }
            return base
        if spec.agent.output == "claude-json" and not report.structured:
            self.transcript.note("no JSON result found in the agent's output; using its text")

        if reason := self.interrupted():
            return self._interrupted_outcome(reason)
        self._set_stage("collect", "collecting changes")
        try:
            changeset = collect_changeset(
                jail=jail,
                base_sha=spec.base_sha,
                max_bytes=spec.limits.max_changeset_bytes,
                message=commit_message(report, spec.prompt),
                transcript=self.transcript,
            )
        except StageFailure as exc:
            self.transcript.note(f"collect failed: {exc.message}")
            base.error = {"stage": exc.stage, "message": exc.message}
            return base
        if reason := self.interrupted():
            return self._interrupted_outcome(reason)
        if changeset is None:
            base.error = {"stage": "agent", "message": "the agent made no changes"}
            return base
        base.status = "succeeded"
        base.changeset = changeset
        return base

    def _report(
        self, outcome: Outcome, spec: Spec | None, workspace: str | None, base_backoff: float
    ) -> int:
        if self.config.backoff_s is None and spec and spec.limits.callback_backoff_s:
            base_backoff = spec.limits.callback_backoff_s
        deadline = self.config.complete_deadline_s
        if deadline is None:
            deadline = (spec.limits.complete_deadline_s if spec else None) or 900.0
        if self.terminate.is_set():
            deadline = min(deadline, 20.0)  # the machine is going away; say what we can
        self._set_stage("complete", f"reporting {outcome.status}")
        if self.transcript.shipper:
            self.transcript.shipper.close(timeout=20.0)
            self.transcript.shipper = None
        payload = complete_payload(outcome, self.transcript)
        accepted = post_complete(
            self.callback,
            payload,
            base_backoff=base_backoff,
            deadline_s=deadline,
            transcript=self.transcript,
        )
        if self.heartbeat:
            self.heartbeat.stop()
        if workspace and not self.config.keep_workspace:
            shutil.rmtree(workspace, ignore_errors=True)
        return EXIT_REPORTED if accepted else EXIT_UNREPORTED


def check_sandbox(argv: list[str]) -> int:
    """`--porter-sandbox-check`: what the local runner and `porter doctor` ask before a run."""
    try:
        policy = sandbox_policy(argv)
        if policy is not None:
            sandbox.self_check(policy)
    except (ConfigError, sandbox.SandboxUnavailable) as exc:
        sys.stderr.write(f"{exc}\n")
        return EXIT_NO_SANDBOX
    return 0


def main() -> int:
    terminate = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        sys.stderr.write(f"porter: received {signal.Signals(signum).name}; stopping\n")
        terminate.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if SANDBOX_CHECK in sys.argv[1:]:
        return check_sandbox(sys.argv[1:])
    try:
        config = load_config(dict(os.environ), sys.argv[1:])
    except ConfigError as exc:
        sys.stderr.write(f"porter: {exc}\n")
        return EXIT_NO_SPEC
    run = Run(config, terminate)
    try:
        return run.execute()
    except Exception as exc:
        # A bug in the reporting path itself: one plain attempt to say so, then give up.
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        sys.stderr.write(run.transcript.redactor.redact(traceback.format_exc()))
        payload = complete_payload(
            failed(run.stage, f"the entrypoint crashed: {last}"), run.transcript
        )
        reply = run.callback.call("POST", "complete", payload, timeout=30.0)
        return EXIT_REPORTED if reply.ok else EXIT_UNREPORTED


if __name__ == "__main__":
    sys.exit(main())
