"""The repository's `setup` and `verify` commands: each run with `/bin/sh -c` in the checkout,
in the agent's sandbox, as the agent, under one time limit per phase. The results have the
shape of `"verification"` in the completion report (porter/verification.py documents it).

A command's output is untrusted and may be endless: only its last MAX_TAIL_BYTES are kept while
reading, and redacted before they go anywhere. A command may hand Porter a JUnit XML file by
writing it to `$PORTER_JUNIT_XML`, a path in the run's private tmp (e.g.
`python -m pytest --junitxml="$PORTER_JUNIT_XML"`): one explicit path rather than a search of
the checkout, so nothing walks a tree the agent wrote or picks up a stale file it left.

The changeset is the agent's alone: verify runs after it is taken, and what setup left
untracked is excluded before the agent starts (`ignore_untracked`).
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from porter_entrypoint import sandbox
from porter_entrypoint.changeset import GitAs
from porter_entrypoint.processes import DEFAULT_PATH, POLL_S, Interrupted, kill_group
from porter_entrypoint.redact import Redactor
from porter_entrypoint.result import StageFailure
from porter_entrypoint.sandbox import Jail

MAX_TAIL_BYTES = 8 * 1024
MAX_JUNIT_BYTES = 1024 * 1024  # bigger files are dropped, not cut: a cut XML file is invalid
JUNIT_ENV = "PORTER_JUNIT_XML"
JUNIT_NAME = "porter-junit.xml"  # in the run's own tmp, as the command sees it

Result = dict[str, Any]


def command_environment(jail: Jail) -> dict[str, str]:
    """What the repository's commands see: a plain environment, not the agent's. Its keys are
    for the model API, and the repository's test suite has no business with them."""
    return {
        "PATH": os.environ.get("PATH") or DEFAULT_PATH,
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "USER": sandbox.AGENT_USER,
        "LOGNAME": sandbox.AGENT_USER,
        "HOME": jail.home,
        "CI": "true",
        JUNIT_ENV: os.path.join(jail.tmp, JUNIT_NAME),
    }


def not_run(phase: str, command: str) -> Result:
    return {"phase": phase, "command": command, "exit_code": None, "duration_s": 0.0,
            "timed_out": False, "output_tail": "", "junit_xml": None}


def run_commands(
    phase: str,
    commands: list[str],
    *,
    jail: Jail,
    time_limit_s: float,
    env: dict[str, str],
    redactor: Redactor,
    interrupted: Callable[[], str | None],
    grace_s: float,
) -> list[Result]:
    """Run a phase's commands in order, every one of them listed in the result. The phase has
    one time limit: a command that runs over it is killed and the rest are not run. `setup`
    also stops at the first command that fails; `verify` runs them all."""
    deadline = time.monotonic() + time_limit_s
    results: list[Result] = []
    stopped = False
    for command in commands:
        if stopped:
            results.append(not_run(phase, command))
            continue
        result = _run_one(phase, command, jail=jail, deadline=deadline, env=env,
                          redactor=redactor, interrupted=interrupted, grace_s=grace_s)
        results.append(result)
        stopped = result["timed_out"] or (phase == "setup" and result["exit_code"] != 0)
    return results


def _run_one(
    phase: str, command: str, *, jail: Jail, deadline: float, env: dict[str, str],
    redactor: Redactor, interrupted: Callable[[], str | None], grace_s: float,
) -> Result:
    junit_host = os.path.join(jail.mounts.tmp, JUNIT_NAME)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(junit_host)  # an earlier command's (or the agent's) file is not this one's
    started = time.monotonic()
    if started >= deadline:
        return {**not_run(phase, command), "timed_out": True}
    tail = _Tail(MAX_TAIL_BYTES)
    try:
        proc = subprocess.Popen(
            jail.argv(["/bin/sh", "-c", command]),
            cwd=jail.mounts.checkout,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            umask=0o022,
        )
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        return {**not_run(phase, command), "exit_code": 127,
                "output_tail": redactor.redact(f"could not start the command: {exc}")}
    reader = threading.Thread(target=tail.pump, args=(proc,), daemon=True)
    reader.start()
    timed_out = False
    reason: str | None = None
    try:
        while proc.poll() is None:
            if reason := interrupted():
                break
            if time.monotonic() >= deadline:
                timed_out = True
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=POLL_S)
        returncode = proc.returncode
    finally:
        # Also ends what the command left running in the background (a server a test started).
        kill_group(proc, grace_s, tree=jail.policy is not None)
    reader.join(timeout=5.0)
    if reason:
        raise Interrupted(reason)
    if returncode is not None and jail.policy and returncode > 128:
        returncode = 128 - returncode  # bwrap reports its child's death by signal N as 128 + N
    junit = None if timed_out or phase != "verify" else read_junit(junit_host)
    if junit is not None:  # a failing test's message may print a secret too
        junit = redactor.redact(junit)
        junit = junit if len(junit.encode()) <= MAX_JUNIT_BYTES else None
    return {
        "phase": phase,
        "command": redactor.redact(command),
        "exit_code": None if timed_out else returncode,
        "duration_s": round(time.monotonic() - started, 3),
        "timed_out": timed_out,
        "output_tail": _redacted_tail(tail.text(), redactor),
        "junit_xml": junit,
    }


def _redacted_tail(text: str, redactor: Redactor) -> str:
    """Redact, then cut to the byte limit again (a placeholder can be longer than a secret),
    never inside a character."""
    data = redactor.redact(text).encode()
    return data[-MAX_TAIL_BYTES:].decode("utf-8", "ignore")


def read_junit(path: str) -> str | None:
    """The JUnit file a command wrote, or None. Written in the sandbox, so read as untrusted:
    not through a symlink, only a regular file, and none bigger than MAX_JUNIT_BYTES."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = b""
        while len(data) <= MAX_JUNIT_BYTES and (chunk := os.read(fd, 65536)):
            data += chunk
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) > MAX_JUNIT_BYTES:
        return None
    return data.decode("utf-8", "replace")


def ignore_untracked(jail: Jail, env: dict[str, str]) -> str | None:
    """Add what is untracked now (setup's virtualenv, node_modules, build output) to the
    checkout's .git/info/exclude, so the changeset holds what the agent wrote and not what
    setup made. Both run in the sandbox: setup may have made .git/info a symlink anywhere.
    An error message, or None."""
    try:
        listed = GitAs(jail)(["ls-files", "--others", "--exclude-standard", "--directory", "-z"])
    except StageFailure as exc:
        return exc.message
    # A name with a newline cannot be written as a pattern; the agent's change keeps it.
    patterns = b"".join(b"/" + _escape(name) + b"\n" for name in listed.split(b"\0")
                        if name and b"\n" not in name)
    if not patterns:
        return None
    script = "mkdir -p .git/info && cat >> .git/info/exclude"
    try:
        done = subprocess.run(jail.argv(["/bin/sh", "-c", script]), cwd=jail.mounts.checkout,
                              env=env, input=b"\n" + patterns, capture_output=True, timeout=60,
                              check=False, start_new_session=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    return None if done.returncode == 0 else done.stderr.decode("utf-8", "replace")[-200:]


def _escape(name: bytes) -> bytes:
    """A path as a gitignore pattern that matches it literally."""
    return b"".join(b"\\" + bytes([c]) if c in b"\\*?[ !#" else bytes([c]) for c in name)


class _Tail:
    """The last `limit` bytes of a process's output, in bounded memory whatever it prints.
    Keeps a little more than the limit so a secret across the cut is still redacted whole."""

    def __init__(self, limit: int) -> None:
        self.keep = 2 * limit
        self.data = bytearray()

    def pump(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.data += chunk
            if len(self.data) > self.keep:
                del self.data[: len(self.data) - self.keep]

    def text(self) -> str:
        # The first character may be cut in half by the byte window: drop what cannot decode.
        return bytes(self.data).decode("utf-8", "replace").lstrip("\ufffd")
