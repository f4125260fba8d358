from __future__ import annotations

from pathlib import Path

import pytest

from porter.errors import ConfigError
from porter.settings import SETTINGS, Settings, parse_dotenv, settings_fields


def test_defaults_need_nothing() -> None:
    settings = Settings.from_mapping({})
    assert settings.database == Path("porter.db")
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.effective_runner == "local"
    assert settings.missing()["webhooks"] == ["PORTER_GITHUB_WEBHOOK_SECRET"]


def test_table_and_settings_object_agree() -> None:
    assert {s.field for s in SETTINGS} == settings_fields()
    defaults = Settings()
    for setting in SETTINGS:
        assert getattr(defaults, setting.field) == setting.default, setting.name


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
