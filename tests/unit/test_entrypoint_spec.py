"""The entrypoint's configuration: its environment, the runner's arguments and the run spec
(container/porter_entrypoint/spec.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes.entrypoint_module import load

spec = load("spec")

SHA = "0123456789abcdef0123456789abcdef01234567"
ENV = {
    "PORTER_URL": "https://porter.example/",
    "PORTER_RUN_ID": "r_01abc.def-9",
    "PORTER_RUN_TOKEN": "prt_runtoken_0123456789",
}


def raw_spec(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "task_id": 7,
        "repo": "octo/hello",
        "clone_url": "https://github.com/octo/hello.git",
        "clone_token": "ghs_read",
        "base_ref": "main",
        "base_sha": SHA,
        "agent": {"name": "claude", "argv": ["claude", "-p"], "env": {"KEY": "v"},
                  "output": "claude-json"},
        "prompt": "Fix it",
        "limits": {},
    }
    raw.update(changes)
    return raw


# -- parse_spec -------------------------------------------------------------------------------


def test_a_full_spec_is_read_with_the_documented_defaults_for_missing_limits() -> None:
    parsed = spec.parse_spec(raw_spec())
    assert (parsed.task_id, parsed.repo, parsed.clone_token, parsed.base_ref) == (
        7, "octo/hello", "ghs_read", "main")
    assert parsed.agent == spec.AgentSpec(name="claude", argv=["claude", "-p"],
                                          env={"KEY": "v"}, output="claude-json")
    assert parsed.limits == spec.Limits(
        agent_timeout_s=3000.0, heartbeat_interval_s=15.0, max_changeset_bytes=10 << 20,
        log_chunk_bytes=16384, clone_timeout_s=900.0, callback_backoff_s=None,
        complete_deadline_s=None)


def test_optional_fields_fall_back_to_what_the_entrypoint_can_still_use() -> None:
    parsed = spec.parse_spec(raw_spec(
        task_id=None, repo=None, clone_token=None, base_ref=None, limits=None,
        agent={"argv": ["aider", "--yes"]}))
    assert (parsed.repo, parsed.clone_token, parsed.base_ref) == ("", "", "")
    assert parsed.agent == spec.AgentSpec(name="aider", argv=["aider", "--yes"], env={},
                                          output="text")
    assert parsed.limits.agent_timeout_s == 3000.0


def test_limits_are_taken_as_floats_and_the_log_chunk_never_below_1_kib() -> None:
    parsed = spec.parse_spec(raw_spec(limits={
        "agent_timeout_s": 60, "heartbeat_interval_s": 0.5, "max_changeset_bytes": 2048,
        "log_chunk_bytes": 10, "clone_timeout_s": 30, "callback_backoff_s": 0.05,
        "complete_deadline_s": 5,
    }))
    assert parsed.limits == spec.Limits(
        agent_timeout_s=60.0, heartbeat_interval_s=0.5, max_changeset_bytes=2048,
        log_chunk_bytes=1024, clone_timeout_s=30.0, callback_backoff_s=0.05,
        complete_deadline_s=5.0)


def test_a_sha256_base_commit_is_a_full_commit_id() -> None:
    assert spec.parse_spec(raw_spec(base_sha="a" * 64)).base_sha == "a" * 64


@pytest.mark.parametrize(("changes", "field"), [
    ({"agent": None}, "agent"),
    ({"agent": {"argv": "claude -p"}}, "agent.argv"),
    ({"agent": {"argv": []}}, "agent.argv"),
    ({"agent": {"argv": ["claude", ""]}}, "agent.argv"),
    ({"agent": {"argv": ["claude"], "env": {"KEY": 1}}}, "agent.env"),
    ({"agent": {"argv": ["claude"], "env": ["KEY=v"]}}, "agent.env"),
    ({"limits": [1]}, "limits"),
    ({"limits": {"agent_timeout_s": 0}}, "limits.agent_timeout_s"),
    ({"limits": {"agent_timeout_s": -1}}, "limits.agent_timeout_s"),
    ({"limits": {"max_changeset_bytes": True}}, "limits.max_changeset_bytes"),
    ({"limits": {"clone_timeout_s": "60"}}, "limits.clone_timeout_s"),
    ({"base_sha": None}, "base_sha"),
    ({"base_sha": "main"}, "base_sha"),
    ({"base_sha": SHA.upper()}, "base_sha"),
    ({"base_sha": SHA[:12]}, "base_sha"),
    ({"clone_url": None}, "clone_url"),
    ({"clone_url": "--upload-pack=touch /tmp/x"}, "clone_url"),
    ({"prompt": None}, "prompt"),
])
def test_a_malformed_spec_is_refused_naming_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"spec field {field}\b"):
        spec.parse_spec(raw_spec(**changes))


# -- load_config and the runner's arguments ----------------------------------------------------


def test_the_configuration_comes_from_three_variables_and_the_knobs() -> None:
    config = spec.load_config({**ENV, "PORTER_CALLBACK_BACKOFF_S": "0.05",
                               "PORTER_COMPLETE_DEADLINE_S": " 30 ", "PORTER_KILL_GRACE_S": "0",
                               "PORTER_KEEP_WORKSPACE": "1"}, [])
    assert (config.porter_url, config.run_id, config.run_token) == (
        "https://porter.example", "r_01abc.def-9", "prt_runtoken_0123456789")
    assert (config.backoff_s, config.complete_deadline_s, config.kill_grace_s) == (0.05, 30.0, 0.0)
    assert config.keep_workspace is True
    assert (config.workdir, config.agent_pidfile) == (None, None)


def test_knobs_left_out_take_their_defaults() -> None:
    config = spec.load_config(dict(ENV), [])
    assert (config.backoff_s, config.complete_deadline_s, config.kill_grace_s) == (None, None, 10.0)
    assert config.keep_workspace is False
    assert config.sandbox is not None


@pytest.mark.parametrize(("environ", "message"), [
    ({}, "missing environment: PORTER_URL, PORTER_RUN_ID, PORTER_RUN_TOKEN"),
    ({**ENV, "PORTER_RUN_TOKEN": ""}, "missing environment: PORTER_RUN_TOKEN"),
    ({**ENV, "PORTER_URL": "file:///etc/passwd"}, "PORTER_URL must be an http(s) URL"),
    ({**ENV, "PORTER_RUN_ID": "../r1"}, "PORTER_RUN_ID has unexpected characters"),
    ({**ENV, "PORTER_KILL_GRACE_S": "soon"}, "PORTER_KILL_GRACE_S must be a number"),
    ({**ENV, "PORTER_CALLBACK_BACKOFF_S": "-1"}, "PORTER_CALLBACK_BACKOFF_S must not be negative"),
])
def test_a_machine_started_without_what_it_needs_is_told_what_is_wrong(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(spec.ConfigError) as raised:
        spec.load_config(environ, [])
    assert str(raised.value) == message


def test_the_workdir_argument_wins_over_the_environment() -> None:
    environ = {**ENV, "PORTER_WORKDIR": "/var/env"}
    assert spec.load_config(environ, []).workdir == "/var/env"
    assert spec.load_config(environ, ["--porter-workdir=/srv/arg"]).workdir == "/srv/arg"
    assert spec.load_config(environ, ["--porter-workdir="]).workdir == "/var/env"
    assert spec.load_config(dict(ENV), ["--porter-workdir="]).workdir is None


def test_the_agent_pidfile_is_where_the_local_runner_asked() -> None:
    argv = ["--porter-run=r1", "--porter-agent-pidfile=/tmp/runs/r1.agent"]
    assert spec.load_config(dict(ENV), argv).agent_pidfile == "/tmp/runs/r1.agent"
    assert spec.load_config(dict(ENV), ["--porter-agent-pidfile="]).agent_pidfile is None


def test_flag_value_is_the_first_given() -> None:
    argv = ["--porter-run=r1", "--porter-workdir=/a", "--porter-workdir=/b"]
    assert spec.flag_value(argv, "--porter-workdir=") == "/a"
    assert spec.flag_value(argv, "--porter-agent-pidfile=") is None


def test_the_sandbox_policy_collects_read_only_and_hidden_paths_in_order() -> None:
    policy = spec.sandbox_policy(["--porter-run=r1", "--porter-sandbox-ro=/opt/aider",
                                  "--porter-sandbox-hide=/srv/porter/data",
                                  "--porter-sandbox-ro=/srv/cli"])
    assert policy.read_only == ("/opt/aider", "/srv/cli")
    assert policy.hidden == ("/srv/porter/data",)
    assert policy.bwrap.endswith("bwrap")


def test_no_sandbox_only_when_told_so() -> None:
    assert spec.sandbox_policy([]) is not None
    assert spec.sandbox_policy(["--porter-sandbox-ro=/opt", "--porter-unsandboxed"]) is None
    assert spec.load_config(dict(ENV), ["--porter-unsandboxed"]).sandbox is None


@pytest.mark.parametrize("arg", ["--porter-sandbox-ro=opt/aider", "--porter-sandbox-hide=data",
                                 "--porter-sandbox-ro="])
def test_relative_sandbox_paths_are_refused(arg: str) -> None:
    with pytest.raises(spec.ConfigError, match="sandbox paths must be absolute"):
        spec.sandbox_policy([arg])


# -- the agent's gateway wiring ------------------------------------------------------------------


def gateway_agent(**fields: Any) -> dict[str, Any]:
    return {"name": "codex", "argv": ["sh", "-c", "codex"], "output": "text",
            "env": {"CODEX_API_KEY": "plt_run.mac-of-the-run", "MODEL": "gpt-5-codex-mini",
                    "OPENAI_BASE_URL": "https://porter.example/llm/openai/v1"},
            **fields}


def test_the_agents_home_files_summary_file_and_stall_limit_are_read() -> None:
    parsed = spec.parse_spec(raw_spec(agent=gateway_agent(
        public_env=["MODEL", "OPENAI_BASE_URL"], summary_file=True, idle_timeout_s=900,
        home_files={".gemini/settings.json": "{}\n", "a/b/c.txt": "x"})))
    assert parsed.agent.home_files == {".gemini/settings.json": "{}\n", "a/b/c.txt": "x"}
    assert (parsed.agent.summary_file, parsed.agent.idle_timeout_s) == (True, 900.0)
    # Only the credential is a secret: base URLs and models stay readable in the logs.
    assert parsed.agent.secrets == ["plt_run.mac-of-the-run"]


def test_without_public_env_every_env_value_is_a_secret() -> None:
    parsed = spec.parse_spec(raw_spec(agent=gateway_agent(summary_file="yes")))
    assert sorted(parsed.agent.secrets) == sorted(gateway_agent()["env"].values())
    assert (parsed.agent.home_files, parsed.agent.summary_file,
            parsed.agent.idle_timeout_s) == ({}, False, None)


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside", "a/../../b", "a//b", "./a", "",
                                  "a/", "x\0y"])
def test_a_home_file_outside_home_is_refused(path: str) -> None:
    with pytest.raises(ValueError, match=r"agent\.home_files"):
        spec.parse_spec(raw_spec(agent=gateway_agent(home_files={path: "x"})))


@pytest.mark.parametrize("agent", [
    gateway_agent(home_files={"a": 1}),
    gateway_agent(home_files={"a": "x" * (spec.MAX_HOME_FILE_BYTES + 1)}),
    gateway_agent(home_files={f"f{i}": "" for i in range(spec.MAX_HOME_FILES + 1)}),
    gateway_agent(home_files=["a"]),
    gateway_agent(public_env="MODEL"),
    gateway_agent(idle_timeout_s=0),
    gateway_agent(idle_timeout_s=True),
], ids=["not-text", "too-big", "too-many", "not-a-map", "public-not-a-list", "idle-zero",
        "idle-bool"])
def test_malformed_gateway_fields_are_refused(agent: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"spec field agent\."):
        spec.parse_spec(raw_spec(agent=agent))
