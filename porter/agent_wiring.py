"""How an agent reaches the LLM gateway instead of a provider: which model keys Porter swaps, the
base URL variables each CLI reads, and the run's gateway token. Pure data; porter/agents.py
applies it to each agent.

The agent's environment names a model key where its CLI looks for one (ANTHROPIC_API_KEY, …) but
holds the run's gateway token there (porter/tokens.py `gateway_token`), and a base URL that points
at Porter's `/llm/<provider>` routes (porter/gateway/). The gateway finds the real key for the
run under the same standard names (porter/credentials.py `agent_keys`) and sends that upstream.
The suffixes below are those docs/platform-notes.md §E.2 saw each CLI need.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

ANTHROPIC: Final = "anthropic"
OPENAI: Final = "openai"
GEMINI: Final = "gemini"
DIALECTS: tuple[str, ...] = (ANTHROPIC, OPENAI, GEMINI)
NO_DIALECT: Final = "none"

# The model keys Porter knows the provider of, and so can swap for the gateway token. A declared
# key not named here (an operator's own service token) is not a model key and travels as it is.
PROVIDER_OF = MappingProxyType({
    "ANTHROPIC_API_KEY": ANTHROPIC,
    "OPENAI_API_KEY": OPENAI,
    "CODEX_API_KEY": OPENAI,
    "GEMINI_API_KEY": GEMINI,
    "GOOGLE_API_KEY": GEMINI,
})


@dataclass(frozen=True)
class BaseUrl:
    """One environment variable that carries a provider's base URL: `{public}/llm/{provider}`
    followed by `suffix` (Claude Code's has no /v1, OpenCode's has)."""

    env: str
    provider: str
    suffix: str = ""


# What an operator-defined agent gets for the dialect it declares (PORTER_AGENT_<NAME>_DIALECT):
# the names the providers' own SDKs read, and PORTER_LLM_BASE_URL for a script of the operator's.
GENERIC_BASE_URLS: MappingProxyType[str, tuple[BaseUrl, ...]] = MappingProxyType({
    ANTHROPIC: (BaseUrl("ANTHROPIC_BASE_URL", ANTHROPIC),
                BaseUrl("PORTER_LLM_BASE_URL", ANTHROPIC)),
    OPENAI: (BaseUrl("OPENAI_BASE_URL", OPENAI, "/v1"), BaseUrl("OPENAI_API_BASE", OPENAI, "/v1"),
             BaseUrl("PORTER_LLM_BASE_URL", OPENAI, "/v1")),
    GEMINI: (BaseUrl("GOOGLE_GEMINI_BASE_URL", GEMINI), BaseUrl("GEMINI_API_BASE", GEMINI),
             BaseUrl("PORTER_LLM_BASE_URL", GEMINI)),
})


@dataclass(frozen=True)
class Gateway:
    """Where a run's agent reaches the gateway (Porter's public URL, as the machine's PORTER_URL),
    and the run's token for it."""

    public_url: str
    token: str = field(repr=False)

    def url(self, base: BaseUrl) -> str:
        return f"{self.public_url.rstrip('/')}/llm/{base.provider}{base.suffix}"
