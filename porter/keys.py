"""Whose keys a task runs with: the requester's, the operator's, or nobody's. Pure.

A person who signed in to Porter may save agent API keys and a Fly token and app
(porter/web/settings_page.py); a task they request runs with those, and otherwise with the
operator's `PORTER_SECRET_*` and Fly settings. The choice is made per agent and as a whole: a run
never mixes a requester's key with the operator's, so whose account pays is never in doubt. With
neither, no machine starts and the requester is told what to add, and where.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

REQUESTER = "requester"
OPERATOR = "operator"
# Names of sealed secrets (not secrets): the environment names agents read, so a saved key
# reaches the agent under the name its CLI expects.
FLY_TOKEN = "FLY_API_TOKEN"  # noqa: S105


@dataclass(frozen=True)
class Provider:
    name: str  # the environment variable, and the secret's name in the vault
    label: str  # what the settings page calls it
    article: str  # "an Anthropic API key", "a Gemini API key"


PROVIDERS: tuple[Provider, ...] = (
    Provider("ANTHROPIC_API_KEY", "Anthropic API key", "an"),
    Provider("OPENAI_API_KEY", "OpenAI API key", "an"),
    Provider("GEMINI_API_KEY", "Gemini API key", "a"),
)
PROVIDER_NAMES = frozenset(provider.name for provider in PROVIDERS)
_BY_NAME = {provider.name: provider for provider in PROVIDERS}
# What else an agent may accept in place of a provider's key: codex reads CODEX_API_KEY, and
# its wrapper (porter/agents.py) falls back to OPENAI_API_KEY, which is what a person saves.
_ALIASES = {"CODEX_API_KEY": "OPENAI_API_KEY"}


@dataclass(frozen=True)
class AgentKeys:
    """The keys an agent's run gets, and whose they are."""

    source: str  # REQUESTER | OPERATOR
    env: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class NoKeys:
    reason: str  # for the status comment: which keys the agent takes, and where to add one


def requester_names(key_names: Sequence[str]) -> tuple[str, ...]:
    """The agent's keys a person can save in Porter (the others only the operator can set)."""
    return tuple(name for name in key_names if name in PROVIDER_NAMES)


def pick(key_names: Sequence[str], values: Mapping[str, str]) -> dict[str, str]:
    """The non-empty values of the names the agent accepts, and only those."""
    return {name: values[name] for name in key_names if values.get(name)}


def choose_keys(agent: str, key_names: Sequence[str], *, requester: Mapping[str, str] | None,
                operator: Mapping[str, str], settings_url: str) -> AgentKeys | NoKeys:
    """The requester's keys when they saved any this agent accepts, else the operator's, else
    a refusal. An agent that accepts no key at all (one the operator defined) needs none."""
    mine = pick(requester_names(key_names), requester or {})
    if mine:
        return AgentKeys(REQUESTER, mine)
    theirs = pick(key_names, operator)
    if theirs or not key_names:
        return AgentKeys(OPERATOR, theirs)
    return NoKeys(refusal(agent, key_names, settings_url))


def refusal(agent: str, key_names: Sequence[str], settings_url: str) -> str:
    """e.g. "No API key for claude: add an Anthropic API key at https://…/settings"."""
    offered: list[Provider] = []
    for name in key_names:
        provider = _BY_NAME.get(_ALIASES.get(name, name))
        if provider is not None and provider not in offered:
            offered.append(provider)
    if offered:
        keys = " or ".join(f"{p.article} {p.label}" for p in offered)
        return f"No API key for {agent}: add {keys} at {settings_url}"
    settings = ", ".join(f"PORTER_SECRET_{name}" for name in key_names)
    return f"No API key for {agent}: the operator needs to set {settings}"


def choose_fly(runner: str, *, token: str | None, app: str | None) -> str | None:
    """Whose Fly account starts the machine: the requester's when they saved a token and an app,
    else the operator's; None when machines do not run on Fly at all."""
    if runner != "fly":
        return None
    return REQUESTER if token and app else OPERATOR
