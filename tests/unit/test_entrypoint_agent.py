"""The agent's environment and how its processes are started
(container/porter_entrypoint/agent.py, and the Jail in sandbox.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.entrypoint_module import load

agent = load("agent")
progress = load("progress")
sandbox = load("sandbox")
spec = load("spec")

SHA = "0123456789abcdef0123456789abcdef01234567"


def agent_spec(env: dict[str, str] | None = None, **fields: Any) -> Any:
    return spec.parse_spec({
        "clone_url": "https://github.com/octo/hello.git", "base_sha": SHA, "prompt": "Fix it",
        "agent": {"name": "goose", "argv": ["goose", "run"], "env": env or {}, **fields},
    })


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The entrypoint's own environment, with a secret that must never reach the agent."""
    monkeypatch.setenv("PATH", "/opt/bin:/usr/bin")
    monkeypatch.setenv("PORTER_RUN_TOKEN", "prt_runtoken_entrypoint_only")
    monkeypatch.setenv("HOME", "/root")
    monkeypatch.setattr(agent.os, "geteuid", lambda: 1000)
    return monkeypatch


def test_the_agent_gets_a_clean_environment_and_nothing_of_the_entrypoints(
    host: pytest.MonkeyPatch,
) -> None:
    env = agent.agent_environment(agent_spec({"ANTHROPIC_API_KEY": "sk-ant-key"}),
                                  home="/home/agent", prompt_file="/run/porter/prompt.md",
                                  sandboxed=True)
    assert env == {
        "PATH": "/opt/bin:/usr/bin",
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "USER": "agent",
        "LOGNAME": "agent",
        "GOOSE_DISABLE_KEYRING": "1",
        "GOOSE_MODE": "auto",
        "GEMINI_CLI_TRUST_WORKSPACE": "true",
        "ANTHROPIC_API_KEY": "sk-ant-key",
        "HOME": "/home/agent",
        "PORTER_PROMPT_FILE": "/run/porter/prompt.md",
    }


def test_the_specs_env_overrides_defaults_but_never_home_or_the_prompt_file(
    host: pytest.MonkeyPatch,
) -> None:
    env = agent.agent_environment(
        agent_spec({"GOOSE_MODE": "chat", "HOME": "/root", "PORTER_PROMPT_FILE": "/etc/shadow"}),
        home="/home/agent", prompt_file="/run/porter/prompt.md", sandboxed=True)
    assert env["GOOSE_MODE"] == "chat"
    assert (env["HOME"], env["PORTER_PROMPT_FILE"]) == ("/home/agent", "/run/porter/prompt.md")


def test_bare_root_is_told_it_is_in_a_sandbox_only_when_unsandboxed(
    host: pytest.MonkeyPatch,
) -> None:
    host.setattr(agent.os, "geteuid", lambda: 0)
    bare = agent.agent_environment(agent_spec(), home="/h", prompt_file="/p", sandboxed=False)
    jailed = agent.agent_environment(agent_spec(), home="/h", prompt_file="/p", sandboxed=True)
    assert bare["IS_SANDBOX"] == "1"
    assert "IS_SANDBOX" not in jailed
    host.setattr(agent.os, "geteuid", lambda: 1000)
    assert "IS_SANDBOX" not in agent.agent_environment(agent_spec(), home="/h", prompt_file="/p",
                                                       sandboxed=False)


def test_without_a_path_the_agent_gets_the_default_one(host: pytest.MonkeyPatch) -> None:
    host.delenv("PATH")
    env = agent.agent_environment(agent_spec(), home="/h", prompt_file="/p", sandboxed=True)
    assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# -- the Jail ------------------------------------------------------------------------------------


def mounts(tmp_path: Path) -> Any:
    checkout = tmp_path / "work"
    checkout.mkdir()
    prepared = sandbox.prepare(str(tmp_path), str(checkout))
    return sandbox.Mounts(checkout=prepared.checkout, home=prepared.home, tmp=prepared.tmp,
                          etc=prepared.etc, prompt=str(tmp_path / "prompt.md"))


def test_in_the_sandbox_the_agent_sees_its_paths_inside_it(tmp_path: Path) -> None:
    jail = sandbox.Jail(sandbox.Policy(), mounts(tmp_path))
    assert (jail.home, jail.prompt_file) == ("/home/agent", "/run/porter/prompt.md")
    argv = jail.argv(["claude", "-p"])
    assert argv[0] == "bwrap" and argv[-3:] == ["--", "claude", "-p"]
    assert ["--ro-bind", str(tmp_path / "prompt.md"), "/run/porter/prompt.md"] == argv[
        argv.index(str(tmp_path / "prompt.md")) - 1:][:3]


def test_unsandboxed_the_agent_runs_bare_with_the_hosts_paths(tmp_path: Path) -> None:
    jail = sandbox.Jail(None, mounts(tmp_path))
    assert (jail.home, jail.prompt_file) == (str(tmp_path / "home"), str(tmp_path / "prompt.md"))
    assert jail.argv(["claude", "-p"]) == ["claude", "-p"]


# -- the callback token, the summary file, HOME -------------------------------------------------

RUN_TOKEN = "prt_runtoken_entrypoint_only"


def test_the_agent_never_holds_the_callback_token_whatever_the_spec_says(
    host: pytest.MonkeyPatch,
) -> None:
    env = agent.agent_environment(
        agent_spec({"ANTHROPIC_API_KEY": "plt_r1.gateway-mac", "SMUGGLED": f"x{RUN_TOKEN}y",
                    "PORTER_RUN_TOKEN": RUN_TOKEN}),
        home="/home/agent", prompt_file="/p", sandboxed=True, withhold=(RUN_TOKEN,))
    assert all(RUN_TOKEN not in value for value in env.values())
    assert "PORTER_RUN_TOKEN" not in env and "SMUGGLED" not in env
    assert env["ANTHROPIC_API_KEY"] == "plt_r1.gateway-mac"  # the gateway token is its to hold


def test_the_summary_file_is_offered_only_to_an_agent_that_writes_one(
    host: pytest.MonkeyPatch,
) -> None:
    where = "/tmp/porter-summary.txt"
    writes = agent.agent_environment(agent_spec(summary_file=True), home="/h", prompt_file="/p",
                                     sandboxed=True, summary_file=where)
    other = agent.agent_environment(agent_spec({"PORTER_SUMMARY_FILE": "/etc/passwd"}),
                                    home="/h", prompt_file="/p", sandboxed=True,
                                    summary_file=where)
    assert writes["PORTER_SUMMARY_FILE"] == where
    assert "PORTER_SUMMARY_FILE" not in other


def test_home_files_are_written_inside_home(tmp_path: Path) -> None:
    agent.write_home_files(str(tmp_path), {".gemini/settings.json": '{"a":1}\n', "top": "t"})
    assert (tmp_path / ".gemini" / "settings.json").read_text() == '{"a":1}\n'
    assert (tmp_path / "top").read_text() == "t"
    assert (tmp_path / ".gemini").stat().st_mode & 0o077 == 0


def test_the_summary_file_is_read_as_untrusted(tmp_path: Path) -> None:
    final = tmp_path / "final.txt"
    assert agent.read_summary_file(str(final)) is None  # never written
    final.write_bytes(b"Fixed it.\n\xff")
    assert agent.read_summary_file(str(final)) == "Fixed it.\n\ufffd"
    final.write_text("x" * (agent.MAX_SUMMARY_FILE_BYTES + 10))
    assert len(agent.read_summary_file(str(final)) or "") == agent.MAX_SUMMARY_FILE_BYTES
    secret = tmp_path / "secret"
    secret.write_text("entrypoint's own file")
    link = tmp_path / "link.txt"
    link.symlink_to(secret)
    assert agent.read_summary_file(str(link)) is None  # not through a symlink
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert agent.read_summary_file(str(fifo)) is None  # nor a pipe that would hang the read
    assert agent.read_summary_file(str(tmp_path)) is None


# -- progress ------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_only_a_new_line_is_progress() -> None:
    clock = Clock()
    seen = progress.Progress(clock)
    clock.now = 10
    seen.feed("Reconnecting... 1/5\n")
    assert seen.idle_for() == 0
    clock.now = 20
    # The same line again, other numbers, colours, a half line: no progress.
    seen.feed("Reconnecting... 2/5\n\x1b[2mReconnecting...   3/5\x1b[0m\nwaiting for ")
    assert seen.idle_for() == 10
    clock.now = 30
    seen.feed("network\n")  # the half line finished: new
    assert seen.idle_for() == 0
    clock.now = 45
    seen.feed("\n\n   \n")
    assert seen.idle_for() == 15


def test_progress_memory_is_bounded() -> None:
    clock = Clock()
    seen = progress.Progress(clock)
    seen.feed("".join(f"line {chr(65 + i % 26)}{chr(65 + i // 26 % 26)}{i // 676}\n"
                      for i in range(progress.MAX_SEEN + 100)))
    assert len(seen._seen) <= progress.MAX_SEEN
    clock.now = 5
    seen.feed("x" * (progress.MAX_PARTIAL + 1))  # a line that never ends still counts
    assert seen.idle_for() == 0 and seen._partial == ""
