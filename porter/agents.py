"""The agent registry: which agents a comment may name, and how each one is started.

An agent is a command line run in the checkout by the container entrypoint, as an unprivileged
user, with the prompt on stdin and in the file named by $PORTER_PROMPT_FILE. This module only
describes commands; it runs nothing. Flags are those in docs/platform-notes.md §E.

Model keys never reach an agent that can use a base URL: where its CLI reads a key, it finds the
run's gateway token, and its base URL variables point at Porter's LLM gateway, which puts the
real key on the way out (porter/agent_wiring.py). Only a key Porter cannot route (an operator's
agent that speaks no known dialect, or a key that is not a model key) travels as it is, and the
task page says so (`direct_keys`).

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

from porter.agent_wiring import (
    ANTHROPIC,
    GEMINI,
    GENERIC_BASE_URLS,
    NO_DIALECT,
    OPENAI,
    PROVIDER_OF,
    BaseUrl,
    Gateway,
)
from porter.settings import Secret, Settings

OutputKind = Literal["claude-json", "text"]

# Same shape the comment parser accepts; checked again because a model lands in argv.
MODEL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,99}")
# Every agent also gets a requested model here, so operator-defined agents can use it.
MODEL_ENV = "PORTER_MODEL"
# Where the entrypoint asks an agent that can to write its final message (Agent.summary_file).
SUMMARY_FILE_ENV = "PORTER_SUMMARY_FILE"
# Names the entrypoint or the loader own: a declared key may not replace them.
RESERVED_ENV = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "PORTER_PROMPT_FILE", MODEL_ENV,
    SUMMARY_FILE_ENV, "PORTER_URL", "PORTER_RUN_ID", "PORTER_RUN_TOKEN",
    "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT",
})


class GatewayRequired(ValueError):
    """An agent that reaches its models through the gateway was given no gateway to reach."""


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
    # Providers it reaches through the gateway; () = none: its keys travel as they are.
    dialects: tuple[str, ...] = ()
    # The variables that point it at the gateway, set whenever it has one.
    base_urls: tuple[BaseUrl, ...] = ()
    # Files written into the run's HOME before it starts: path relative to HOME → text.
    home_files: Mapping[str, str] = field(default_factory=dict, hash=False)
    # It writes its final message to $PORTER_SUMMARY_FILE (the entrypoint's summary).
    summary_file: bool = False
    # Seconds without a new line of output after which the entrypoint stops it as stalled.
    idle_timeout_s: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "argv", tuple(self.argv))
        object.__setattr__(self, "key_names", tuple(self.key_names))
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))
        object.__setattr__(self, "dialects", tuple(self.dialects))
        object.__setattr__(self, "base_urls", tuple(self.base_urls))
        object.__setattr__(self, "home_files", MappingProxyType(dict(self.home_files)))

    def routed(self, key_name: str) -> bool:
        """Whether the gateway stands in for this key: a model key of a dialect it speaks."""
        return PROVIDER_OF.get(key_name) in self.dialects

    @property
    def direct_keys(self) -> tuple[str, ...]:
        """The declared keys that reach the agent as they are, real values in the spec."""
        return tuple(name for name in self.key_names
                     if name not in RESERVED_ENV and not self.routed(name))

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
# Codex ignores OPENAI_BASE_URL (§E.2), so with one set the script defines a provider on it: the
# Responses API, no WebSocket upgrades, and bounded retries, because Codex otherwise waits for
# the network forever. The -c options turn off its update check, analytics and plugin fetches.
# --output-last-message gives the entrypoint the final message alone: Codex prints its banner
# and the whole prompt on stderr, which the transcript shares with stdout.
# Inside the double quotes of the script's `set --` line: the shell expands only the base URL,
# which Porter set (its own public URL), never anything of the issue's.
_CODEX_PROVIDER = (
    r'model_providers.porter={name=\"porter\", base_url=\"$OPENAI_BASE_URL\",'
    r' env_key=\"CODEX_API_KEY\", wire_api=\"responses\", supports_websockets=false,'
    " request_max_retries=4, stream_max_retries=4, stream_idle_timeout_ms=300000}"
)
_CODEX = (
    'if [ -z "${CODEX_API_KEY:-}" ] && [ -n "${OPENAI_API_KEY:-}" ]; then\n'
    '  CODEX_API_KEY=$OPENAI_API_KEY; export CODEX_API_KEY\n'
    "fi\n"
    + _READ_PROMPT
    + 'if [ -n "${OPENAI_BASE_URL:-}" ]; then\n'
    f'  set -- -c model_provider=porter -c "{_CODEX_PROVIDER}" "$@"\n'
    "fi\n"
    'if [ -n "${PORTER_SUMMARY_FILE:-}" ]; then\n'
    '  set -- --output-last-message "$PORTER_SUMMARY_FILE" "$@"\n'
    "fi\n"
    "exec codex exec --sandbox workspace-write --skip-git-repo-check"
    " -c check_for_update_on_startup=false -c analytics.enabled=false -c features.plugins=false"
    ' "$@" "$prompt" </dev/null\n'
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

# Gemini CLI takes a base URL only with the API-key auth chosen in its settings (alone, the
# variable exits 41); usage statistics off, or it calls play.googleapis.com (§E.2).
GEMINI_SETTINGS = (
    '{"security":{"auth":{"selectedType":"gemini-api-key"}},'
    '"privacy":{"usageStatisticsEnabled":false}}\n'
)

BUILTINS: tuple[Agent, ...] = (
    # Prompt on stdin (-p with no prompt argument reads it). Runs as a non-root user, which
    # --dangerously-skip-permissions requires. Its base URL has no /v1; without the
    # nonessential-traffic switch it calls api.anthropic.com even with one set.
    Agent(
        "claude",
        ("claude", "-p", "--output-format", "json", "--dangerously-skip-permissions"),
        ("ANTHROPIC_API_KEY",),
        "claude-json",
        env={"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
             "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1"},
        dialects=(ANTHROPIC,),
        base_urls=(BaseUrl("ANTHROPIC_BASE_URL", ANTHROPIC),),
    ),
    # Its own base URL handling is in the script (_CODEX); OPENAI_BASE_URL only feeds that. It
    # prints as it works, so a quarter of an hour with nothing new said is a stall (a model API
    # it cannot reach: it would otherwise wait for the network forever).
    Agent(
        "codex", _sh("codex", _CODEX), ("CODEX_API_KEY", "OPENAI_API_KEY"), "text",
        dialects=(OPENAI,),
        base_urls=(BaseUrl("OPENAI_BASE_URL", OPENAI, "/v1"),),
        summary_file=True, idle_timeout_s=900,
    ),
    # litellm underneath: OPENAI_API_BASE with /v1, ANTHROPIC_BASE_URL and GEMINI_API_BASE
    # without. It still fetches litellm's price map from GitHub, and copes when it cannot.
    Agent(
        "aider", _sh("aider", _AIDER),
        ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"), "text",
        dialects=(ANTHROPIC, OPENAI, GEMINI),
        base_urls=(BaseUrl("ANTHROPIC_BASE_URL", ANTHROPIC),
                   BaseUrl("OPENAI_API_BASE", OPENAI, "/v1"),
                   BaseUrl("GEMINI_API_BASE", GEMINI)),
    ),
    # --model takes provider/model (e.g. anthropic/claude-sonnet-4-5). Both base URLs with /v1:
    # without it the call goes to POST /messages. Its model list comes from models.opencode.ai
    # unless told not to fetch it.
    Agent(
        "opencode", _sh("opencode", _OPENCODE), ("ANTHROPIC_API_KEY", "OPENAI_API_KEY"), "text",
        env={
            "OPENCODE_CONFIG_CONTENT":
                '{"permission":"allow","autoupdate":false,"share":"disabled"}',
            "OPENCODE_DISABLE_AUTOUPDATE": "true",
            "OPENCODE_DISABLE_MODELS_FETCH": "1",
        },
        dialects=(ANTHROPIC, OPENAI),
        base_urls=(BaseUrl("ANTHROPIC_BASE_URL", ANTHROPIC, "/v1"),
                   BaseUrl("OPENAI_BASE_URL", OPENAI, "/v1")),
    ),
    # Plain text output: the entrypoint parses only Claude's JSON, and gemini's text is the
    # answer itself, which makes a good summary.
    Agent(
        "gemini", _sh("gemini", _GEMINI), ("GEMINI_API_KEY",), "text",
        env={"GEMINI_CLI_TRUST_WORKSPACE": "true"},
        dialects=(GEMINI,),
        base_urls=(BaseUrl("GOOGLE_GEMINI_BASE_URL", GEMINI),),
        home_files={".gemini/settings.json": GEMINI_SETTINGS},
    ),
    # Goose reads ANTHROPIC_HOST and OPENAI_HOST (+ OPENAI_BASE_PATH) from the environment
    # before its config (block/goose crates/goose/src/providers/anthropic.rs, openai.rs): hosts
    # without /v1. Not run for real: no package of it installs here (§E.2).
    Agent(
        "goose", _sh("goose", _GOOSE), ("ANTHROPIC_API_KEY", "OPENAI_API_KEY"), "text",
        model_flag=None, model_env="GOOSE_MODEL",
        env={"GOOSE_MODE": "auto", "GOOSE_DISABLE_KEYRING": "1",
             "GOOSE_TELEMETRY_ENABLED": "false", "OPENAI_BASE_PATH": "v1/chat/completions"},
        dialects=(ANTHROPIC, OPENAI),
        base_urls=(BaseUrl("ANTHROPIC_HOST", ANTHROPIC), BaseUrl("OPENAI_HOST", OPENAI)),
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
        output kind, model and gateway handling) or defines a new agent: text output, the model
        only in $PORTER_MODEL, since nothing says how its CLI takes one. PORTER_AGENT_<NAME>_KEYS
        sets the keys an agent may receive. PORTER_AGENT_<NAME>_DIALECT says which provider API
        an operator-defined agent speaks, so it gets the gateway (default none: its keys travel
        as they are); for a built-in only `none` changes anything: it turns its gateway off.
        KEYS or DIALECT for a name that is neither built in nor given a COMMAND defines
        nothing."""
        agents = {agent.name: agent for agent in BUILTINS}
        for name, argv in settings.agent_commands.items():
            if name in agents:
                agents[name] = replace(agents[name], argv=tuple(argv))
            else:
                agents[name] = Agent(name, tuple(argv), (), "text", model_flag=None)
        for name, keys in settings.agent_keys.items():
            if name in agents:
                agents[name] = replace(agents[name], key_names=tuple(keys))
        for name, dialect in settings.agent_dialects.items():
            if name not in agents:
                continue
            if dialect == NO_DIALECT:
                agents[name] = replace(agents[name], dialects=(), base_urls=())
            elif name not in BUILTIN_AGENTS:
                agents[name] = replace(agents[name], dialects=(dialect,),
                                       base_urls=GENERIC_BASE_URLS[dialect])
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
    agent: Agent, secrets: Mapping[str, str | Secret], *, gateway: Gateway | None,
    model: str | None = None,
) -> dict[str, str]:
    """The agent's environment from Porter's side: its fixed env, the keys whose names it
    declares (and only those, non-empty), its gateway base URLs, and a requested model. Nothing
    else is passed.

    A key the gateway stands in for holds the gateway token, not the key: it is still set only
    when the run has that key, because CLIs pick their provider by which keys are present."""
    if agent.dialects and gateway is None:
        raise GatewayRequired(f"agent {agent.name} reaches its models through the gateway")
    env = dict(agent.env)
    for name in agent.key_names:
        if name in RESERVED_ENV:
            continue
        value = secrets.get(name)
        raw = value.get() if isinstance(value, Secret) else value
        if raw:
            env[name] = gateway.token if gateway is not None and agent.routed(name) else raw
    if gateway is not None:
        for base in agent.base_urls:
            env[base.env] = gateway.url(base)
    if model is not None:
        env[MODEL_ENV] = _checked_model(model)
        if agent.model_env is not None:
            env[agent.model_env] = model
    return env


def agent_spec(
    agent: Agent, *, model: str | None, secrets: Mapping[str, str | Secret],
    gateway: Gateway | None,
) -> dict[str, Any]:
    """The spec's `agent` object, as container/porter_entrypoint/spec.py reads it. Optional
    fields appear only when they say something: `public_env`, the variables that hold no
    credential (the entrypoint redacts every other value from what it sends); `home_files`;
    `summary_file`; `idle_timeout_s`."""
    env = agent_env(agent, secrets, gateway=gateway, model=model)
    spec: dict[str, Any] = {
        "name": agent.name,
        "argv": agent.command(model),
        "env": env,
        "output": agent.output,
    }
    public = sorted(name for name in env if name not in agent.key_names)
    if public:
        spec["public_env"] = public
    if agent.home_files:
        spec["home_files"] = dict(agent.home_files)
    if agent.summary_file:
        spec["summary_file"] = True
    if agent.idle_timeout_s is not None:
        spec["idle_timeout_s"] = agent.idle_timeout_s
    return spec
