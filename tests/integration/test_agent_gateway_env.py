"""Every agent wired to the LLM gateway: what the spec hands the machine, and what the real
entrypoint then does with it.

First Porter whole and in-process (tests/fakes/world.py), the test playing the machine: for each
built-in agent the spec holds the run's gateway token where the CLI reads its key and base URLs
pointing at Porter, and no model key of the operator's or the requester's anywhere; an
operator's agent that speaks no dialect still gets its keys, and its task page says so.

Then the real entrypoint as a subprocess, in its sandbox, against a small fake Porter on
loopback, running Porter's own command lines for Codex, Aider and Gemini with stand-ins for
those CLIs (tests/fakes/agent_clis/) that print what the real ones printed (§E.2): Codex's
summary is its final message alone, a Codex that cannot reach its API is stopped, Aider's API
error is reported as such, and Gemini finds its settings file in HOME.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from porter.agent_wiring import Gateway
from porter.agents import BUILTIN_AGENTS, GEMINI_SETTINGS, Registry, agent_spec
from porter.settings import Settings
from porter.tokens import GATEWAY_SUBKEY, gateway_token
from tests.fakes.git_repo import bare_origin
from tests.fakes.sandbox import SANDBOX_ARGS, needs_bwrap
from tests.fakes.world import CANARY, PUBLIC_URL, World, open_world
from tests.settings_helpers import ALICE_KEY
from tests.settings_helpers import saved as saved_settings
from tests.web_helpers import signed_in

HTML = {"Accept": "text/html"}
# Shaped like no real key, so only knowing the value can find it.
OPERATOR = {
    "ANTHROPIC_API_KEY": "sk-op-anthropic-Rw7Ty2Kp9Lm4",
    "OPENAI_API_KEY": "sk-op-openai-Hd3Vb8Nq1Zx6",
    "GEMINI_API_KEY": "gm-op-gemini-Uj5Fc2Ws7Ea9",
}
ENV = {f"PORTER_SECRET_{name}": value for name, value in OPERATOR.items()}
DIRECT = "this agent received its api keys directly"


@pytest.fixture
async def world(tmp_path: Path, pem: str) -> AsyncIterator[World]:
    async with open_world(tmp_path, pem, env=ENV) as opened:
        yield opened


async def spec_for(world: World, body: str, number: int = 1) -> tuple[int, dict[str, Any], str]:
    """A task for `body`, its spec as the machine gets it, and the whole answer's text."""
    task_id = await world.request(body, number=number)
    await world.settle()
    answer = await (await world.machine(task_id)).spec()
    assert answer.status_code == 200, answer.text
    spec: dict[str, Any] = answer.json()
    return task_id, spec, answer.text


def expected_token(world: World, run_id: str) -> str:
    return gateway_token(world.runtime.keyring.derive(GATEWAY_SUBKEY), run_id)


# --- the spec --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTIN_AGENTS)
async def test_a_builtin_agents_spec_holds_the_gateway_token_and_no_model_key(
    world: World, name: str,
) -> None:
    task_id, spec, text = await spec_for(world, f"@porter {name} fix the typo")
    run = await world.run(task_id)

    assert not [key for key in OPERATOR.values() if key in text]
    token = expected_token(world, run.id)
    assert world.runtime.runs.gateway_token_for(run.id) == token
    agent = Registry.from_settings(world.settings).get(name)
    assert agent is not None
    env = spec["agent"]["env"]
    # The token where the CLI reads each key the run has, and the gateway's URLs beside it.
    assert {k: v for k, v in env.items() if v == token} == {
        k: token for k in agent.key_names if k in OPERATOR}
    urls = {k: v for k, v in env.items() if v.startswith(f"{PUBLIC_URL}/llm/")}
    assert urls and {base.env for base in agent.base_urls} == set(urls)
    # Neither the callback token nor the clone token is the agent's: only the spec's own fields.
    assert run.id not in json.dumps(env).replace(token, "")
    assert spec["clone_token"] not in json.dumps(spec["agent"])
    assert world.runtime.runs.token_for(run.id) not in json.dumps(spec["agent"])


async def test_the_requesters_own_key_never_reaches_the_spec_either(world: World) -> None:
    alice = await signed_in(world, "alice")
    await saved_settings(alice, ANTHROPIC_API_KEY=ALICE_KEY)
    task_id, spec, text = await spec_for(world, "@porter claude fix the typo")
    assert (await world.task(task_id)).key_source == "requester"
    assert ALICE_KEY not in text and OPERATOR["ANTHROPIC_API_KEY"] not in text
    run = await world.run(task_id)
    assert spec["agent"]["env"]["ANTHROPIC_API_KEY"] == expected_token(world, run.id)
    await alice.client.aclose()


async def test_the_gateway_token_is_scrubbed_from_what_the_machine_sends_back(
    world: World,
) -> None:
    task_id, _, _ = await spec_for(world, "@porter codex fix the typo")
    machine = await world.machine(task_id)
    token = expected_token(world, machine.run_id)
    await machine.log(0, f"calling the API with {token}\n")
    answer = await machine.complete({"status": "failed", "summary": f"key was {token}"})
    assert answer.status_code == 200, answer.text
    assert token not in await world.log_text(task_id)
    assert token not in ((await world.task(task_id)).summary or "")


# --- the task page ---------------------------------------------------------------------------


async def test_an_agent_without_a_dialect_gets_its_keys_and_its_task_page_says_so(
    world: World,
) -> None:
    # The world's own agent, `tester`, is the operator's: its key has no provider to route.
    direct_id, direct_spec, _ = await spec_for(world, "@porter fix the typo", number=1)
    assert direct_spec["agent"]["env"]["CANARY_KEY"] == CANARY
    routed_id, _, _ = await spec_for(world, "@porter claude fix the typo", number=2)
    alice = await signed_in(world, "alice")

    page = (await alice.client.get(f"/tasks/{direct_id}", headers=HTML)).text
    assert DIRECT in page.lower()
    assert "<code>CANARY_KEY</code>" in page and CANARY not in page
    routed = (await alice.client.get(f"/tasks/{routed_id}", headers=HTML)).text
    assert DIRECT not in routed.lower()
    await alice.client.aclose()


async def test_a_task_page_says_nothing_of_keys_before_the_machine_fetched_them(
    world: World,
) -> None:
    task_id = await world.request("@porter fix the typo")
    await world.settle()
    alice = await signed_in(world, "alice")
    page = (await alice.client.get(f"/tasks/{task_id}", headers=HTML)).text
    assert DIRECT not in page.lower()
    await alice.client.aclose()


async def test_an_operator_agent_with_a_dialect_gets_the_token_under_its_keys(
    tmp_path: Path, pem: str,
) -> None:
    env = {**ENV, "PORTER_AGENT_TESTER_KEYS": "ANTHROPIC_API_KEY",
           "PORTER_AGENT_TESTER_DIALECT": "anthropic"}
    async with open_world(tmp_path, pem, env=env) as world:
        task_id, spec, text = await spec_for(world, "@porter fix the typo")
        run = await world.run(task_id)
        assert OPERATOR["ANTHROPIC_API_KEY"] not in text
        assert spec["agent"]["env"] == {
            "ANTHROPIC_API_KEY": expected_token(world, run.id),
            "ANTHROPIC_BASE_URL": f"{PUBLIC_URL}/llm/anthropic",
            "PORTER_LLM_BASE_URL": f"{PUBLIC_URL}/llm/anthropic",
        }
        alice = await signed_in(world, "alice")
        page = (await alice.client.get(f"/tasks/{task_id}", headers=HTML)).text
        assert DIRECT not in page.lower()
        await alice.client.aclose()


# --- the real entrypoint, with stand-ins for the CLIs ----------------------------------------

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "container" / "porter_entrypoint"
CLIS = ROOT / "tests" / "fakes" / "agent_clis"
RUN_ID = "r0123456789abcdef0123"
RUN_TOKEN = "prt_callback-token-Kq8Xw3Zn5Rb1Tm6Yv"
GATEWAY_TOKEN = "plt_r0123456789abcdef0123.Gw4Hs9Jd2Lk7Pq1Ub6Nc3Vx8Ze5"
REAL_KEY = "sk-real-key-Bt5Mw2Qe8Rs4Yh7"
FINAL = "Fixed the typo in README.md: Teh is now The."
PROMPT = "Porter task: fix the typo in the README\n\nThe issue says Teh. Touch nothing else."
RUN_GUARD_S = 60


class FakePorter:
    """Porter's side of the machine's callbacks, on loopback: serves the spec, keeps the rest."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.sent: list[tuple[str, Any]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def completes(self) -> list[dict[str, Any]]:
        with self.lock:
            return [body for route, body in self.sent if route == "complete"]

    def everything(self) -> str:
        with self.lock:
            return json.dumps(self.sent)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self
        prefix = f"/api/runs/{RUN_ID}/"

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

            def _ours(self) -> bool:
                return (self.path.startswith(prefix)
                        and self.headers.get("Authorization") == f"Bearer {RUN_TOKEN}")

            def do_GET(self) -> None:
                if self._ours() and self.path == prefix + "spec":
                    self._send(200, fake.spec)
                else:
                    self._send(401, {"error": "no"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not self._ours():
                    self._send(401, {"error": "no"})
                    return
                with fake.lock:
                    fake.sent.append((self.path[len(prefix):], body))
                self._send(200, {"cancel": False, "accepted": True})

        return Handler


@pytest.fixture
def porter() -> Iterator[list[FakePorter]]:
    started: list[FakePorter] = []
    yield started
    for fake in started:
        fake.server.shutdown()
        fake.server.server_close()


def machine_spec(tmp_path: Path, name: str, porter_url: str, *, mode: str = "ok",
                 **agent_fields: Any) -> dict[str, Any]:
    """The spec Porter would serve for `name` (its real command line and wiring), cloning a
    local repository whose README has the typo."""
    bare, base_sha = bare_origin(tmp_path, {"README.md": b"# Hello\n\nTeh greeting project.\n"})
    agent = Registry.from_settings(Settings.from_mapping({})).get(name)
    assert agent is not None
    keys = {name: REAL_KEY for name in agent.key_names if name != "CODEX_API_KEY"}
    wired = agent_spec(agent, model=None, secrets=keys,
                       gateway=Gateway(porter_url, GATEWAY_TOKEN))
    wired["env"]["FAKE_CLI_MODE"] = mode
    wired.update(agent_fields)
    return {"task_id": 12, "run_id": RUN_ID, "attempt": 1, "repo": "octo/hello",
            "clone_url": bare.as_uri(), "clone_token": "", "base_ref": "main",
            "base_sha": base_sha, "agent": wired, "prompt": PROMPT,
            "limits": {"agent_timeout_s": 60, "heartbeat_interval_s": 0.5,
                       "max_changeset_bytes": 1 << 20, "log_chunk_bytes": 16384}}


def run_machine(tmp_path: Path, porter: list[FakePorter], name: str, **options: Any
                ) -> tuple[FakePorter, Path]:
    """Start the fake Porter with the spec for `name`, run the entrypoint to the end; the fake
    and the kept workspace."""
    fake = FakePorter({})
    porter.append(fake)
    fake.spec = machine_spec(tmp_path, name, fake.url, **options)
    workdir = tmp_path / "ws"
    workdir.mkdir()
    home = tmp_path / "entrypoint-home"
    home.mkdir()
    env = {
        # The stand-in CLIs, and a python3 for their #! line, as the sandbox shows them.
        "PATH": os.pathsep.join([str(CLIS), str(Path(sys.executable).parent),
                                 os.environ["PATH"]]),
        "HOME": str(home),
        "PORTER_URL": fake.url,
        "PORTER_RUN_ID": RUN_ID,
        "PORTER_RUN_TOKEN": RUN_TOKEN,
        "PORTER_WORKDIR": str(workdir),
        "PORTER_CALLBACK_BACKOFF_S": "0.05",
        "PORTER_KILL_GRACE_S": "2",
        "PORTER_KEEP_WORKSPACE": "1",
    }
    done = subprocess.run([sys.executable, str(ENTRYPOINT), *SANDBOX_ARGS], env=env,
                          capture_output=True, text=True, timeout=RUN_GUARD_S, check=False)
    assert done.returncode == 0, done.stderr
    [workspace] = workdir.glob("porter-run-*")
    return fake, workspace


def how_it_ran(workspace: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((workspace / "home" / "fake-cli-run.json").read_text())
    return data


def nothing_holds(workspace: Path, secret: str) -> None:
    """No file the entrypoint or the agent wrote in the run's workspace holds `secret`."""
    for path in workspace.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert secret.encode() not in path.read_bytes(), path


@needs_bwrap
def test_codex_reports_its_final_message_alone_through_its_summary_file(
    tmp_path: Path, porter: list[FakePorter],
) -> None:
    fake, workspace = run_machine(tmp_path, porter, "codex")

    [result] = fake.completes()
    assert result["status"] == "succeeded", result
    # Not the banner, not the prompt Codex echoed on stderr: the final message.
    assert result["summary"] == FINAL
    assert result["changeset"]["message"].startswith(FINAL)
    assert "Touch nothing else" not in result["summary"]
    ran = how_it_ran(workspace)
    argv, env = ran["argv"], ran["env"]
    assert argv[argv.index("--output-last-message") + 1] == "/tmp/porter-summary.txt"
    assert f'base_url="{fake.url}/llm/openai/v1"' in argv[argv.index("model_provider=porter") + 2]
    assert env["CODEX_API_KEY"] == env["OPENAI_API_KEY"] == GATEWAY_TOKEN
    assert RUN_TOKEN not in json.dumps(env)  # the callback token is the entrypoint's alone
    assert REAL_KEY not in fake.everything() and GATEWAY_TOKEN not in fake.everything()
    nothing_holds(workspace, REAL_KEY)
    nothing_holds(workspace / "work", GATEWAY_TOKEN)


@needs_bwrap
def test_a_codex_that_cannot_reach_its_api_is_stopped_as_stalled(
    tmp_path: Path, porter: list[FakePorter],
) -> None:
    # Porter gives Codex a quarter of an hour (tests/unit/test_agents.py); this run, 2 s.
    fake, _ = run_machine(tmp_path, porter, "codex", mode="stall", idle_timeout_s=2)

    [result] = fake.completes()
    assert result["status"] == "failed"
    assert result["error"]["message"].startswith(
        "the agent (codex) printed nothing new for 2 s and was stopped")
    assert "Touch nothing else" not in result["summary"]


@needs_bwrap
def test_aider_exiting_0_after_an_api_error_is_reported_as_that_error(
    tmp_path: Path, porter: list[FakePorter],
) -> None:
    fake, workspace = run_machine(tmp_path, porter, "aider", mode="api_error")

    [result] = fake.completes()
    assert (result["status"], result["exit_code"]) == ("failed", 0)
    assert result["error"] == {"stage": "agent", "message": (
        "the agent (aider) stopped on an API error: litellm.AuthenticationError: "
        'AnthropicException - {"type":"error","error":{"type":"authentication_error",'
        '"message":"invalid x-api-key"}}')}
    env = how_it_ran(workspace)["env"]
    assert env["OPENAI_API_BASE"] == f"{fake.url}/llm/openai/v1"
    assert env["ANTHROPIC_BASE_URL"] == f"{fake.url}/llm/anthropic"
    assert env["ANTHROPIC_API_KEY"] == GATEWAY_TOKEN


@needs_bwrap
def test_gemini_finds_its_settings_in_home_and_the_gateway_in_its_environment(
    tmp_path: Path, porter: list[FakePorter],
) -> None:
    fake, workspace = run_machine(tmp_path, porter, "gemini")

    [result] = fake.completes()
    assert result["status"] == "succeeded", result
    assert result["summary"] == FINAL
    ran = how_it_ran(workspace)
    assert ran["home_files"][".gemini/settings.json"] == GEMINI_SETTINGS
    assert ran["env"]["GEMINI_API_KEY"] == GATEWAY_TOKEN
    assert ran["env"]["GOOGLE_GEMINI_BASE_URL"] == f"{fake.url}/llm/gemini"
    nothing_holds(workspace, REAL_KEY)
