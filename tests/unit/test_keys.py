"""Whose keys an agent gets (porter/keys.py): the requester's as a whole, else the operator's,
else a refusal that says what to add and where."""

from __future__ import annotations

import pytest

from porter.agents import BUILTINS
from porter.keys import AgentKeys, NoKeys, choose_fly, choose_keys, refusal

URL = "https://porter.example.com/settings"
KEYS = {agent.name: agent.key_names for agent in BUILTINS}


def choose(agent: str, requester: dict[str, str] | None,
           operator: dict[str, str]) -> AgentKeys | NoKeys:
    return choose_keys(agent, KEYS[agent], requester=requester, operator=operator,
                       settings_url=URL)


def test_the_requesters_keys_win_and_are_never_mixed_with_the_operators() -> None:
    chosen = choose("aider", {"OPENAI_API_KEY": "mine"},
                    {"ANTHROPIC_API_KEY": "theirs", "OPENAI_API_KEY": "theirs too"})
    assert chosen == AgentKeys("requester", {"OPENAI_API_KEY": "mine"})


def test_the_operators_keys_serve_a_requester_with_none_the_agent_takes() -> None:
    for requester in (None, {}, {"GEMINI_API_KEY": "mine", "ANTHROPIC_API_KEY": ""}):
        chosen = choose("claude", requester, {"ANTHROPIC_API_KEY": "theirs", "OTHER": "x"})
        assert chosen == AgentKeys("operator", {"ANTHROPIC_API_KEY": "theirs"})


def test_a_requester_cannot_supply_names_only_the_operator_sets() -> None:
    chosen = choose_keys("custom", ("MY_TOKEN",), requester={"MY_TOKEN": "mine"},
                         operator={}, settings_url=URL)
    assert chosen == NoKeys("No API key for custom: the operator needs to set "
                            "PORTER_SECRET_MY_TOKEN")


def test_an_agent_that_takes_no_key_needs_none() -> None:
    assert choose_keys("scripted", (), requester=None, operator={"X": "y"},
                       settings_url=URL) == AgentKeys("operator", {})


@pytest.mark.parametrize(("agent", "expected"), [
    ("claude", "add an Anthropic API key"),
    ("codex", "add an OpenAI API key"),
    ("gemini", "add a Gemini API key"),
    ("aider", "add an Anthropic API key or an OpenAI API key or a Gemini API key"),
])
def test_the_refusal_names_what_to_add_and_links_the_settings(agent: str,
                                                              expected: str) -> None:
    assert refusal(agent, KEYS[agent], URL) == f"No API key for {agent}: {expected} at {URL}"
    assert choose(agent, None, {}) == NoKeys(refusal(agent, KEYS[agent], URL))


def test_a_key_never_shows_in_a_repr() -> None:
    assert "secret-value" not in repr(AgentKeys("requester", {"K": "secret-value"}))


def test_fly_is_the_requesters_only_with_both_a_token_and_an_app() -> None:
    assert choose_fly("local", token="t", app="a") is None
    assert choose_fly("fly", token="t", app="a") == "requester"
    assert choose_fly("fly", token="t", app=None) == "operator"
    assert choose_fly("fly", token=None, app="a") == "operator"
