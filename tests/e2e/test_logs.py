"""A real `porter serve`: canary secrets printed by the agent and sent back in failing GitHub
answers appear in no log line, while the lines about the failures are there, with their ids."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from tests.e2e.stack import REPO, Stack
from tests.fakes.sandbox import needs_bwrap

pytestmark = needs_bwrap

GHS = "ghs_" + "L0gCanary" * 5  # shaped like an installation token
SK_ANT = "sk-ant-api03-" + "LogCanary" * 5  # shaped like an Anthropic key
PLAIN = "operator-key-8d2e6f1a9c4b"  # no shape: known only as a configured secret
CANARIES = (GHS, SK_ANT, PLAIN)
SAID = f"tokens {GHS} {SK_ANT} {PLAIN}"


class Output:
    """Everything the server writes (stderr, merged into its stdout), read as it comes, so the
    pipe never fills."""

    def __init__(self, stack: Stack) -> None:
        assert stack.server is not None and stack.server.process is not None
        self.stream = stack.server.process.stdout
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.stream is not None
        for line in self.stream:
            self.lines.append(line)

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.lines) if line.startswith("{")]

    def find(self, fragment: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if fragment in r["message"]]


def test_canary_secrets_appear_in_no_log_line(tmp_path: Path) -> None:
    script = [
        {"op": "write", "path": "README.md", "text": "fixed\n"},
        {"op": "print_secret", "var": "ANTHROPIC_API_KEY", "style": "raw"},
        {"op": "print", "text": f"the agent found {GHS} and {SK_ANT}", "stream": "stderr"},
    ]
    env = {"PORTER_SECRET_ANTHROPIC_API_KEY": PLAIN,
           "PORTER_AGENT_SCRIPTED_KEYS": "ANTHROPIC_API_KEY",
           "PORTER_LOG_LEVEL": "info"}
    with Stack(tmp_path, script=script, env=env) as stack:
        output = Output(stack)
        # The permission check fails once (retried), and opening the pull request for good.
        stack.fake.fail("GET", rf"/repos/{REPO}/collaborators/alice/permission", 502,
                        body={"message": f"Server Error: {SAID}"})
        stack.fake.fail("POST", rf"/repos/{REPO}/pulls", 403,
                        body={"message": f"Resource not accessible: {SAID}"})
        accepted = stack.comment("@porter fix the typo")
        delivery_id = accepted.request.headers["x-github-delivery"]
        task_id = accepted.json()["task_id"]
        task = stack.wait(task_id)
        assert task["state"] == "failed" and task["stage"] == "publish", task
        run_logs = stack.logs(task_id)
        assert "the agent found [REDACTED] and [REDACTED]" in run_logs
        [permission] = stack.wait_for(lambda: output.find("permission check failed"),
                                      what="the permission failure's log line")
        [publish] = stack.wait_for(lambda: output.find("given up"),
                                   what="the publish failure's log line")
        # GitHub's failing answer became the task's reason: shown in the status comment.
        shown = [c.body for c in stack.fake.comments(REPO, stack.issue.number)]
    output.thread.join(timeout=10)

    assert "Server Error: tokens [REDACTED] [REDACTED] [REDACTED]" in permission["message"]
    assert permission["task_id"] == task_id and permission["delivery_id"] == delivery_id
    assert permission["level"] == "warning" and permission["logger"] == "porter.dispatcher"
    assert "Resource not accessible: tokens [REDACTED] [REDACTED] [REDACTED]" \
        in publish["message"]
    # The machine's spec call mints its read-only token: those lines name the run and task.
    [run_id] = {e["data"]["run_id"] for e in task["events"] if "run_id" in e["data"]}
    minted = [r for r in output.find("access_tokens") if r.get("run_id") == run_id]
    assert minted and all(r["task_id"] == task_id for r in minted)
    machine_logs = [p.read_text(errors="replace") for p in (tmp_path / "runs").glob("*.log")]
    assert machine_logs
    assert any("Resource not accessible: tokens [REDACTED]" in body for body in shown), shown
    for text in ("".join(output.lines), run_logs, *machine_logs, *shown, json.dumps(task)):
        for canary in CANARIES:
            assert canary not in text
