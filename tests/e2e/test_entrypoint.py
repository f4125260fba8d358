"""The container entrypoint as a subprocess, against a fake Porter callback server on loopback
and a real bare git repository, with a scripted agent standing in for the coding agent."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.git_repo import bare_origin, git
from tests.fakes.sandbox import SANDBOX_ARGS, needs_bwrap, pids_running

pytestmark = needs_bwrap

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "container" / "porter_entrypoint"
AGENT = ROOT / "tests" / "fakes" / "scripted_agent.py"

RUN_ID = "r_01testrun"
RUN_TOKEN = "prt_runtoken_9f8e7d6c5b4a39281706f5e4d3c2b1a0"
CLONE_TOKEN = "ghs_clonetoken_0123456789abcdefABCDEF0123456789"
CANARY = "sk-ant-canary-5f1e2d3c4b5a69788796a5b4c3d2e1f0"
PROMPT = "Add a --verbose flag to the CLI\n\nThe issue says: please add it."
BINARY = bytes(range(256)) + b"\x00\xff\x00PNG\r\n\x1a\n"
NEW_BINARY = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(reversed(range(256)))

Script = list[dict[str, Any]]
RUN_GUARD_S = 60  # an entrypoint run that takes longer fails the test instead of hanging it
# An agent that sleeps this long ends only when it is killed: a run that waited it out would
# hit RUN_GUARD_S first. So no test needs to time how long a run took.
AGENT_NAP = 10 * RUN_GUARD_S

@dataclass(frozen=True)
class Origin:
    bare: Path
    base_sha: str
# Marks this session's agents, to find them from outside their sandbox; never an earlier
# session's leftovers.
TAG = f"agent-{uuid.uuid4().hex}"


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    bare, base_sha = bare_origin(tmp_path, {
        "README.md": b"# hello\n",
        "old.txt": b"remove me\n",
        "tool.sh": (b"#!/bin/sh\necho hi\n", 0o755),
        "data.bin": BINARY,
        "src/app.py": b"print('app')\n",
    })
    git("update-server-info", cwd=bare)  # lets the fake serve it over dumb HTTP too
    return Origin(bare=bare, base_sha=base_sha)


# --------------------------------------------------------------------------------------------
# Fake Porter


@dataclass
class FakePorter:
    spec: dict[str, Any]
    git_root: Path | None = None
    spec_replies: list[int] = field(default_factory=list)  # statuses served before the spec
    complete_replies: list[int] = field(default_factory=list)  # statuses before accepting
    heartbeat_replies: list[int] = field(default_factory=list)  # statuses before answering
    cancel_on_log: str | None = None  # answer cancel once the log contains this
    notice_on_log: str | None = None  # set `noticed` once the log contains this
    watch: str | None = None  # at the marker above, note host pids whose argv contains this
    seen_pids: list[int] = field(default_factory=list)
    heartbeats: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    completes: list[dict[str, Any]] = field(default_factory=list)
    bad_auth: list[str] = field(default_factory=list)
    git_auth: list[str] = field(default_factory=list)
    cancel: bool = False

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.noticed = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def log_text(self) -> str:
        with self.lock:
            return "".join(chunk["text"] for chunk in sorted(self.logs, key=lambda c: c["seq"]))

    def everything(self) -> str:
        with self.lock:
            return json.dumps([self.heartbeats, self.logs, self.completes])

    @property
    def result(self) -> dict[str, Any]:
        assert len(self.completes) == 1, self.completes
        return self.completes[0]


def _handler(fake: FakePorter) -> type[BaseHTTPRequestHandler]:
    prefix = f"/api/runs/{RUN_ID}/"
    git_basic = "Basic " + base64.b64encode(f"x-access-token:{CLONE_TOKEN}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {RUN_TOKEN}":
                return True
            with fake.lock:
                fake.bad_auth.append(self.path)
            self._send(401, {"error": "bad token"})
            return False

        def do_GET(self) -> None:
            if self.path.startswith("/git/"):
                self._serve_git()
            elif self.path != prefix + "spec":
                self._send(404, {"error": "not found"})
            elif self._authorized():
                with fake.lock:
                    status = fake.spec_replies.pop(0) if fake.spec_replies else 200
                self._send(status, fake.spec if status == 200 else {"error": "unavailable"})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if not self.path.startswith(prefix):
                self._send(404, {"error": "not found"})
                return
            if not self._authorized():
                return
            route = self.path[len(prefix) :]
            reply: dict[str, Any]
            with fake.lock:
                if route == "heartbeat":
                    fake.heartbeats.append(body)
                    status = fake.heartbeat_replies.pop(0) if fake.heartbeat_replies else 200
                    reply = {"cancel": fake.cancel}
                elif route == "logs":
                    fake.logs.append(body)
                    text = "".join(c["text"] for c in fake.logs)
                    marker = fake.cancel_on_log or fake.notice_on_log
                    if marker and marker in text and fake.watch and not fake.seen_pids:
                        fake.seen_pids = pids_running(fake.watch)
                    if fake.cancel_on_log and fake.cancel_on_log in text:
                        fake.cancel = True
                    if fake.notice_on_log and fake.notice_on_log in text:
                        fake.noticed.set()
                    reply, status = {}, 200
                elif route == "complete":
                    fake.completes.append(body)
                    status = fake.complete_replies.pop(0) if fake.complete_replies else 200
                    reply = {"ok": status == 200}
                else:
                    reply, status = {"error": "not found"}, 404
            self._send(status, reply)

        def _serve_git(self) -> None:
            # Dumb-HTTP git: static files of the bare repo, behind the installation-token check.
            with fake.lock:
                fake.git_auth.append(self.headers.get("Authorization", ""))
            if self.headers.get("Authorization") != git_basic:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            assert fake.git_root is not None
            rel = self.path.split("?", 1)[0].removeprefix("/git/octo/hello.git/")
            target = fake.git_root / rel
            if ".." in rel or not target.is_file():
                self._send(404, {"error": "no such file"})
                return
            data = target.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def make_spec(
    origin: Origin,
    script: list[dict[str, Any]],
    *,
    output: str = "text",
    limits: dict[str, Any] | None = None,
    clone_url: str | None = None,
    argv: list[str] | None = None,
    python: str = sys.executable,
    agent_path: Path = AGENT,
) -> dict[str, Any]:
    return {
        "task_id": 12,
        "run_id": RUN_ID,
        "attempt": 1,
        "repo": "octo/hello",
        "clone_url": clone_url or origin.bare.as_uri(),
        "clone_token": CLONE_TOKEN,
        "base_ref": "main",
        "base_sha": origin.base_sha,
        "agent": {
            "name": "scripted",
            "argv": argv or [python, str(agent_path), json.dumps(script)],
            "env": {"ANTHROPIC_API_KEY": CANARY, "GOOSE_MODE": "auto"},
            "output": output,
        },
        "prompt": PROMPT,
        "limits": {
            "agent_timeout_s": 60,
            "heartbeat_interval_s": 0.5,
            "max_changeset_bytes": 1 << 20,
            "log_chunk_bytes": 16384,
            **(limits or {}),
        },
    }


@pytest.fixture
def porter() -> Iterator[Callable[..., FakePorter]]:
    servers: list[FakePorter] = []

    def start(spec: dict[str, Any], **kwargs: Any) -> FakePorter:
        fake = FakePorter(spec, **kwargs)
        servers.append(fake)
        return fake

    yield start
    for fake in servers:
        fake.close()


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str
    workdir: Path


def entrypoint_env(fake: FakePorter, tmp_path: Path, **env: str) -> dict[str, str]:
    workdir = Path(env.get("PORTER_WORKDIR", str(tmp_path / "ws")))
    if not workdir.exists():
        workdir.mkdir()
    home = tmp_path / "entrypoint-home"
    home.mkdir(exist_ok=True)
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "PORTER_URL": fake.url,
        "PORTER_RUN_ID": RUN_ID,
        "PORTER_RUN_TOKEN": RUN_TOKEN,
        "PORTER_WORKDIR": str(workdir),
        "PORTER_CALLBACK_BACKOFF_S": "0.05",
        "PORTER_KILL_GRACE_S": "5",
        "ENTRYPOINT_ONLY_VAR": "must-not-reach-the-agent",
        **env,
    }


def run_entrypoint(fake: FakePorter, tmp_path: Path, **env: str) -> Ran:
    full_env = entrypoint_env(fake, tmp_path, **env)
    workdir = Path(full_env["PORTER_WORKDIR"])
    proc = subprocess.run(
        [sys.executable, str(ENTRYPOINT), *SANDBOX_ARGS],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=RUN_GUARD_S,
        check=False,
    )
    return Ran(proc.returncode, proc.stdout, proc.stderr, workdir)


def sandbox_file(ran: Ran, relative: str) -> Path:
    """A file the agent wrote inside its sandbox, found in the kept workspace."""
    found = list(ran.workdir.glob(f"porter-run-*/{relative}"))
    assert len(found) == 1, found
    return found[0]


def files_of(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    changeset = result["changeset"]
    assert changeset is not None
    return {f["path"]: f for f in changeset["files"]}


def content(entry: dict[str, Any]) -> bytes:
    return base64.b64decode(entry["content_b64"])


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


# --------------------------------------------------------------------------------------------
# Successful runs


def test_changeset_holds_exactly_the_edits_deletes_modes_and_binary(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    script: Script = [
        {"op": "write", "path": "README.md", "text": "# hello\n\nNow with --verbose.\n"},
        {"op": "write_b64", "path": "data.bin", "data": base64.b64encode(NEW_BINARY).decode()},
        {"op": "delete", "path": "old.txt"},
        {"op": "write", "path": "bin/run.sh", "text": "#!/bin/sh\nexec ./tool.sh -v\n"},
        {"op": "chmod", "path": "bin/run.sh", "mode": "755"},
        {"op": "symlink", "path": "docs", "target": "README.md"},
        {"op": "print", "text": "Edited README.md and data.bin\nAll done."},
    ]
    fake = porter(make_spec(origin, script))
    ran = run_entrypoint(fake, tmp_path)

    assert ran.code == 0, ran.stderr
    result = fake.result
    assert result["status"] == "succeeded"
    assert result["error"] is None
    assert result["exit_code"] == 0
    assert result["changeset"]["base_sha"] == origin.base_sha
    assert result["changeset"]["message"] == "Porter: Add a --verbose flag to the CLI"
    files = files_of(result)
    assert sorted(files) == ["README.md", "bin/run.sh", "data.bin", "docs", "old.txt"]
    assert files["README.md"]["mode"] == "100644"
    assert content(files["README.md"]) == b"# hello\n\nNow with --verbose.\n"
    assert files["data.bin"]["mode"] == "100644"
    assert content(files["data.bin"]) == NEW_BINARY
    assert files["bin/run.sh"]["mode"] == "100755"
    assert content(files["bin/run.sh"]) == b"#!/bin/sh\nexec ./tool.sh -v\n"
    assert files["docs"]["mode"] == "120000"
    assert content(files["docs"]) == b"README.md"
    assert files["old.txt"] == {"path": "old.txt", "deleted": True}
    assert result["summary"].endswith("Edited README.md and data.bin\nAll done.")
    assert "All done." in result["log_tail"]

    stages = [hb["stage"] for hb in fake.heartbeats]
    distinct = [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s]
    assert distinct[0] == "clone" and distinct[-1] == "complete"
    assert [s for s in ["clone", "agent", "collect", "complete"] if s in distinct] == distinct
    assert [c["seq"] for c in fake.logs] == list(range(len(fake.logs)))
    assert fake.bad_auth == []
    assert list(ran.workdir.iterdir()) == []  # the workspace is removed after the run


def test_changes_the_agent_committed_itself_are_collected_against_the_base(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    script: Script = [
        {"op": "write", "path": "src/app.py", "text": "print('app', 'verbose')\n"},
        {"op": "git", "args": ["commit", "-q", "-am", "aider: add verbose"]},
        {"op": "write", "path": "NOTES.md", "text": "uncommitted\n"},
    ]
    fake = porter(make_spec(origin, script))
    assert run_entrypoint(fake, tmp_path).code == 0

    files = files_of(fake.result)
    assert sorted(files) == ["NOTES.md", "src/app.py"]
    assert content(files["src/app.py"]) == b"print('app', 'verbose')\n"


def test_claude_json_result_gives_summary_cost_usage_and_commit_message(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    usage = {"input_tokens": 1200, "output_tokens": 340}
    script: Script = [
        {"op": "print", "text": "warming up", "stream": "stderr"},
        {"op": "write", "path": "README.md", "text": "# hello --verbose\n"},
        {
            "op": "claude_result",
            "subtype": "success",
            "is_error": False,
            "result": "Added a --verbose flag.\n\nIt prints each step.",
            "total_cost_usd": 0.4213,
            "usage": usage,
            "num_turns": 4,
        },
    ]
    fake = porter(make_spec(origin, script, output="claude-json"))
    assert run_entrypoint(fake, tmp_path).code == 0

    result = fake.result
    assert result["status"] == "succeeded"
    assert result["summary"] == "Added a --verbose flag.\n\nIt prints each step."
    assert result["cost_usd"] == pytest.approx(0.4213)
    assert result["usage"] == usage
    assert result["changeset"]["message"] == "Added a --verbose flag."


def test_log_chunks_respect_the_size_limit_and_keep_every_character(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    long_line = "é" * 3000 + "✓" * 700
    script: Script = [
        {"op": "print", "text": long_line},
        {"op": "write", "path": "x.txt", "text": "x\n"},
    ]
    fake = porter(make_spec(origin, script, limits={"log_chunk_bytes": 1024}))
    assert run_entrypoint(fake, tmp_path).code == 0

    assert all(len(c["text"].encode()) <= 1024 for c in fake.logs)
    assert long_line in fake.log_text()


# --------------------------------------------------------------------------------------------
# Failures become reports


def test_agent_exit_code_is_a_failure_with_the_log_tail(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    script: Script = [
        {"op": "write", "path": "README.md", "text": "half done\n"},
        {"op": "print", "text": "Error: the model refused the API key", "stream": "stderr"},
        {"op": "exit", "code": 3},
    ]
    fake = porter(make_spec(origin, script))
    assert run_entrypoint(fake, tmp_path).code == 0  # the failure was reported

    result = fake.result
    assert result["status"] == "failed"
    assert result["exit_code"] == 3
    assert result["error"]["stage"] == "agent"
    assert "exited with code 3" in result["error"]["message"]
    assert "the model refused the API key" in result["error"]["message"]
    assert "Error: the model refused the API key" in result["log_tail"]
    assert result["changeset"] is None


def test_agent_killed_by_a_signal_is_named(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    script: Script = [{"op": "print", "text": "crashing"}, {"op": "signal", "name": "SIGSEGV"}]
    fake = porter(make_spec(origin, script))
    assert run_entrypoint(fake, tmp_path).code == 0

    result = fake.result
    assert result["status"] == "failed"
    assert result["error"]["stage"] == "agent"
    assert "SIGSEGV" in result["error"]["message"]
    assert result["exit_code"] == 128 + 11


def test_claude_json_is_error_is_a_failure(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    script: Script = [
        {"op": "write", "path": "README.md", "text": "partial\n"},
        {
            "op": "claude_result",
            "subtype": "error_max_turns",
            "is_error": True,
            "result": "",
            "total_cost_usd": 1.5,
        },
        {"op": "exit", "code": 1},
    ]
    fake = porter(make_spec(origin, script, output="claude-json"))
    assert run_entrypoint(fake, tmp_path).code == 0

    result = fake.result
    assert result["status"] == "failed"
    assert result["error"]["stage"] == "agent"
    assert "error_max_turns" in result["error"]["message"]
    assert result["cost_usd"] == pytest.approx(1.5)
    assert result["changeset"] is None


def test_no_changes_is_a_failure_of_the_agent(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    fake = porter(make_spec(origin, [{"op": "print", "text": "I looked around. Bye."}]))
    assert run_entrypoint(fake, tmp_path).code == 0

    result = fake.result
    assert result["status"] == "failed"
    assert result["error"] == {"stage": "agent", "message": "the agent made no changes"}
    assert "I looked around. Bye." in result["log_tail"]


def test_an_agent_that_cannot_start_is_reported(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    fake = porter(make_spec(origin, [], argv=["/nonexistent/bin/claude", "-p"]))
    assert run_entrypoint(fake, tmp_path).code == 0

    result = fake.result
    assert result["status"] == "failed"
    assert result["error"]["stage"] == "agent"
    assert "could not start the agent" in result["error"]["message"]
    assert "/nonexistent/bin/claude" in result["error"]["message"]
    assert "PORTER_SANDBOX_READ_ONLY_PATHS" in result["error"]["message"]  # what to do about it


def test_changes_over_the_size_limit_fail_in_collect(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    big = base64.b64encode(os.urandom(4096)).decode()
    script: Script = [{"op": "write_b64", "path": "big.bin", "data": big}]
    fake = porter(make_spec(origin, script, limits={"max_changeset_bytes": 1000}))
    assert run_entrypoint(fake, tmp_path).code == 0

    result = fake.result
    assert result["status"] == "failed"
    assert result["error"]["stage"] == "collect"
    assert "too large" in result["error"]["message"]
    assert result["changeset"] is None


def test_clone_failure_is_reported_at_stage_clone(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    missing = (tmp_path / "no-such-repo.git").as_uri()
    fake = porter(make_spec(origin, [], clone_url=missing))
    assert run_entrypoint(fake, tmp_path).code == 0

    result = fake.result
    assert result["status"] == "failed"
    assert result["error"]["stage"] == "clone"
    assert "git clone failed" in result["error"]["message"]


def test_malformed_spec_is_reported(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    spec = make_spec(origin, [])
    del spec["base_sha"]
    fake = porter(spec)
    assert run_entrypoint(fake, tmp_path).code == 0

    result = fake.result
    assert result["status"] == "failed"
    assert result["error"]["stage"] == "clone"
    assert "base_sha" in result["error"]["message"]


def test_an_entrypoint_crash_is_still_reported(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("")
    fake = porter(make_spec(origin, [{"op": "write", "path": "x", "text": "x"}]))
    ran = run_entrypoint(fake, tmp_path, PORTER_WORKDIR=str(not_a_dir))

    assert ran.code == 0
    result = fake.result
    assert result["status"] == "failed"
    assert result["error"]["stage"] == "clone"
    assert result["error"]["message"].startswith("the entrypoint crashed: NotADirectoryError")
    assert "Traceback" in result["log_tail"]


# --------------------------------------------------------------------------------------------
# Cancel and timeout


def test_cancel_from_a_heartbeat_kills_the_whole_process_tree(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    tag = f"sleeper-{uuid.uuid4().hex}"
    script: Script = [
        {"op": "spawn_sleeper", "seconds": AGENT_NAP, "tag": tag},
        {"op": "ready"},
        {"op": "sleep", "seconds": AGENT_NAP},
    ]
    fake = porter(
        make_spec(origin, script, limits={"heartbeat_interval_s": 0.2}),
        cancel_on_log="AGENT-READY", watch=tag,
    )
    ran = run_entrypoint(fake, tmp_path)

    assert ran.code == 0
    result = fake.result
    assert result["status"] == "cancelled"
    assert result["changeset"] is None
    # bwrap, the sandbox's init, the agent and its sleeper, as the host sees them
    assert len(fake.seen_pids) == 4
    assert not any(alive(pid) for pid in fake.seen_pids)


def test_an_agent_ignoring_sigterm_is_killed_after_the_grace_period(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    script: Script = [{"op": "ignore_sigterm"}, {"op": "ready"},
                      {"op": "sleep", "seconds": AGENT_NAP}, {"op": "print", "text": TAG}]
    fake = porter(
        make_spec(origin, script, limits={"heartbeat_interval_s": 0.2}),
        cancel_on_log="AGENT-READY", watch=TAG,
    )
    ran = run_entrypoint(fake, tmp_path, PORTER_KILL_GRACE_S="0.5")

    assert ran.code == 0
    assert fake.result["status"] == "cancelled"
    assert fake.seen_pids and not any(alive(pid) for pid in fake.seen_pids)


def test_an_agent_over_its_time_limit_is_timed_out(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    script: Script = [{"op": "ready"}, {"op": "sleep", "seconds": AGENT_NAP},
                      {"op": "print", "text": TAG}]
    fake = porter(make_spec(origin, script, limits={"agent_timeout_s": 3}),
                  notice_on_log="AGENT-READY", watch=TAG)
    ran = run_entrypoint(fake, tmp_path)

    assert ran.code == 0
    result = fake.result
    assert result["status"] == "timed_out"
    assert result["error"]["stage"] == "agent"
    assert fake.seen_pids and not any(alive(pid) for pid in fake.seen_pids)


def test_sigterm_to_the_entrypoint_stops_the_agent_and_reports_a_failure(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    script: Script = [{"op": "ready"}, {"op": "sleep", "seconds": 60},
                      {"op": "print", "text": TAG}]
    fake = porter(make_spec(origin, script), notice_on_log="AGENT-READY", watch=TAG)
    proc = subprocess.Popen(
        [sys.executable, str(ENTRYPOINT), *SANDBOX_ARGS],
        env=entrypoint_env(fake, tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert fake.noticed.wait(timeout=20)
        proc.send_signal(signal.SIGTERM)  # what a machine stop sends
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()

    result = fake.result
    assert result["status"] == "failed"
    assert result["error"] == {
        "stage": "agent",
        "message": "the machine was stopped before the run finished",
    }
    assert fake.seen_pids and not any(alive(pid) for pid in fake.seen_pids)


# --------------------------------------------------------------------------------------------
# Callback delivery


def test_complete_is_retried_through_server_errors_until_accepted(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    script: Script = [{"op": "write", "path": "x.txt", "text": "x\n"}]
    fake = porter(make_spec(origin, script), complete_replies=[500, 500])
    ran = run_entrypoint(fake, tmp_path)

    assert ran.code == 0
    assert len(fake.completes) == 3
    assert all(c == fake.completes[0] for c in fake.completes)
    assert fake.completes[0]["status"] == "succeeded"


def test_a_fenced_complete_is_not_retried_and_exits_non_zero(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    script: Script = [{"op": "write", "path": "x.txt", "text": "x\n"}]
    fake = porter(make_spec(origin, script), complete_replies=[409])
    ran = run_entrypoint(fake, tmp_path)

    assert ran.code == 1
    assert len(fake.completes) == 1


def test_a_rejected_result_is_replaced_by_a_failure_report(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    script: Script = [{"op": "write", "path": "x.txt", "text": "x\n"}]
    fake = porter(make_spec(origin, script), complete_replies=[422])
    ran = run_entrypoint(fake, tmp_path)

    assert ran.code == 0
    first, second = fake.completes
    assert first["status"] == "succeeded"
    assert second["status"] == "failed"
    assert second["changeset"] is None
    assert "HTTP 422" in second["error"]["message"]


def test_complete_gives_up_at_the_deadline_and_exits_non_zero(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    script: Script = [{"op": "write", "path": "x.txt", "text": "x\n"}]
    fake = porter(make_spec(origin, script), complete_replies=[503] * 1000)
    ran = run_entrypoint(fake, tmp_path, PORTER_COMPLETE_DEADLINE_S="1")

    assert ran.code == 1
    assert 2 <= len(fake.completes) < 100


def test_failing_heartbeats_are_retried_and_never_fatal(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    script: Script = [
        {"op": "sleep", "seconds": 1},
        {"op": "write", "path": "x.txt", "text": "x\n"},
    ]
    fake = porter(
        make_spec(origin, script, limits={"heartbeat_interval_s": 0.2}),
        heartbeat_replies=[503, 500, 502, 503],
    )
    assert run_entrypoint(fake, tmp_path).code == 0
    assert fake.result["status"] == "succeeded"
    assert len(fake.heartbeats) > 4  # kept beating after the failures


def test_spec_is_retried_on_server_errors(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    script: Script = [{"op": "write", "path": "x.txt", "text": "x\n"}]
    fake = porter(make_spec(origin, script), spec_replies=[503, 502])
    assert run_entrypoint(fake, tmp_path).code == 0
    assert fake.result["status"] == "succeeded"


@pytest.mark.parametrize("status", [401, 404, 409])
def test_a_refused_spec_ends_the_run_without_reporting(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter], status: int
) -> None:
    fake = porter(make_spec(origin, []), spec_replies=[status])
    ran = run_entrypoint(fake, tmp_path)

    assert ran.code == 2
    assert fake.completes == [] and fake.heartbeats == []


def test_missing_environment_exits_non_zero(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ENTRYPOINT), *SANDBOX_ARGS],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "PORTER_URL" in proc.stderr


# --------------------------------------------------------------------------------------------
# Isolation and secrets


def test_the_agent_environment_is_clean_and_gets_the_prompt(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    script: Script = [
        {"op": "read_stdin"},
        {"op": "dump", "path": "/tmp/dump.json"},
        {"op": "write", "path": "x.txt", "text": "x\n"},
    ]
    fake = porter(make_spec(origin, script))
    ran = run_entrypoint(fake, tmp_path, PORTER_KEEP_WORKSPACE="1")
    assert ran.code == 0

    seen = json.loads(sandbox_file(ran, "tmp/dump.json").read_text())
    env = seen["env"]
    assert set(env) <= {
        "PATH", "HOME", "LANG", "TERM", "USER", "LOGNAME", "PORTER_PROMPT_FILE", "PWD",
        "GOOSE_DISABLE_KEYRING", "GOOSE_MODE", "GEMINI_CLI_TRUST_WORKSPACE", "ANTHROPIC_API_KEY",
    }  # fmt: skip
    assert env["ANTHROPIC_API_KEY"] == CANARY
    assert env["LANG"] == "C.UTF-8" and env["TERM"] == "dumb"
    assert env["HOME"] == "/home/agent" and env["USER"] == "agent"
    assert (seen["uid"], seen["gid"], seen["cwd"]) == (1000, 1000, "/workspace")
    for secret in (RUN_TOKEN, CLONE_TOKEN, fake.url):
        assert all(secret not in value for value in env.values())
    assert seen["stdin"] == PROMPT
    assert seen["prompt_file"] == PROMPT
    assert not env["PORTER_PROMPT_FILE"].startswith(seen["cwd"] + os.sep)
    assert seen["pgid"] == seen["sid"]  # its own session and process group


def test_secrets_never_reach_logs_reports_or_the_checkout(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    script: Script = [
        {"op": "print_secret", "var": "ANTHROPIC_API_KEY", "style": "raw"},
        {"op": "print_secret", "var": "ANTHROPIC_API_KEY", "style": "base64"},
        {"op": "print_secret", "var": "ANTHROPIC_API_KEY", "style": "split"},
        {"op": "print_secret", "var": "ANTHROPIC_API_KEY", "style": "halves"},
        {"op": "dump", "path": "/tmp/dump.json"},
        {"op": "exit", "code": 7},
    ]
    fake = porter(make_spec(origin, script))
    ran = run_entrypoint(fake, tmp_path, PORTER_KEEP_WORKSPACE="1")
    assert ran.code == 0
    dump = sandbox_file(ran, "tmp/dump.json")

    sent = fake.everything() + ran.stdout + ran.stderr
    log = fake.log_text()
    assert log.count("[REDACTED]") == 4
    assert CANARY not in sent
    assert CANARY not in log.replace("\n", "")
    assert base64.b64encode(f"user:{CANARY}".encode()).decode() not in sent
    for token in (RUN_TOKEN, CLONE_TOKEN):
        assert token not in sent
        assert token not in dump.read_text()
    git_config = json.loads(dump.read_text())["git_config"]
    assert origin.bare.as_uri() in git_config
    assert "extraheader" not in git_config.lower()


def test_http_clone_sends_the_token_as_a_header_and_never_stores_it(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    script: Script = [
        {"op": "dump", "path": "/tmp/dump.json"},
        {"op": "write", "path": "x.txt", "text": "x\n"},
    ]
    fake = porter(make_spec(origin, script), git_root=origin.bare)
    fake.spec["clone_url"] = f"{fake.url}/git/octo/hello.git"
    ran = run_entrypoint(fake, tmp_path, PORTER_KEEP_WORKSPACE="1")
    dump = sandbox_file(ran, "tmp/dump.json")

    assert ran.code == 0, ran.stderr
    assert fake.result["status"] == "succeeded"
    expected = "Basic " + base64.b64encode(f"x-access-token:{CLONE_TOKEN}".encode()).decode()
    assert fake.git_auth and set(fake.git_auth) == {expected}
    git_config = json.loads(dump.read_text())["git_config"]
    assert f"url = {fake.url}/git/octo/hello.git" in git_config
    assert CLONE_TOKEN not in git_config and expected.split()[1] not in git_config
    sent = fake.everything() + ran.stdout + ran.stderr
    assert CLONE_TOKEN not in sent and expected.split()[1] not in sent


def test_http_clone_with_a_rejected_token_fails_at_clone(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    fake = porter(make_spec(origin, []), git_root=origin.bare)
    fake.spec["clone_url"] = f"{fake.url}/git/octo/hello.git"
    fake.spec["clone_token"] = "ghs_wrong_token_000000000000000000000"
    ran = run_entrypoint(fake, tmp_path)

    assert ran.code == 0
    result = fake.result
    assert result["status"] == "failed"
    assert result["error"]["stage"] == "clone"
    assert "ghs_wrong_token" not in fake.everything() + ran.stderr


def test_a_relative_workdir_is_where_the_run_works(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `uv run porter serve` on its defaults keeps runs beside a relative porter.db: the local
    # runner then passes a relative workdir, from Porter's own directory.
    fake = porter(make_spec(origin, [{"op": "write", "path": "NOTES.md", "text": "n\n"}]))
    monkeypatch.chdir(tmp_path)  # Porter's directory, where "runs" is
    env = entrypoint_env(fake, tmp_path, PORTER_WORKDIR="runs")
    proc = subprocess.run([sys.executable, str(ENTRYPOINT), *SANDBOX_ARGS], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=RUN_GUARD_S, check=False)

    assert proc.returncode == 0, proc.stderr
    assert fake.result["status"] == "succeeded", fake.result
    assert sorted(files_of(fake.result)) == ["NOTES.md"]
