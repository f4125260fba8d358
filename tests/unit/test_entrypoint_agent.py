"""The agent's environment and how its processes are started
(container/porter_entrypoint/agent.py, and the Jail in sandbox.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fakes.entrypoint_module import load

agent = load("agent")
sandbox = load("sandbox")
spec = load("spec")

SHA = "0123456789abcdef0123456789abcdef01234567"


def agent_spec(env: dict[str, str] | None = None) -> Any:
    return spec.parse_spec({
        "clone_url": "https://github.com/octo/hello.git", "base_sha": SHA, "prompt": "Fix it",
        "agent": {"name": "goose", "argv": ["goose", "run"], "env": env or {}},
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
