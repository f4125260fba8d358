"""Operator settings: one table, parsed once from a mapping.

The table below is the single source of truth: `Settings.from_mapping` parses it, `porter doctor`
prints it and docs/settings.md is generated from it. Only the CLI reads `os.environ`.
"""

from __future__ import annotations

import difflib
import hmac
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from porter.errors import ConfigError

GITHUB_MAX_PAYLOAD = 25 * 1024 * 1024  # GitHub does not deliver larger events.


MASK = "**********"


class Secret:
    """A string that prints masked, so it cannot leak through a log line, an f-string or a repr."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def _str(raw: str) -> str:
    return raw


def _int(raw: str) -> int:
    try:
        value = int(raw, 10)
    except ValueError:
        raise ValueError("a whole number") from None
    if value < 0:
        raise ValueError("a whole number ≥ 0")
    return value


def _positive_int(raw: str) -> int:
    value = _int(raw)
    if value == 0:
        raise ValueError("a whole number ≥ 1")
    return value


def _port(raw: str) -> int:
    value = int(raw) if raw.isdigit() else -1
    if not 0 < value < 65536:
        raise ValueError("a port number from 1 to 65535")
    return value


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("true or false")


def _url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError("an http:// or https:// URL")
    return raw.rstrip("/")


def _path(raw: str) -> Path:
    return Path(raw).expanduser()


def _secret(raw: str) -> Secret:
    return Secret(raw)


def _handle(raw: str) -> str:
    handle = raw.lstrip("@")
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})", handle):
        raise ValueError("a GitHub handle such as porter (letters, digits, dashes)")
    return handle.lower()


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError("one of " + ", ".join(options))
        return value

    parse.__name__ = "one of " + "|".join(options)
    return parse


def _name_list(raw: str) -> tuple[str, ...]:
    items = tuple(item.strip().lower() for item in raw.split(",") if item.strip())
    for item in items:
        if not re.fullmatch(r"[a-z0-9._-]+(/[a-z0-9._-]+)?", item):
            raise ValueError("a comma-separated list of owners or owner/repo names")
    return items


def _path_list(raw: str) -> tuple[Path, ...]:
    paths = tuple(Path(item.strip()).expanduser() for item in raw.split(":") if item.strip())
    if not all(path.is_absolute() for path in paths):
        raise ValueError("absolute paths separated by colons")
    return paths


@dataclass(frozen=True)
class Setting:
    name: str
    field: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    secret: bool = False
    capability: str = "core"


# Capabilities name what a setting is needed for, so `porter doctor` can say what is missing.
SETTINGS: tuple[Setting, ...] = (
    Setting("PORTER_DATABASE", "database", _path, Path("porter.db"), "SQLite database file."),
    Setting("PORTER_HOST", "host", _str, "127.0.0.1", "Address to listen on."),
    Setting("PORTER_PORT", "port", _port, 8000, "Port to listen on."),
    Setting(
        "PORTER_PUBLIC_URL", "public_url", _url, "http://127.0.0.1:8000",
        "URL GitHub, browsers and machines use to reach Porter.",
    ),
    Setting(
        "PORTER_GITHUB_WEBHOOK_SECRET", "github_webhook_secret", _secret, None,
        "Webhook HMAC secret; required to accept webhooks.", secret=True, capability="webhooks",
    ),
    Setting("PORTER_GITHUB_APP_ID", "github_app_id", _str, None, "GitHub App id.",
            capability="github"),
    Setting("PORTER_GITHUB_CLIENT_ID", "github_client_id", _str, None,
            "GitHub App client id (sign-in).", capability="login"),
    Setting("PORTER_GITHUB_CLIENT_SECRET", "github_client_secret", _secret, None,
            "GitHub App client secret (sign-in).", secret=True, capability="login"),
    Setting("PORTER_GITHUB_PRIVATE_KEY", "github_private_key", _secret, None,
            "GitHub App private key, PEM text.", secret=True, capability="github"),
    Setting("PORTER_GITHUB_PRIVATE_KEY_FILE", "github_private_key_file", _path, None,
            "GitHub App private key, path to a PEM file.", capability="github"),
    Setting("PORTER_GITHUB_API_URL", "github_api_url", _url, "https://api.github.com",
            "GitHub REST API base (GitHub Enterprise: https://HOST/api/v3)."),
    Setting("PORTER_GITHUB_URL", "github_url", _url, "https://github.com",
            "GitHub web base; clone URLs are built from it."),
    Setting("PORTER_MENTION", "mention", _handle, "porter", "The handle that triggers Porter."),
    Setting("PORTER_MIN_PERMISSION", "min_permission", _choice("write", "maintain", "admin"),
            "write", "Least repository permission a requester needs."),
    Setting("PORTER_ALLOWLIST", "allowlist", _name_list, (),
            "Owners or owner/repo names Porter serves; empty serves every installation."),
    Setting("PORTER_ALLOW_WORKFLOW_CHANGES", "allow_workflow_changes", _bool, False,
            "Let agents change files under .github/ (workflows, actions: they run with the "
            "repository's secrets)."),
    Setting("PORTER_SECRET_KEYS", "secret_keys", _secret, None,
            "Key ring for secrets at rest: kid:base64key, comma-separated, newest first. "
            "Generated into a key file beside the database when unset.", secret=True),
    Setting("PORTER_ADMIN_TOKEN", "admin_token", _secret, None,
            "Bearer token for the JSON API and admin CLI calls.", secret=True, capability="api"),
    Setting("PORTER_RUNNER", "runner", _choice("fly", "local"), None,
            "Where agents run: fly or local (default: fly when a Fly token is set)."),
    Setting("PORTER_FLY_API_TOKEN", "fly_api_token", _secret, None,
            "Fly.io token (fly tokens create deploy).", secret=True, capability="fly"),
    Setting("PORTER_FLY_APP", "fly_app", _str, None, "Fly app that hosts agent machines.",
            capability="fly"),
    Setting("PORTER_FLY_REGION", "fly_region", _str, "iad", "Fly region for agent machines."),
    Setting("PORTER_FLY_API_URL", "fly_api_url", _url, "https://api.machines.dev",
            "Fly Machines API base."),
    Setting("PORTER_AGENT_IMAGE", "agent_image", _str, None,
            "Container image the agents run in on Fly, built from container/ "
            "(docs/operator.md); the fly runner starts no machine without it.",
            capability="fly"),
    Setting("PORTER_DEFAULT_AGENT", "default_agent", _str, "claude",
            "Agent used when a comment names none."),
    Setting("PORTER_FLY_CPU_KIND", "fly_cpu_kind", _choice("shared", "performance"), "shared",
            "Fly guest CPU kind for agent machines."),
    Setting("PORTER_FLY_CPUS", "fly_cpus", _int, 2, "Fly guest CPUs for agent machines."),
    Setting("PORTER_FLY_MEMORY_MB", "fly_memory_mb", _int, 4096,
            "Fly guest memory (MB) for agent machines."),
    Setting("PORTER_MAX_LIVE_TASKS", "max_live_tasks", _int, 4,
            "Most agent machines alive at once; more tasks wait, queued, in order."),
    Setting("PORTER_MAX_LIVE_PER_INSTALLATION", "max_live_per_installation", _int, 2,
            "Most agent machines alive at once for one GitHub App installation."),
    Setting("PORTER_WATCHDOG_INTERVAL", "watchdog_interval", _int, 5,
            "Seconds between watchdog passes."),
    Setting("PORTER_TASK_TIMEOUT", "task_timeout", _int, 3600, "Seconds a task may run."),
    Setting("PORTER_HEARTBEAT_TIMEOUT", "heartbeat_timeout", _int, 120,
            "Seconds of heartbeat silence before a run is declared lost."),
    Setting("PORTER_MAX_BODY_BYTES", "max_body_bytes", _int, GITHUB_MAX_PAYLOAD + 1024 * 1024,
            "Largest webhook body accepted, in bytes."),
    Setting("PORTER_BODY_TIMEOUT", "body_timeout", _positive_int, 10,
            "Seconds a webhook body may take to arrive once its headers have; slower ones are "
            "answered 408 and the connection closed (GitHub sends within seconds)."),
    Setting("PORTER_MAX_INFLIGHT_BODY_BYTES", "max_inflight_body_bytes", _int, 64 * 1024 * 1024,
            "Most bytes of webhook bodies read at once, across all requests (by Content-Length "
            "when given); bodies that do not fit are answered 503 with Retry-After, unread."),
    Setting("PORTER_LOG_LEVEL", "log_level", _choice("debug", "info", "warning", "error"),
            "info", "Log level."),
    Setting("PORTER_SANDBOX_READ_ONLY_PATHS", "sandbox_read_only_paths", _path_list, (),
            "Extra host paths (colon-separated, absolute) the local runner shows read-only in "
            "the agent's sandbox, e.g. an agent CLI installed outside /usr."),
    Setting("PORTER_LOCAL_RUNNER_UNSANDBOXED", "local_runner_unsandboxed", _bool, False,
            "DANGEROUS: run local agents without the bubblewrap sandbox, where they can read "
            "Porter's secrets and other runs. Only for trusted agents on hosts without bwrap."),
)

BY_NAME = {setting.name: setting for setting in SETTINGS}
AGENT_COMMAND = re.compile(r"PORTER_AGENT_([A-Z0-9_]+)_COMMAND")
AGENT_KEYS = re.compile(r"PORTER_AGENT_([A-Z0-9_]+)_KEYS")
OPERATOR_SECRET = re.compile(r"PORTER_SECRET_([A-Z][A-Z0-9_]*)")


@dataclass(frozen=True)
class Settings:
    database: Path = Path("porter.db")
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = "http://127.0.0.1:8000"
    github_webhook_secret: Secret | None = None
    github_app_id: str | None = None
    github_client_id: str | None = None
    github_client_secret: Secret | None = None
    github_private_key: Secret | None = None
    github_private_key_file: Path | None = None
    github_api_url: str = "https://api.github.com"
    github_url: str = "https://github.com"
    mention: str = "porter"
    min_permission: str = "write"
    allowlist: tuple[str, ...] = ()
    allow_workflow_changes: bool = False
    secret_keys: Secret | None = None
    admin_token: Secret | None = None
    runner: str | None = None
    fly_api_token: Secret | None = None
    fly_app: str | None = None
    fly_region: str = "iad"
    fly_api_url: str = "https://api.machines.dev"
    agent_image: str | None = None
    default_agent: str = "claude"
    fly_cpu_kind: str = "shared"
    fly_cpus: int = 2
    fly_memory_mb: int = 4096
    max_live_tasks: int = 4
    max_live_per_installation: int = 2
    watchdog_interval: int = 5
    task_timeout: int = 3600
    heartbeat_timeout: int = 120
    max_body_bytes: int = GITHUB_MAX_PAYLOAD + 1024 * 1024
    body_timeout: int = 10
    max_inflight_body_bytes: int = 64 * 1024 * 1024
    log_level: str = "info"
    sandbox_read_only_paths: tuple[Path, ...] = ()
    local_runner_unsandboxed: bool = False
    agent_commands: dict[str, tuple[str, ...]] = field(default_factory=dict)
    agent_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    agent_secrets: dict[str, Secret] = field(default_factory=dict)
    unknown_names: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> Settings:
        """Parse every PORTER_* name; raise ConfigError naming each bad one."""
        values: dict[str, Any] = {}
        problems: list[str] = []
        for setting in SETTINGS:
            raw = env.get(setting.name)
            if raw is None or raw.strip() == "":
                continue
            try:
                values[setting.field] = setting.parse(raw.strip())
            except ValueError as exc:
                problems.append(f"{setting.name}: expected {exc}, got {_shown(setting, raw)}")
        commands: dict[str, tuple[str, ...]] = {}
        keys: dict[str, tuple[str, ...]] = {}
        secrets: dict[str, Secret] = {}
        unknown: list[str] = []
        for name, raw in env.items():
            if not name.startswith("PORTER_") or name in BY_NAME:
                continue
            if (secret := OPERATOR_SECRET.fullmatch(name)) is not None:
                if raw.strip():
                    secrets[secret.group(1)] = Secret(raw.strip())
                continue
            if (listed := AGENT_KEYS.fullmatch(name)) is not None:
                names = tuple(n.strip().upper() for n in raw.split(",") if n.strip())
                if not all(re.fullmatch(r"[A-Z][A-Z0-9_]*", n) for n in names):
                    problems.append(f"{name}: expected comma-separated environment variable "
                                    f"names, got {raw.strip()[:60]!r}")
                    continue
                keys[listed.group(1).lower().replace("_", "-")] = names
                continue
            match = AGENT_COMMAND.fullmatch(name)
            if match is None:
                unknown.append(name)
                continue
            agent = match.group(1).lower().replace("_", "-")
            try:
                argv = tuple(shlex.split(raw))
            except ValueError as exc:
                problems.append(f"{name}: expected a command line, got an unbalanced one ({exc})")
                continue
            if not argv:
                problems.append(f"{name}: expected a command line, got nothing")
                continue
            commands[agent] = argv
        if problems:
            raise ConfigError("\n".join(problems))
        values["agent_commands"] = commands
        values["agent_keys"] = keys
        values["agent_secrets"] = secrets
        values["unknown_names"] = tuple(sorted(unknown))
        return cls(**values)

    @property
    def effective_runner(self) -> str:
        if self.runner:
            return self.runner
        return "fly" if self.fly_api_token else "local"

    @property
    def keys_file(self) -> Path:
        return self.database.with_name(self.database.name + ".keys")

    def missing(self) -> dict[str, list[str]]:
        """What each capability still needs, by setting name; empty lists are ready."""
        needs: dict[str, list[str]] = {"webhooks": [], "github": [], "api": []}
        if not self.github_webhook_secret:
            needs["webhooks"].append("PORTER_GITHUB_WEBHOOK_SECRET")
        if not self.github_app_id:
            needs["github"].append("PORTER_GITHUB_APP_ID")
        if not self.github_private_key and not self.github_private_key_file:
            needs["github"].append("PORTER_GITHUB_PRIVATE_KEY or PORTER_GITHUB_PRIVATE_KEY_FILE")
        if not self.admin_token:
            needs["api"].append("PORTER_ADMIN_TOKEN")
        if self.effective_runner == "fly":
            needs["fly"] = [
                name
                for name, value in (
                    ("PORTER_FLY_API_TOKEN", self.fly_api_token),
                    ("PORTER_FLY_APP", self.fly_app),
                    ("PORTER_AGENT_IMAGE", self.agent_image),
                )
                if not value
            ]
        return needs

    def suggestions(self) -> list[str]:
        """One line per unknown PORTER_* name, with the closest real name."""
        known = [s.name for s in SETTINGS]
        lines = []
        for name in self.unknown_names:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
            hint = f"; did you mean {close[0]}?" if close else ""
            lines.append(f"{name} is not a Porter setting{hint}")
        return lines

    def value_of(self, setting: Setting) -> Any:
        return getattr(self, setting.field)


def _shown(setting: Setting, raw: str) -> str:
    if setting.secret:
        return "a value (hidden)"
    return repr(raw if len(raw) <= 60 else raw[:57] + "...")


def parse_dotenv(text: str) -> dict[str, str]:
    """Read KEY=VALUE lines; # comments, optional `export`, single or double quotes."""
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export "):
            stripped = stripped[len("export ") :].lstrip()
        key, sep, value = stripped.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ConfigError(f".env line {number}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
            if stripped.partition("=")[2].strip().startswith('"'):
                value = value.replace("\\n", "\n")
        else:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def masked(setting: Setting, value: Any) -> str:
    if value is None or value == () or value == {}:
        return "-"
    if setting.secret:
        return "set (hidden)"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def settings_fields() -> set[str]:
    return {f.name for f in fields(Settings)} - {
        "agent_commands", "agent_keys", "agent_secrets", "unknown_names"}


def settings_markdown() -> str:
    """docs/settings.md, generated from the table (tests/unit/test_docs.py keeps them equal)."""
    lines = [
        "# Settings",
        "",
        "Generated from `porter/settings.py`:"
        " `uv run python -m porter.settings > docs/settings.md`.",
        "Set them in the environment or in a `.env` file in the working directory (the environment",
        "wins). `uv run porter doctor` prints the values in force, secrets masked.",
        "",
        "| name | default | what it is |",
        "|---|---|---|",
    ]
    for setting in SETTINGS:
        default = ("—" if setting.default in (None, ())
                   else f"`{masked(setting, setting.default)}`")
        secret = " Secret: never printed." if setting.secret else ""
        lines.append(f"| `{setting.name}` | {default} | {setting.help}{secret} |")
    lines += [
        "| `PORTER_AGENT_<NAME>_COMMAND` | — | Defines or overrides agent `<name>`: "
        "a command line, "
        "split like a shell (never run through one), run in the checkout; the prompt arrives on "
        "stdin and in the file named by `PORTER_PROMPT_FILE`. |",
        "| `PORTER_AGENT_<NAME>_KEYS` | — | Comma-separated environment names agent `<name>` "
        "receives from the secrets below. |",
        "| `PORTER_SECRET_<ENVNAME>` | — | An operator-wide secret handed to agents that declare "
        "`<ENVNAME>` (e.g. `PORTER_SECRET_ANTHROPIC_API_KEY`). Secret: redacted from every log, "
        "comment and PR. |",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(settings_markdown(), end="")
