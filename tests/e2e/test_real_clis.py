"""The real agent CLIs, end to end through the LLM gateway: keys never enter the machine.

A real `porter serve`, the fake GitHub on real git, the local runner's bubblewrap sandbox, and
the real Claude Code and Aider, installed from npm and PyPI into a cache directory
(tests/fakes/cli_install.py), each pointed by Porter at its gateway route. Upstream of the
gateway is the fake provider (tests/fakes/llm_provider.py), scripted (tests/fakes/model_scripts.py)
to make the CLI write hello.txt. The operator's key is unique to the test; it must reach the
provider, and nothing of the machine: not the spec, not the environment of any of its
processes, not a file under the runner's directory (the agent's HOME and tmp, the checkout, the
prompt, the machine's log), not what Porter shows. A test skips only when the registry cannot
be reached (or, off CI, when npm or uv is missing).
"""

from __future__ import annotations

import secrets
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from porter.agents import BUILTINS
from tests.e2e.machine_watch import KeyTraces, MachineWatch, scan
from tests.e2e.stack import REPO, Stack
from tests.fakes.cli_install import InstalledCLI, install_aider, install_claude, require
from tests.fakes.llm_provider import FakeProvider, Recorded
from tests.fakes.model_scripts import AiderWrites, ClaudeWrites, push_all
from tests.fakes.sandbox import READ_ONLY_SETTING, needs_bwrap

pytestmark = needs_bwrap

TEXT = "Hello from a real agent, through Porter's gateway.\n"
# The run's three variables and the host's PATH (porter/runners/local.py): no secret of Porter's.
MACHINE_ENV = {"PORTER_URL", "PORTER_RUN_ID", "PORTER_RUN_TOKEN", "PATH"}
# The clone is held this long, so the test fetches the spec in the window the server serves it
# (from the machine's start until its agent starts), as the machine itself did.
CLONE_HOLD_S = 5.0
RUN_TIMEOUT_S = 180.0


@pytest.fixture(scope="module")
def claude() -> InstalledCLI:
    return require(install_claude)


@pytest.fixture(scope="module")
def aider() -> InstalledCLI:
    return require(install_aider)


@pytest.fixture
def provider() -> Iterator[tuple[FakeProvider, str]]:
    fake = FakeProvider()
    with fake.serve() as url:
        yield fake, url


def command_for(name: str, executable: Path) -> str:
    """The built-in agent's own command line with its CLI at `executable` instead of on PATH
    (the sandbox's PATH is the system's), for PORTER_AGENT_<NAME>_COMMAND: the agent keeps
    every flag, key, base URL and output setting of the built-in."""
    [agent] = [a for a in BUILTINS if a.name == name]
    argv = list(agent.argv)
    if argv[0] == name:
        argv[0] = str(executable)
    else:  # an `sh -c SCRIPT NAME` wrapper, whose script execs the CLI by name
        script = argv[2].replace(f"exec {name} ", f"exec {shlex.quote(str(executable))} ")
        assert script != argv[2], f"the {name} wrapper no longer execs `{name} `: {argv[2]!r}"
        argv[2] = script
    return shlex.join(argv)


def stack_for(tmp_path: Path, cli: InstalledCLI, upstream: dict[str, str]) -> Stack:
    stack = Stack(tmp_path, env={
        **upstream,
        f"PORTER_AGENT_{cli.name.upper()}_COMMAND": command_for(cli.name, cli.executable),
        "PORTER_SANDBOX_READ_ONLY_PATHS": ":".join([READ_ONLY_SETTING, *cli.read_only]),
    })
    stack.fake.delay("GET", rf"/{REPO}\.git/info/refs", CLONE_HOLD_S)
    return stack


def real_key(prefix: str) -> str:
    return prefix + secrets.token_hex(24)


@dataclass(frozen=True)
class Machine:
    env: dict[str, str]  # the entrypoint's whole environment
    spec_bytes: bytes  # the spec, as served
    spec: dict[str, Any]

    @property
    def run_token(self) -> str:
        return self.env["PORTER_RUN_TOKEN"]


def spec_while_cloning(stack: Stack, watch: MachineWatch) -> Machine:
    """The machine's environment, and its spec fetched with its own credentials while its
    clone is held: the same answer the machine got (the entrypoint keeps no copy of it)."""
    env = stack.wait_for(watch.entrypoint_env, timeout=60, what="the machine to start")
    assert set(env) == MACHINE_ENV, f"the machine's environment holds {sorted(env)}"
    response = httpx.get(f"{env['PORTER_URL']}/api/runs/{env['PORTER_RUN_ID']}/spec",
                         headers={"Authorization": f"Bearer {env['PORTER_RUN_TOKEN']}"},
                         timeout=10)
    assert response.status_code == 200, response.text
    return Machine(env, response.content, response.json())


def pull_files(stack: Stack) -> dict[str, bytes]:
    """What the task's pull request changes: path -> new content."""
    [pull] = stack.fake.pulls(REPO)
    base = stack.fake.read_tree(REPO, stack.fake.ref_sha(REPO, "heads/main") or "")
    head = stack.fake.read_tree(REPO, stack.fake.ref_sha(REPO, f"heads/{pull.head_ref}") or "")
    return {p: head[p][1] for p in head if base.get(p) != head[p]}


def what_porter_shows(stack: Stack, task_id: int) -> dict[str, Any]:
    return {
        "the task": stack.task(task_id),
        "the task's logs": stack.logs(task_id),
        "the comments": [c.body for c in stack.fake.comments(REPO, stack.issue.number)],
        "the pull request": [(p.title, p.body) for p in stack.fake.pulls(REPO)],
        "the pull request's files": pull_files(stack),
    }


def assert_upstream_got_only_the_real_key(calls: list[Recorded], header: str, expected: str,
                                          *, not_sent: list[str]) -> None:
    """Every model call carried the real key where the provider reads it, and no call carried
    the run's gateway token or callback token anywhere."""
    assert calls, "the provider received no model call"
    for call in calls:
        assert call.headers.get(header) == expected, (call.path, header)
        everything = repr(call.headers).encode() + call.body
        for token in not_sent:
            assert token.encode() not in everything, (call.path, token[:8])
        assert b"plt_" not in repr(call.headers).encode(), call.headers


def assert_gateway_token_dead(stack: Stack, provider: FakeProvider, route: str,
                              headers: dict[str, str], body: dict[str, Any]) -> None:
    """Once the run is over its gateway token opens nothing, and nothing is forwarded."""
    before = len(provider.requests)
    response = httpx.post(f"{stack.url}{route}", headers=headers, json=body, timeout=10)
    assert response.status_code == 401, response.text
    assert len(provider.requests) == before


def assert_no_trace(key: str, watch: MachineWatch, spec: bytes, shown: dict[str, Any], *,
                    agent_home: str) -> None:
    """No trace of the key anywhere the watch looked, in the spec, or in what Porter shows;
    and the watch did look where the key could have gone: the agent's own files in its HOME
    (`agent_home`, e.g. ".claude"), its checkout, the machine's log."""
    traces = KeyTraces(key)
    assert watch.seen.leaks == [], watch.seen.leaks
    assert traces.find(spec) == [], "the spec holds the key"
    assert scan(traces, shown) == []
    home = watch.files_in("home")
    assert any(p.startswith(f"home/{agent_home}") for p in home), home
    assert "work/hello.txt" in watch.files_in("work"), watch.files_in("work")
    assert any(p.endswith(".log") for p in watch.seen.files), sorted(watch.seen.files)


def test_claude_code_writes_a_file_through_the_gateway_and_never_holds_the_key(
    tmp_path: Path, claude: InstalledCLI, provider: tuple[FakeProvider, str],
) -> None:
    fake, upstream = provider
    key = real_key("sk-ant-api03-")
    script = ClaudeWrites("hello.txt", TEXT, summary="Wrote hello.txt.", hold_final=True)
    push_all(fake, "anthropic", script)
    stack = stack_for(tmp_path, claude, {"PORTER_LLM_ANTHROPIC_URL": upstream,
                                         "PORTER_SECRET_ANTHROPIC_API_KEY": key})
    try:
        with stack, MachineWatch(tmp_path / "runs", KeyTraces(key)) as watch:
            task_id = stack.comment("@porter claude write hello.txt").json()["task_id"]
            machine = spec_while_cloning(stack, watch)
            # Claude Code has written the file and waits for its last answer: it is running.
            stack.wait_for(script.final_gate.reached.is_set, timeout=RUN_TIMEOUT_S,
                           what="Claude Code's last model call")
            watch.sweep()
            agent_env = watch.env_of(str(claude.executable))
            script.final_gate.release()
            task = stack.wait(task_id, timeout=RUN_TIMEOUT_S)
            assert task["state"] == "succeeded", (task, stack.logs(task_id))
            shown = what_porter_shows(stack, task_id)
            gateway_token = machine.spec["agent"]["env"]["ANTHROPIC_API_KEY"]
            assert_gateway_token_dead(
                stack, fake, "/llm/anthropic/v1/messages",
                {"x-api-key": gateway_token, "anthropic-version": "2023-06-01"},
                {"model": "claude-sonnet-4-5", "max_tokens": 8,
                 "messages": [{"role": "user", "content": "hi"}]})
    finally:
        script.final_gate.release()

    assert pull_files(stack) == {"hello.txt": TEXT.encode()}
    assert script.seen[-2:] == ["write", "final"], script.seen
    assert "File created successfully" in str(script.tool_results[-1])

    run_token = machine.run_token
    assert gateway_token.startswith("plt_") and gateway_token != run_token
    assert machine.spec["agent"]["env"]["ANTHROPIC_BASE_URL"] == f"{stack.url}/llm/anthropic"
    assert agent_env is not None, "the watch never saw Claude Code running"
    assert agent_env["ANTHROPIC_API_KEY"] == gateway_token
    assert agent_env["ANTHROPIC_BASE_URL"] == f"{stack.url}/llm/anthropic"
    assert not any(run_token in value for value in agent_env.values())

    messages = [c for c in fake.requests if c.path == "/v1/messages"]
    assert len(messages) >= 2
    assert_upstream_got_only_the_real_key(messages, "x-api-key", key,
                                          not_sent=[gateway_token, run_token])
    assert all("authorization" not in c.headers for c in messages)
    assert_no_trace(key, watch, machine.spec_bytes, shown, agent_home=".claude")


def test_aider_writes_a_file_through_the_gateway_and_never_holds_the_key(
    tmp_path: Path, aider: InstalledCLI, provider: tuple[FakeProvider, str],
) -> None:
    fake, upstream = provider
    key = real_key("sk-proj-")
    script = AiderWrites("hello.txt", TEXT)
    push_all(fake, "chat", script)
    stack = stack_for(tmp_path, aider, {"PORTER_LLM_OPENAI_URL": upstream,
                                        "PORTER_SECRET_OPENAI_API_KEY": key})
    with stack, MachineWatch(tmp_path / "runs", KeyTraces(key)) as watch:
        task_id = stack.comment("@porter aider --model gpt-4o write hello.txt").json()["task_id"]
        machine = spec_while_cloning(stack, watch)
        task = stack.wait(task_id, timeout=RUN_TIMEOUT_S)
        assert task["state"] == "succeeded", (task, stack.logs(task_id))
        shown = what_porter_shows(stack, task_id)
        gateway_token = machine.spec["agent"]["env"]["OPENAI_API_KEY"]
        assert_gateway_token_dead(
            stack, fake, "/llm/openai/v1/chat/completions",
            {"authorization": f"Bearer {gateway_token}"},
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})

    assert pull_files(stack) == {"hello.txt": TEXT.encode()}
    assert script.seen == ["diff"], script.seen  # gpt-4o: SEARCH/REPLACE blocks

    run_token = machine.run_token
    base_url = f"{stack.url}/llm/openai/v1"
    assert gateway_token.startswith("plt_") and gateway_token != run_token
    assert machine.spec["agent"]["env"]["OPENAI_API_BASE"] == base_url
    # Aider runs for seconds (most of it starting up): the watch, sweeping every 50 ms, saw it.
    agent_env = watch.env_of(str(aider.executable))
    assert agent_env is not None, "the watch never saw Aider running"
    assert agent_env["OPENAI_API_KEY"] == gateway_token
    assert agent_env["OPENAI_API_BASE"] == base_url
    assert not any(run_token in value for value in agent_env.values())

    completions = [c for c in fake.requests if c.path == "/v1/chat/completions"]
    assert len(completions) == 1
    assert_upstream_got_only_the_real_key(completions, "authorization", f"Bearer {key}",
                                          not_sent=[gateway_token, run_token])
    assert all("x-api-key" not in c.headers for c in completions)
    assert_no_trace(key, watch, machine.spec_bytes, shown, agent_home=".aider")
