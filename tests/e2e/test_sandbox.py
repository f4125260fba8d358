"""The local runner contains a hostile agent: real `porter serve`, real bubblewrap, real git.

The hostile agent (tests/fakes/hostile_agent.py) tries to read Porter's secrets and files, find
and change other runs, and signal processes outside its sandbox; it commits a report of all it
found, so the pull request itself shows what a malicious agent could get at.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, WEBHOOK_SECRET
from tests.e2e.stack import ADMIN_TOKEN, FILES, REPO, Stack
from tests.fakes.sandbox import READ_ONLY_SETTING, alive, needs_bwrap

pytestmark = needs_bwrap

HOSTILE = [sys.executable, str(ROOT / "tests" / "fakes" / "hostile_agent.py")]
SECOND = "octo/second"
CANARY = "dotenv-canary-5b2e81f07c3d49a6"


def hostile(config: dict[str, Any]) -> list[str]:
    return [*HOSTILE, json.dumps(config)]


def pull_files(stack: Stack, repo: str) -> dict[str, bytes]:
    """What the task's pull request changes: path -> new content."""
    [pull] = stack.fake.pulls(repo)
    base = stack.fake.read_tree(repo, stack.fake.ref_sha(repo, "heads/main") or "")
    head = stack.fake.read_tree(repo, stack.fake.ref_sha(repo, f"heads/{pull.head_ref}") or "")
    return {p: head[p][1] for p in head if base.get(p) != head[p]}


def sandbox_pids(report: dict[str, Any]) -> dict[str, str]:
    return {pid: seen["cmdline"]["value"] for pid, seen in report["processes"].items()
            if seen["cmdline"]["ok"]}


def assert_contained(report: dict[str, Any], secrets: list[str]) -> None:
    """Nothing of Porter, its secrets or other runs in what the agent could see."""
    assert (report["uid"], report["cwd"]) == (1000, "/workspace")
    everything_seen = json.dumps(report["processes"])
    for secret in secrets:
        assert secret not in everything_seen
    assert "PORTER_RUN_TOKEN" not in everything_seen
    for cmdline in sandbox_pids(report).values():  # only the sandbox's own processes
        assert cmdline.startswith("bwrap") or "hostile_agent.py" in cmdline, cmdline
    assert report["other_workspaces"] == []
    # Of /etc, only what anyone on the host may read (and the sandbox's own passwd and group):
    # a Porter run as root must not hand the agent root's files.
    assert "/etc/resolv.conf" in report["etc_readable"] or not Path("/etc/resolv.conf").exists()
    for path in set(report["etc_readable"]) - {"/etc/passwd", "/etc/group"}:
        assert os.stat(path).st_mode & stat.S_IROTH, path
    for path, outcome in report["reads"].items():
        assert not outcome["ok"], f"the agent read {path}"
    for path, outcome in report["signals"].items():
        assert not outcome["ok"], f"the agent signalled {path}"
    for path, outcome in report["writes"].items():
        assert not outcome["ok"], f"the agent wrote {path}"


def test_a_hostile_agent_finds_nothing_of_porter_and_changes_only_its_pull_request(
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "app.pem"
    (tmp_path / ".env").write_text(f"PORTER_SECRET_DOTENV_CANARY={CANARY}\n")
    # The hostile agent probes every pid and reads all of /etc: on a loaded host (CI runs four
    # workers on two cores) that can outlast the stack's 8 s of heartbeat silence.
    stack = Stack(tmp_path, env={"PORTER_GITHUB_PRIVATE_KEY": "",
                                 "PORTER_GITHUB_PRIVATE_KEY_FILE": str(key_file),
                                 "PORTER_HEARTBEAT_TIMEOUT": "60"})
    key_file.write_text(stack.fake.private_key_pem)
    key_file.chmod(0o600)
    database = tmp_path / "porter.db"
    planted = [tmp_path / "planted", Path("/usr/porter-planted"), Path("/etc/porter-planted")]
    config = {
        "name": "alpha",
        "read": [str(database), f"{database}.keys", str(key_file), str(tmp_path / ".env"),
                 str(database) + "-wal"],
        "list": [str(tmp_path), str(tmp_path / "runs"), tempfile.gettempdir()],
        "signal": [os.getpid()],
        "write": [str(p) for p in planted],
    }
    stack.command = hostile(config)
    with stack:
        assert stack.server is not None
        task_id = stack.comment("@porter do your worst").json()["task_id"]
        task = stack.wait(task_id)
        assert task["state"] == "succeeded", task

        changed = pull_files(stack, REPO)
        assert set(changed) == {"alpha.txt", "report-alpha.json"}
        report = json.loads(changed["report-alpha.json"])
        secrets = [WEBHOOK_SECRET, ADMIN_TOKEN, CANARY,
                   stack.fake.private_key_pem.splitlines()[1],
                   (Path(f"{database}.keys").read_text().strip() or "no key ring")[-20:]]
        assert_contained(report, secrets)
        assert not report["lists"][str(tmp_path)]["ok"]  # Porter's directory is not there
        assert not any(name.startswith("porter-run-")
                       for name in report["lists"][tempfile.gettempdir()].get("value", []))
        assert stack.server.process is not None and alive(stack.server.process.pid)
        assert not any(path.exists() for path in planted)
        assert stack.task(task_id)["state"] == "succeeded"  # Porter's database is intact


def test_two_concurrent_runs_neither_sees_nor_ends_the_other(tmp_path: Path) -> None:
    config = {"by_prompt": {
        "alpha": {"name": "alpha", "wait_for": "go"},
        "beta": {"name": "beta", "wait_for": "go"},
    }}
    with Stack(tmp_path, command=hostile(config)) as stack:
        stack.fake.add_repo(SECOND, files=FILES, installation_id=42)
        stack.fake.set_permission(SECOND, "alice", "write")
        second = stack.fake.add_issue(SECOND, title="Another", body="b", user="alice")
        alpha_id = stack.comment("@porter do the alpha part").json()["task_id"]
        beta_id = stack.comment("@porter do the beta part", repo=SECOND,
                                number=second.number).json()["task_id"]
        # Each agent holds until the test writes `go` into its checkout, from the host.
        alpha_checkout = stack.wait_for(lambda: stack.agent_checkout("alpha.txt"),
                                        what="alpha's agent to start")
        beta_checkout = stack.wait_for(lambda: stack.agent_checkout("beta.txt"),
                                       what="beta's agent to start")
        assert alpha_checkout != beta_checkout
        beta_pids = [pid for pid in stack.agent_pids() if _works_in(pid, beta_checkout)]
        assert len(beta_pids) == 3  # bwrap, the sandbox's init, the agent

        (alpha_checkout / "go").write_text("")
        alpha = stack.wait(alpha_id)  # alpha ends (and its sandbox with it) while beta runs
        assert alpha["state"] == "succeeded", alpha
        assert all(alive(pid) for pid in beta_pids)

        (beta_checkout / "go").write_text("")
        beta = stack.wait(beta_id)
        assert beta["state"] == "succeeded", beta

        alpha_files, beta_files = pull_files(stack, REPO), pull_files(stack, SECOND)
        assert set(alpha_files) == {"alpha.txt", "report-alpha.json"}
        assert set(beta_files) == {"beta.txt", "report-beta.json"}
        for files, name in ((alpha_files, "alpha"), (beta_files, "beta")):
            assert_contained(json.loads(files[f"report-{name}.json"]), [WEBHOOK_SECRET])


def test_without_bwrap_no_agent_runs_and_doctor_says_what_to_install(tmp_path: Path) -> None:
    bare_path = tmp_path / "bin"  # a PATH with git but no bwrap
    bare_path.mkdir()
    (bare_path / "git").symlink_to("/usr/bin/git")
    with Stack(tmp_path, script=[{"op": "write", "path": "x", "text": "x"}],
               env={"PATH": str(bare_path)}) as stack:
        task = stack.wait(stack.comment("@porter fix the typo").json()["task_id"])
        assert (task["state"], task["stage"]) == ("failed", "dispatch")
        assert "bubblewrap" in task["reason"]
        status = stack.status_comment(starts="❌")
        assert "bubblewrap" in status.body
        assert stack.agent_pids() == []
        assert stack.fake.pulls(REPO) == []

    doctor = subprocess.run(
        [sys.executable, "-m", "porter.cli", "doctor"], cwd=tmp_path, capture_output=True,
        text=True, timeout=60, check=False,
        env={"PATH": str(bare_path), "PORTER_DATABASE": str(tmp_path / "d.db"),
             "PORTER_SANDBOX_READ_ONLY_PATHS": READ_ONLY_SETTING},
    )
    assert doctor.returncode == 1
    assert "agent sandbox" in doctor.stdout and "needs bubblewrap" in doctor.stdout
    assert "apt-get install bubblewrap" in doctor.stdout


def test_the_unsandboxed_escape_hatch_is_named_loudly(tmp_path: Path) -> None:
    doctor = subprocess.run(
        [sys.executable, "-m", "porter.cli", "doctor"], cwd=tmp_path, capture_output=True,
        text=True, timeout=60, check=False,
        env={"PATH": "/nonexistent", "PORTER_DATABASE": str(tmp_path / "d.db"),
             "PORTER_LOCAL_RUNNER_UNSANDBOXED": "true"},
    )
    assert "agent sandbox                OFF" in doctor.stdout
    assert "WITHOUT a sandbox" in doctor.stdout


def _works_in(pid: int, directory: Path) -> bool:
    """Whether the process's working directory is `directory` (through any mount namespace)."""
    try:
        cwd, wanted = os.stat(f"/proc/{pid}/cwd"), directory.stat()
    except OSError:
        return False
    return (cwd.st_dev, cwd.st_ino) == (wanted.st_dev, wanted.st_ino)
