"""The agent registry: which agents a comment may name, and how each one is started.

An agent is a command line run in the checkout by the container entrypoint, as an unprivileged
user, with the prompt on stdin and in the file named by $PORTER_PROMPT_FILE. This module only
describes commands; it runs nothing. Flags are those in docs/platform-notes.md §E.

The prompt never enters a command line's text. CLIs that want it as an argument are wrapped in
`sh -c SCRIPT NAME [MODEL ARGS...]`, where SCRIPT is a constant that reads the prompt file into
one quoted argument, so the shell never parses issue text. A requested model is passed as
separate argv elements (positional parameters, spliced in by `"$@"`), or in an environment
variable, never inside a script either.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

from porter.settings import Secret, Settings

OutputKind = Literal["claude-json", "text"]

# Same shape the comment parser accepts; checked again because a model lands in argv.
MODEL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,99}")
# Every agent also gets a requested model here, so operator-defined agents can use it.
MODEL_ENV = "PORTER_MODEL"
# Names the entrypoint or the loader own: a declared key may not replace them.
RESERVED_ENV = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "PORTER_PROMPT_FILE", MODEL_ENV,
    "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT",
})

# `${PORTER_PROMPT_FILE:?}` stops the script (with a message) if the entrypoint did not set it.
_READ_PROMPT = 'prompt=$(cat -- "${PORTER_PROMPT_FILE:?}") || exit 2\n'


@dataclass(frozen=True)
class Agent:
    name: str
    argv: tuple[str, ...]
    key_names: tuple[str, ...]
    output: OutputKind
    # How a model is passed on the command line; None = not on the command line.
    model_flag: str | None = "--model"
    # Fixed, non-secret environment (e.g. GOOSE_MODE=auto).
    env: Mapping[str, str] = field(default_factory=dict, hash=False)
    # Environment variable that carries a requested model, for CLIs configured that way.
    model_env: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "argv", tuple(self.argv))
        object.__setattr__(self, "key_names", tuple(self.key_names))
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))

    @property
    def takes_model(self) -> bool:
        """Whether a requested model reaches the CLI (PORTER_MODEL alone does not count)."""
        return self.model_flag is not None or self.model_env is not None

    def command(self, model: str | None = None) -> list[str]:
        """The argv to run. The model flag goes last: for a direct CLI that is an ordinary
        option, for an `sh -c` wrapper it becomes "$@", which each script splices in where its
        CLI expects options."""
        argv = list(self.argv)
        if model is not None and self.model_flag is not None:
            argv += [self.model_flag, _checked_model(model)]
        return argv


def _checked_model(model: str) -> str:
    if not MODEL_PATTERN.fullmatch(model):
        raise ValueError(f"not a model name: {model[:40]!r}")
    return model


def _sh(name: str, script: str) -> tuple[str, ...]:
    # $0 names the wrapper in the shell's own error messages.
    return ("sh", "-c", script, f"porter-{name}")


# codex: `codex exec` reads stdin when it is not a TTY and can hang, hence < /dev/null and the
# prompt as an argument. The default exec sandbox is read-only; workspace-write lets it edit the
# checkout (network stays off inside its sandbox). `codex exec` authenticates with CODEX_API_KEY;
# a user who stored only OPENAI_API_KEY gets it under that name too.
_CODEX = (
    'if [ -z "${CODEX_API_KEY:-}" ] && [ -n "${OPENAI_API_KEY:-}" ]; then\n'
    '  CODEX_API_KEY=$OPENAI_API_KEY; export CODEX_API_KEY\n'
    "fi\n"
    + _READ_PROMPT
    + 'exec codex exec --sandbox workspace-write --skip-git-repo-check "$@" "$prompt" </dev/null\n'
)

# aider reads the prompt file itself. --yes-always still answers no to shell commands;
# --no-auto-commits because Porter makes the commit; --no-detect-urls so a URL in issue text is
# never fetched; --no-gitignore so .gitignore is not edited: aider's own files (.aider*, tag
# cache) are excluded through .git/info/exclude, which is not part of the changeset.
_AIDER = (
    'if [ -d .git ]; then mkdir -p .git/info && printf "%s\\n" ".aider*" >> .git/info/exclude; fi\n'
    'exec aider --message-file "${PORTER_PROMPT_FILE:?}" --yes-always --no-stream --no-pretty'
    " --no-auto-commits --no-gitignore --no-check-update --no-show-release-notes --no-analytics"
    ' --no-detect-urls "$@" </dev/null\n'
)

# opencode: `opencode run` appends a piped stdin to the message, hence < /dev/null. Auto-approval
# comes from OPENCODE_CONFIG_CONTENT (below) rather than a flag: the flag has been renamed across
# 1.x releases (--auto, --yolo, --dangerously-skip-permissions), the inline config has not, and it
# outranks a repository's own opencode.json, so a repo cannot make the run stop to ask.
_OPENCODE = _READ_PROMPT + 'exec opencode run "$@" "$prompt" </dev/null\n'

# gemini: -p takes the prompt; a piped stdin would be appended to it, hence < /dev/null.
# Headless runs exit 55 in an untrusted folder even in yolo mode: --skip-trust and
# GEMINI_CLI_TRUST_WORKSPACE=true both lift that gate.
_GEMINI = (
    _READ_PROMPT
    + 'exec gemini --approval-mode yolo --skip-trust "$@" -p "$prompt" </dev/null\n'
)

# goose: needs a provider and a model. `goose run --provider P` falls back to that provider's
# default model, and still honours GOOSE_MODEL when GOOSE_PROVIDER names the same provider
# (aaif-goose/goose crates/goose-cli/src/session/builder.rs, resolve_provider_and_model), so the
# script picks the provider from the key it was given and the model travels in GOOSE_MODEL.
# --with-builtin developer gives it file and shell tools in a HOME with no goose config.
_GOOSE = (
    'if [ -z "${GOOSE_PROVIDER:-}" ]; then\n'
    '  if [ -n "${ANTHROPIC_API_KEY:-}" ]; then GOOSE_PROVIDER=anthropic\n'
    '  elif [ -n "${OPENAI_API_KEY:-}" ]; then GOOSE_PROVIDER=openai\n'
    "  else echo 'porter: goose needs ANTHROPIC_API_KEY or OPENAI_API_KEY' >&2; exit 2\n"
    "  fi\n"
    "fi\n"
    "export GOOSE_PROVIDER\n"
    'exec goose run --no-session --with-builtin developer --provider "$GOOSE_PROVIDER"'
    ' -i "${PORTER_PROMPT_FILE:?}" </dev/null\n'
)

BUILTINS: tuple[Agent, ...] = (
    # Prompt on stdin (-p with no prompt argument reads it). Runs as a non-root user, which
    # --dangerously-skip-permissions requires.
    Agent(
        "claude",
        ("claude", "-p", "--output-format", "json", "--dangerously-skip-permissions"),
        ("ANTHROPIC_API_KEY",),
        "claude-json",
    ),
    Agent("codex", _sh("codex", _CODEX), ("CODEX_API_KEY", "OPENAI_API_KEY"), "text"),
    Agent(
        "aider", _sh("aider", _AIDER),
        ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"), "text",
    ),
    # --model takes provider/model (e.g. anthropic/claude-sonnet-4-5).
    Agent(
        "opencode", _sh("opencode", _OPENCODE), ("ANTHROPIC_API_KEY", "OPENAI_API_KEY"), "text",
        env={
            "OPENCODE_CONFIG_CONTENT":
                '{"permission":"allow","autoupdate":false,"share":"disabled"}',
            "OPENCODE_DISABLE_AUTOUPDATE": "true",
        },
    ),
    # Plain text output: the entrypoint parses only Claude's JSON, and gemini's text is the
    # answer itself, which makes a good summary.
    Agent(
        "gemini", _sh("gemini", _GEMINI), ("GEMINI_API_KEY",), "text",
        env={"GEMINI_CLI_TRUST_WORKSPACE": "true"},
    ),
    Agent(
        "goose", _sh("goose", _GOOSE), ("ANTHROPIC_API_KEY", "OPENAI_API_KEY"), "text",
        model_flag=None, model_env="GOOSE_MODEL",
        env={"GOOSE_MODE": "auto", "GOOSE_DISABLE_KEYRING": "1"},
    ),
)

BUILTIN_AGENTS = tuple(agent.name for agent in BUILTINS)


class Registry:
    """Name → Agent: the built-ins, overridden or extended by the operator's settings."""

    def __init__(self, agents: Mapping[str, Agent]) -> None:
        self._agents = dict(agents)

    @classmethod
    def from_settings(cls, settings: Settings) -> Registry:
        """PORTER_AGENT_<NAME>_COMMAND replaces a built-in's command line (keeping its keys,
        output kind and model handling) or defines a new agent: text output, the model only in
        $PORTER_MODEL, since nothing says how its CLI takes one. PORTER_AGENT_<NAME>_KEYS sets
        the keys an agent may receive; KEYS for a name that is neither built in nor given a
        COMMAND defines nothing."""
        agents = {agent.name: agent for agent in BUILTINS}
        for name, argv in settings.agent_commands.items():
            if name in agents:
                agents[name] = replace(agents[name], argv=tuple(argv))
            else:
                agents[name] = Agent(name, tuple(argv), (), "text", model_flag=None)
        for name, keys in settings.agent_keys.items():
            if name in agents:
                agents[name] = replace(agents[name], key_names=tuple(keys))
        return cls(agents)

    def get(self, name: str) -> Agent | None:
        return self._agents.get(name.lower())

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._agents)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._agents

    def __iter__(self) -> Iterator[Agent]:
        return iter(sorted(self._agents.values(), key=lambda agent: agent.name))


def agent_names(settings: Settings) -> frozenset[str]:
    """Built-in agents plus those the operator defined with PORTER_AGENT_<NAME>_COMMAND."""
    return Registry.from_settings(settings).names


def agent_env(
    agent: Agent, secrets: Mapping[str, str | Secret], *, model: str | None = None
) -> dict[str, str]:
    """The agent's environment from Porter's side: its fixed env, the secrets whose names it
    declares (and only those, non-empty), and a requested model. Nothing else is passed."""
    env = dict(agent.env)
    for name in agent.key_names:
        if name in RESERVED_ENV:
            continue
        value = secrets.get(name)
        raw = value.get() if isinstance(value, Secret) else value
        if raw:
            env[name] = raw
    if model is not None:
        env[MODEL_ENV] = _checked_model(model)
        if agent.model_env is not None:
            env[agent.model_env] = model
    return env


def agent_spec(
    agent: Agent, *, model: str | None, secrets: Mapping[str, str | Secret]
) -> dict[str, Any]:
    """The spec's `agent` object, as container/porter_entrypoint/spec.py reads it."""
    return {
        "name": agent.name,
        "argv": agent.command(model),
        "env": agent_env(agent, secrets, model=model),
        "output": agent.output,
    }
