"""git's environment and the clone token's header (container/porter_entrypoint/git.py)."""

from __future__ import annotations

import base64
import os

import pytest

from tests.fakes.entrypoint_module import load

git = load("git")
processes = load("processes")


def test_git_gets_a_minimal_environment_with_no_prompts_and_no_global_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/opt/bin:/usr/bin")
    monkeypatch.setenv("PORTER_RUN_TOKEN", "prt_must_not_reach_git")
    env = git.git_env(home="/tmp/run/home")
    assert env == {
        "PATH": "/opt/bin:/usr/bin",
        "HOME": "/tmp/run/home",
        "LANG": "C.UTF-8",
        "GIT_TERMINAL_PROMPT": "0",
        "GCM_INTERACTIVE": "never",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ALLOW_PROTOCOL": "http:https:file",
        "GIT_CONFIG_COUNT": "0",
    }


def test_without_a_path_git_gets_the_default_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PATH", raising=False)
    assert git.git_env(home="/h")["PATH"] == processes.DEFAULT_PATH


def test_config_is_passed_as_numbered_variables_never_as_arguments() -> None:
    env = git.git_env(home="/h", extra_config={"core.hooksPath": "/dev/null",
                                               "core.fsmonitor": "false"})
    assert env["GIT_CONFIG_COUNT"] == "2"
    assert (env["GIT_CONFIG_KEY_0"], env["GIT_CONFIG_VALUE_0"]) == ("core.hooksPath", "/dev/null")
    assert (env["GIT_CONFIG_KEY_1"], env["GIT_CONFIG_VALUE_1"]) == ("core.fsmonitor", "false")


def test_the_clone_token_becomes_a_basic_authorization_header() -> None:
    header = git.auth_header("ghs_clonetoken")
    assert list(header) == ["http.extraHeader"]
    scheme, _, encoded = header["http.extraHeader"].removeprefix("Authorization: ").partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(encoded) == b"x-access-token:ghs_clonetoken"
    env = git.git_env(home="/h", extra_config=header)
    assert env["GIT_CONFIG_KEY_0"] == "http.extraHeader"
    assert "ghs_clonetoken" not in " ".join(env.values())  # only its base64 form is there


def test_no_token_no_header() -> None:
    assert git.auth_header("") == {}
