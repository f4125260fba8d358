"""The agent: its clean environment and HOME, and running it in its own session with the prompt
on stdin, its output streamed to the transcript, stopped on cancel, SIGTERM, timeout or a stall.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from porter_entrypoint import sandbox
from porter_entrypoint.output import first_line
from porter_entrypoint.processes import DEFAULT_PATH, POLL_S, kill_group, proc_stat
from porter_entrypoint.progress import Progress
from porter_entrypoint.sandbox import Jail
from porter_entrypoint.spec import Spec
from porter_entrypoint.streams import Transcript

# Agents known to need these in a container; agent.env from the spec may override them.
AGENT_ENV_DEFAULTS = {
    "GOOSE_DISABLE_KEYRING": "1",
    "GOOSE_MODE": "auto",
    "GEMINI_CLI_TRUST_WORKSPACE": "true",
}
SUMMARY_FILE_ENV = "PORTER_SUMMARY_FILE"
SUMMARY_FILE_NAME = "porter-summary.txt"  # in the run's own tmp
MAX_SUMMARY_FILE_BYTES = 64 * 1024


def agent_environment(
    spec: Spec, *, home: str, prompt_file: str, sandboxed: bool,
    summary_file: str | None = None, withhold: tuple[str, ...] = (),
) -> dict[str, str]:
    """The agent's whole environment: nothing of the entrypoint's leaks in. `summary_file` is
    where the agent may write its final message, as the agent sees the path. No value holding
    one of `withhold` (the run token) is ever passed, whatever the spec says."""
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
    env.pop(SUMMARY_FILE_ENV, None)
    if summary_file is not None and spec.agent.summary_file:
        env[SUMMARY_FILE_ENV] = summary_file
    return {name: value for name, value in env.items()
            if not any(secret and secret in value for secret in withhold)}


def write_home_files(home: str, files: dict[str, str]) -> None:
    """The agent's setup files (e.g. Gemini's settings), written into its fresh HOME before it
    starts; spec.py has checked that every path stays inside."""
    for relative, text in files.items():
        path = os.path.join(home, *relative.split("/"))
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)


def read_summary_file(path: str) -> str | None:
    """The final message the agent wrote, or None. The agent made this file, so it is read as
    untrusted: not through a symlink, only a regular file, only so much of it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks: list[bytes] = []
        left = MAX_SUMMARY_FILE_BYTES
        while left > 0 and (chunk := os.read(fd, left)):
            chunks.append(chunk)
            left -= len(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace")


@dataclass
class AgentRun:
    returncode: int | None = None  # negative: killed by that signal
    ended_by: str | None = None  # "cancelled" | "timed_out" | "terminated" | "stalled"
    spawn_error: str | None = None
    seconds: float = 0.0


def _note_agent(pid: int, pidfile: str | None) -> None:
    """Tell a local runner which process is the agent (its session leader), so the agent's
    whole session can be killed even if this entrypoint is killed first. Best effort."""
    fields = proc_stat(pid)
    if pidfile is None or fields is None or len(fields) < 20:
        return
    with contextlib.suppress(OSError), open(pidfile, "w", encoding="utf-8") as fh:
        fh.write(f"{pid} {fields[19]}\n")  # with the start time, a recycled pid is not it


def run_agent(
    spec: Spec,
    *,
    jail: Jail,
    env: dict[str, str],
    transcript: Transcript,
    interrupted: Callable[[], str | None],
    grace_s: float,
    pidfile: str | None = None,
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
    _note_agent(proc.pid, pidfile)
    threading.Thread(target=_feed_stdin, args=(proc, spec.prompt), daemon=True).start()
    progress = Progress()
    pump = threading.Thread(target=_pump_output, args=(proc, transcript, progress), daemon=True)
    pump.start()
    try:
        ended_by = _supervise(proc, started + spec.limits.agent_timeout_s, interrupted,
                              progress, spec.agent.idle_timeout_s)
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
        first = first_line(transcript.agent_text())
        if first.startswith("bwrap: "):
            error = first[len("bwrap: "):]
            if error.startswith("execvp"):  # the command is not in what the sandbox shows
                error += ("; the sandbox shows /usr and little else: an agent installed "
                          "elsewhere needs its directory in PORTER_SANDBOX_READ_ONLY_PATHS")
            return AgentRun(spawn_error=error)
    if jail.policy and returncode > 128:
        returncode = 128 - returncode  # bwrap reports its child's death by signal N as 128 + N
    return AgentRun(
        returncode=returncode,
        ended_by=ended_by,
        seconds=time.monotonic() - started,
    )


def _supervise(
    proc: subprocess.Popen[bytes], deadline: float, interrupted: Callable[[], str | None],
    progress: Progress, idle_timeout_s: float | None,
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
        if idle_timeout_s is not None and progress.idle_for() > idle_timeout_s:
            return "stalled"


def _feed_stdin(proc: subprocess.Popen[bytes], prompt: str) -> None:
    assert proc.stdin is not None
    try:
        proc.stdin.write(prompt.encode())
    except OSError:
        pass  # the agent does not read stdin: fine, it has the prompt file
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()


def _pump_output(proc: subprocess.Popen[bytes], transcript: Transcript,
                 progress: Progress) -> None:
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
        text = decoder.decode(data)
        transcript.agent_output(text)
        progress.feed(text)
    tail = decoder.decode(b"", final=True)
    if tail:
        transcript.agent_output(tail)
