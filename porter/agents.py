"""The agent registry: which agents a comment may name."""

from __future__ import annotations

from porter.settings import Settings

BUILTIN_AGENTS = ("claude", "codex", "aider", "opencode", "gemini", "goose")


def agent_names(settings: Settings) -> frozenset[str]:
    """Built-in agents plus those the operator defined with PORTER_AGENT_<NAME>_COMMAND."""
    return frozenset(BUILTIN_AGENTS) | frozenset(settings.agent_commands)
