from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from porter.errors import ConfigError
from porter.settings import CAPABILITIES, SETTINGS, Settings, parse_dotenv


def test_defaults_need_nothing() -> None:
    settings = Settings.from_mapping({})
    assert settings.database == Path("porter.db")
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.effective_runner == "local"
    assert settings.missing()["webhooks"] == ["PORTER_GITHUB_WEBHOOK_SECRET"]


def test_the_table_is_read_from_the_declaration() -> None:
    by_name = {s.name: s for s in SETTINGS}
    assert by_name["PORTER_PORT"].field == "port"
    assert by_name["PORTER_PORT"].default == Settings().port == 8000
    assert by_name["PORTER_ADMIN_TOKEN"].secret
    # Fields filled from patterned names (PORTER_AGENT_<NAME>_COMMAND, ...) have no name of
    # their own; every other field is a setting.
    patterned = {"agent_commands", "agent_keys", "agent_dialects", "agent_secrets",
                 "unknown_names"}
    assert {s.field for s in SETTINGS} == {f.name for f in fields(Settings)} - patterned


def test_every_capability_needs_declared_settings() -> None:
    declared = {s.field for s in SETTINGS}
    for capability in CAPABILITIES:
        assert {name for either in capability.needs for name in either} <= declared


def test_the_private_key_is_needed_as_text_or_as_a_file() -> None:
    need = "PORTER_GITHUB_PRIVATE_KEY or PORTER_GITHUB_PRIVATE_KEY_FILE"
    assert Settings.from_mapping({}).missing()["github"] == ["PORTER_GITHUB_APP_ID", need]
    for name in ("PORTER_GITHUB_PRIVATE_KEY", "PORTER_GITHUB_PRIVATE_KEY_FILE"):
        settings = Settings.from_mapping({"PORTER_GITHUB_APP_ID": "1", name: "x"})
        assert settings.missing()["github"] == []


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("PORTER_PORT", "eighty", "PORTER_PORT: expected a port number"),
        ("PORTER_PORT", "70000", "PORTER_PORT: expected a port number"),
        ("PORTER_PUBLIC_URL", "porter.example.com", "PORTER_PUBLIC_URL: expected an http"),
        ("PORTER_RUNNER", "k8s", "PORTER_RUNNER: expected one of fly, local"),
        ("PORTER_TASK_TIMEOUT", "-5", "PORTER_TASK_TIMEOUT: expected a whole number"),
        ("PORTER_ALLOW_WORKFLOW_CHANGES", "maybe", "expected true or false"),
        ("PORTER_MENTION", "por ter", "PORTER_MENTION: expected a GitHub handle"),
    ],
)
def test_bad_values_name_the_setting_and_what_is_expected(
    name: str, value: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_mapping({name: value})
    assert expected in caught.value.message
    assert len(caught.value.message.splitlines()) == 1


def test_a_bad_secret_value_is_never_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_mapping({"PORTER_AGENT_X_COMMAND": "'unbalanced sk-ant-secret"})
    assert "sk-ant-secret" not in caught.value.message


def test_secrets_print_masked() -> None:
    settings = Settings.from_mapping({"PORTER_GITHUB_WEBHOOK_SECRET": "hunter2-hunter2"})
    assert "hunter2" not in repr(settings)
    assert settings.github_webhook_secret is not None
    assert settings.github_webhook_secret.get() == "hunter2-hunter2"


def test_agent_commands_are_split_like_a_shell() -> None:
    settings = Settings.from_mapping({
        "PORTER_AGENT_SCRIPTED_COMMAND": "python3 agent.py --say 'two words'",
    })
    assert settings.agent_commands == {"scripted": ("python3", "agent.py", "--say", "two words")}


def test_fly_token_switches_the_runner_and_its_needs() -> None:
    settings = Settings.from_mapping({"PORTER_FLY_API_TOKEN": "fm2_x",
                                      "PORTER_AGENT_IMAGE": "registry.fly.io/agents:1"})
    assert settings.effective_runner == "fly"
    assert settings.missing()["fly"] == ["PORTER_FLY_APP"]


def test_unknown_names_get_a_suggestion() -> None:
    settings = Settings.from_mapping({"PORTER_GITHUB_WEBHOOK_SECRT": "x"})
    assert settings.suggestions() == [
        "PORTER_GITHUB_WEBHOOK_SECRT is not a Porter setting; "
        "did you mean PORTER_GITHUB_WEBHOOK_SECRET?"
    ]


def test_dotenv() -> None:
    text = """
# comment
export PORTER_PORT=9000
PORTER_MENTION="robot"
PORTER_HOST='localhost'
PORTER_FLY_REGION=ams # trailing comment
"""
    assert parse_dotenv(text) == {
        "PORTER_PORT": "9000", "PORTER_MENTION": "robot", "PORTER_HOST": "localhost",
        "PORTER_FLY_REGION": "ams",
    }
    with pytest.raises(ConfigError, match="line 1"):
        parse_dotenv("not a setting")


def test_operator_secrets_and_agent_keys() -> None:
    settings = Settings.from_mapping({
        "PORTER_SECRET_ANTHROPIC_API_KEY": "sk-ant-canary",
        "PORTER_AGENT_SCRIPTED_COMMAND": "python3 agent.py",
        "PORTER_AGENT_SCRIPTED_KEYS": "anthropic_api_key, MY_TOKEN",
    })
    assert settings.agent_secrets["ANTHROPIC_API_KEY"].get() == "sk-ant-canary"
    assert "sk-ant-canary" not in repr(settings)
    assert settings.agent_keys == {"scripted": ("ANTHROPIC_API_KEY", "MY_TOKEN")}
    with pytest.raises(ConfigError, match="PORTER_AGENT_X_KEYS"):
        Settings.from_mapping({"PORTER_AGENT_X_KEYS": "not a name!"})
