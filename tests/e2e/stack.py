"""The whole of Porter on this machine: a real `porter serve`, the fake GitHub backed by git, and
agents run by the real container entrypoint through the local (or Fly) runner."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import shlex
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx

from porter.runners.local import LocalRunner
from tests.conftest import ROOT, WEBHOOK_SECRET, comment_payload, signed
from tests.e2e.server import ServerProcess
from tests.fakes.github import FakeGitHub
from tests.fakes.sandbox import READ_ONLY_SETTING, pids_running
from tests.fakes.world import app_key

ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
REPO = "octo/hello"
SCRIPTED_AGENT = ROOT / "tests" / "fakes" / "scripted_agent.py"
FILES = {
    "README.md": b"# Hello\n\nTeh greeting project.\n",
    "src/app.py": b"print('hi')\n",
    "old.txt": b"remove me\n",
    "bin/run.sh": (b"#!/bin/sh\necho run\n", "100755"),
}
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out", "rejected"}
# The scripted agent's usual work: two files edited, one deleted, a summary printed.
EDIT_TWO_DELETE_ONE = [
    {"op": "write", "path": "README.md", "text": "# Hello\n\nThe greeting project.\n"},
    {"op": "write", "path": "src/app.py", "text": "print('hello')\n"},
    {"op": "delete", "path": "old.txt"},
    {"op": "print", "text": "Fixed the typo and the greeting."},
]


def agent_command(script: list[dict[str, Any]], tag: str) -> str:
    """The scripted agent's command; `tag` (ignored by the agent) lets a test find its processes."""
    return shlex.join([sys.executable, str(SCRIPTED_AGENT), json.dumps(script), tag])


class Stack:
    def __init__(self, tmp_path: Path, *, script: list[dict[str, Any]] | None = None,
                 command: list[str] | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.tmp = tmp_path
        self.fake = FakeGitHub(tmp_path / "github", private_key_pem=app_key())
        self.fake.add_installation(42, account="octo")
        self.fake.add_repo(REPO, files=FILES, installation_id=42)
        self.fake.set_permission(REPO, "alice", "write")
        self.issue = self.fake.add_issue(REPO, title="Fix the typo in the README",
                                         body="It says Teh.", user="alice")
        self.script = script or []
        self.command = command
        self.tag = f"stack-{uuid.uuid4().hex}"  # unique across runs: never another run's agent
        self.extra_env = dict(env or {})
        self._serving: Any = None
        self.server: ServerProcess | None = None

    def env(self) -> dict[str, str]:
        return {
            "PORTER_DATABASE": str(self.tmp / "porter.db"),
            "PORTER_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "PORTER_ADMIN_TOKEN": ADMIN_TOKEN,
            "PORTER_GITHUB_APP_ID": self.fake.app_id,
            "PORTER_GITHUB_PRIVATE_KEY": self.fake.private_key_pem,
            "PORTER_GITHUB_API_URL": self.fake.api_url,
            "PORTER_GITHUB_URL": self.fake.web_url,
            "PORTER_AGENT_SCRIPTED_COMMAND": (shlex.join([*self.command, self.tag])
                                              if self.command
                                              else agent_command(self.script, self.tag)),
            "PORTER_SANDBOX_READ_ONLY_PATHS": READ_ONLY_SETTING,
            "PORTER_DEFAULT_AGENT": "scripted",
            # Long enough that a loaded CI host (four workers on two cores, browsers, real
            # agent CLIs) never starves a heartbeat past it; no test waits on it.
            "PORTER_HEARTBEAT_TIMEOUT": "30",
            "PORTER_WATCHDOG_INTERVAL": "1",
            "PORTER_WATCHDOG_EXIT_GRACE": "2",  # a killed machine's task fails in seconds
            **self.extra_env,
        }

    def __enter__(self) -> Stack:
        self._serving = self.fake.serve()
        self._serving.__enter__()
        self.server = ServerProcess(self.env(), cwd=self.tmp).start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.server:
                self.server.kill()
            # In a thread of its own: a browser test's Playwright runs an event loop here.
            with concurrent.futures.ThreadPoolExecutor(1) as worker:
                worker.submit(asyncio.run, self._destroy_machines()).result()
        finally:
            self._serving.__exit__(*exc)

    async def _destroy_machines(self) -> None:
        """Machines outlive Porter by design; a test must not leave its own behind."""
        runs = self.tmp / "runs"
        runner = LocalRunner(log_dir=runs, instance=self.instance_id())
        for machine in await runner.list_owned():
            if machine.run_id and (runs / f"{machine.run_id}.log").exists():
                await runner.destroy(machine.id)

    def instance_id(self) -> str:
        """The instance id the server keeps in its database (its machines carry it)."""
        with contextlib.closing(sqlite3.connect(self.tmp / "porter.db")) as db:
            row = db.execute("SELECT id FROM instance").fetchone()
        return str(row[0]) if row else ""

    def agent_checkout(self, holding: str) -> Path | None:
        """The host path of this stack's agent checkout that holds `holding`: bwrap runs
        there, outside the sandbox, so /proc shows it."""
        for pid in self.agent_pids():
            try:
                cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
            except OSError:
                continue
            if (cwd / holding).exists():
                return cwd
        return None

    def agent_pids(self) -> list[int]:
        """Host pids of this stack's agent: bwrap, the sandbox's init, the agent itself."""
        return pids_running(self.tag)

    def restart(self) -> None:
        assert self.server is not None
        port = self.server.port
        self.server.kill()
        self.server = ServerProcess(self.env(), cwd=self.tmp, port=port).start()

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def comment(self, body: str, *, user: str = "alice", repo: str = REPO,
                number: int | None = None) -> httpx.Response:
        """Post a comment on the issue and deliver its webhook, as GitHub would."""
        number = self.issue.number if number is None else number
        made = self.fake.add_issue_comment(repo, number, body, user=user)
        payload = comment_payload(body=body)
        payload["comment"] = self.fake.json_comment(made.id)
        payload["issue"] = self.fake.json_issue(repo, number)
        payload["repository"] = self.fake.json_repository(repo)
        payload["installation"] = {"id": 42, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNDI="}
        payload["sender"] = self.fake.json_user(user)
        raw = json.dumps(payload).encode()
        return httpx.post(f"{self.url}/webhooks/github", content=raw,
                          headers=signed(raw, "issue_comment"))

    def task(self, task_id: int) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/api/tasks/{task_id}", headers=ADMIN, timeout=10)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def logs(self, task_id: int) -> str:
        response = httpx.get(f"{self.url}/api/tasks/{task_id}/logs", headers=ADMIN, timeout=10)
        return str(response.json()["text"])

    def wait(self, task_id: int, states: Iterable[str] = TERMINAL, *,
             timeout: float = 60) -> dict[str, Any]:
        wanted = set(states)
        deadline = time.monotonic() + timeout
        task = self.task(task_id)
        while task["state"] not in wanted:
            if time.monotonic() > deadline:
                raise AssertionError(f"task {task_id} still {task['state']}: {task}")
            time.sleep(0.1)
            task = self.task(task_id)
        return task

    def wait_for(self, check: Any, *, timeout: float = 30, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; {self._where_things_are()}")
            time.sleep(0.1)

    def _where_things_are(self) -> str:
        """What a failed wait should say: every task's state and the tail of each run's log."""
        try:
            tasks = httpx.get(f"{self.url}/api/tasks", headers=ADMIN, timeout=10).json()
        except (httpx.HTTPError, ValueError) as exc:
            tasks = f"tasks unknown: {exc}"
        logs = {p.name: p.read_text(errors="replace")[-600:]
                for p in sorted((self.tmp / "runs").glob("*.log"))}
        return f"tasks: {tasks}; machine logs: {logs}"

    def status_comment(self, *, starts: str, timeout: float = 20) -> Any:
        """Porter's one status comment, once it reads as expected."""
        def ready() -> Any:
            found = [c for c in self.porter_comments() if "porter:status" in c.body]
            assert len(found) <= 1, f"more than one status comment: {found}"
            return found[0] if found and found[0].body.startswith(starts) else None

        return self.wait_for(ready, timeout=timeout, what=f"a status comment starting {starts}")

    def porter_comments(self) -> list[Any]:
        return [c for c in self.fake.comments(REPO, self.issue.number)
                if c.user == self.fake.bot_login]
