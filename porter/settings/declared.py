"""Every operator setting, declared once: a field of `Settings` made with `setting(...)`.

A field's environment name is `PORTER_` and its name in capitals. `SETTINGS`, the table that
`porter doctor` and docs/settings.md show, is read from the fields; `CAPABILITIES` says which of
them each thing Porter does needs, and `Settings.missing()` is computed from it.
"""

# ruff: noqa: RUF009 - setting() returns a dataclasses.field, as field() does; ruff cannot tell.

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from porter.errors import ConfigError
from porter.settings import parse
from porter.settings.database import DatabaseUrl, parse_database, without_password
from porter.settings.parse import Secret

GITHUB_MAX_PAYLOAD = 25 * 1024 * 1024  # GitHub does not deliver larger events.

T = TypeVar("T")
DEFAULT_DATABASE: Path | DatabaseUrl = Path("porter.db")


def setting(default: T, parser: Callable[[str], T], help: str, *, secret: bool = False) -> T:
    """A field read from its PORTER_* name. Typed as its value, like dataclasses.field, so mypy
    checks the default and the parser against the field's type."""
    return field(default=default, metadata={"parse": parser, "help": help, "secret": secret})


def env_name(field_name: str) -> str:
    return "PORTER_" + field_name.upper()


@dataclass(frozen=True)
class Settings:
    database: Path | DatabaseUrl = setting(
        DEFAULT_DATABASE, parse_database,
        "The database: a SQLite file (a path, or sqlite:PATH), or PostgreSQL "
        "(postgresql://USER:PASSWORD@HOST:PORT/NAME; the password is never printed).")
    data_dir: Path | None = setting(
        None, parse.path,
        "Directory for the local runner's run logs (runs/) and, on PostgreSQL, the generated "
        "key ring (porter.keys). Default: the SQLite file's directory (its key ring stays "
        "beside it, named after it), or ./porter-data when PORTER_DATABASE is PostgreSQL.")
    host: str = setting("127.0.0.1", parse.text, "Address to listen on.")
    port: int = setting(8000, parse.port, "Port to listen on.")
    public_url: str = setting("http://127.0.0.1:8000", parse.url,
                              "URL GitHub, browsers and machines use to reach Porter.")
    webhook_relay_url: str | None = setting(
        None, parse.url,
        "A smee.io-style channel (e.g. https://smee.io/abc123) for a laptop without a public "
        "URL: GitHub delivers to the channel, and `porter serve` reads it as a server-sent-events "
        "stream and posts each delivery to its own /webhooks/github, signature checked as usual. "
        "For development: anyone who knows the channel's URL can read the deliveries.",
        secret=True)
    github_webhook_secret: Secret | None = setting(
        None, parse.secret, "Webhook HMAC secret; required to accept webhooks.", secret=True)
    github_app_id: str | None = setting(None, parse.text, "GitHub App id.")
    github_client_id: str | None = setting(None, parse.text, "GitHub App client id (sign-in).")
    github_client_secret: Secret | None = setting(
        None, parse.secret, "GitHub App client secret (sign-in).", secret=True)
    github_private_key: Secret | None = setting(
        None, parse.secret, "GitHub App private key, PEM text.", secret=True)
    github_private_key_file: Path | None = setting(
        None, parse.path, "GitHub App private key, path to a PEM file.")
    github_api_url: str = setting("https://api.github.com", parse.url,
                                  "GitHub REST API base (GitHub Enterprise: https://HOST/api/v3).")
    github_url: str = setting("https://github.com", parse.url,
                              "GitHub web base; clone URLs are built from it.")
    llm_anthropic_url: str = setting(
        "https://api.anthropic.com", parse.url,
        "Where the LLM gateway sends /llm/anthropic/ calls (the Anthropic API; tests point it "
        "at a fake provider). Agents reach no other host for their model calls.")
    llm_openai_url: str = setting(
        "https://api.openai.com", parse.url,
        "Where the LLM gateway sends /llm/openai/ calls (the OpenAI API).")
    llm_gemini_url: str = setting(
        "https://generativelanguage.googleapis.com", parse.url,
        "Where the LLM gateway sends /llm/gemini/ calls (the Gemini API).")
    run_budget_usd: float = setting(
        0.0, parse.money,
        "Most a run (one attempt of a task) may spend on model calls through the LLM gateway, "
        "in USD; 0: no budget. Past it the next call is refused (402) and the task fails at "
        "stage budget.")
    user_daily_budget_usd: float = setting(
        0.0, parse.money,
        "Most one requester's runs may spend together on model calls per UTC day, in USD; "
        "0: no budget. Past it their next call is refused (402) and that task fails at stage "
        "budget.")
    mention: str = setting("porter", parse.handle, "The handle that triggers Porter.")
    min_permission: str = setting("write", parse.choice("write", "maintain", "admin"),
                                  "Least repository permission a requester needs.")
    allowlist: tuple[str, ...] = setting(
        (), parse.name_list,
        "Owners or owner/repo names Porter serves; empty serves every installation.")
    allow_workflow_changes: bool = setting(
        False, parse.flag,
        "Let agents change files under .github/ (workflows, actions: they run with the "
        "repository's secrets).")
    secret_keys: Secret | None = setting(
        None, parse.secret,
        "Key ring for secrets at rest: kid:base64key, comma-separated, newest first. "
        "Generated into a key file beside the database when unset.", secret=True)
    admin_token: Secret | None = setting(
        None, parse.secret, "Bearer token for the JSON API and admin CLI calls.", secret=True)
    admin_logins: tuple[str, ...] = setting(
        (), parse.name_list,
        "GitHub logins (comma-separated) who see every task, the audit log and /setup in the "
        "web app.")
    session_hours: int = setting(
        168, parse.positive, "Hours a web sign-in lasts before GitHub is asked again.")
    runner: str | None = setting(
        None, parse.choice("fly", "local"),
        "Where agents run: fly or local (default: fly when a Fly token is set).")
    fly_api_token: Secret | None = setting(
        None, parse.secret, "Fly.io token (fly tokens create deploy).", secret=True)
    fly_app: str | None = setting(None, parse.text, "Fly app that hosts agent machines.")
    fly_region: str = setting("iad", parse.text, "Fly region for agent machines.")
    fly_api_url: str = setting("https://api.machines.dev", parse.url, "Fly Machines API base.")
    agent_image: str | None = setting(
        None, parse.text,
        "Container image the agents run in on Fly, built from container/ "
        "(docs/operator.md); the fly runner starts no machine without it.")
    default_agent: str = setting("claude", parse.text, "Agent used when a comment names none.")
    fly_cpu_kind: str = setting("shared", parse.choice("shared", "performance"),
                                "Fly guest CPU kind for agent machines.")
    fly_cpus: int = setting(2, parse.whole, "Fly guest CPUs for agent machines.")
    fly_memory_mb: int = setting(4096, parse.whole, "Fly guest memory (MB) for agent machines.")
    max_live_tasks: int = setting(
        4, parse.whole, "Most agent machines alive at once; more tasks wait, queued, in order.")
    max_live_per_installation: int = setting(
        2, parse.whole, "Most agent machines alive at once for one GitHub App installation.")
    job_concurrency: int = setting(
        16, parse.positive,
        "Most jobs running at once, of each sort: GitHub writes (different installations' side "
        "by side, one installation's always one at a time), and the rest (Fly machines, "
        "commands, notifications).")
    job_lease: int = setting(
        30, parse.positive, "Seconds a job claimed by a Porter process stays its own without "
        "renewal (renewed every third of it while the job runs). When a process dies, other "
        "replicas take its jobs once their leases run out; sooner on the same host.")
    watchdog_interval: int = setting(5, parse.whole, "Seconds between watchdog passes.")
    delivery_reconcile_interval: int = setting(
        300, parse.whole, "Seconds between passes that look for webhook deliveries that never "
        "reached Porter and ask GitHub to send them again (GitHub never does on its own); "
        "0: off. Needs the GitHub App.")
    watchdog_exit_grace: int = setting(
        10, parse.whole, "Seconds a machine that exited without reporting is given for its "
        "result to arrive before its task fails.")
    retention_days: int = setting(
        30, parse.whole,
        "Days the run logs and events of a finished task are kept; older ones are deleted "
        "hourly, with the machines' log files (the task rows stay). 0 keeps everything.")
    artifact_retention_days: int = setting(
        30, parse.whole,
        "Days a run's artifacts (its log, verification output and changeset) are kept; older "
        "ones are deleted hourly by the watchdog. 0 keeps them all.")
    task_timeout: int = setting(3600, parse.whole, "Seconds a task may run.")
    heartbeat_timeout: int = setting(
        120, parse.whole, "Seconds of heartbeat silence before a run is declared lost.")
    max_body_bytes: int = setting(GITHUB_MAX_PAYLOAD + 1024 * 1024, parse.whole,
                                  "Largest webhook body accepted, in bytes.")
    body_timeout: int = setting(
        10, parse.positive,
        "Seconds a webhook body may take to arrive once its headers have; slower ones are "
        "answered 408 and the connection closed (GitHub sends within seconds).")
    max_inflight_body_bytes: int = setting(
        64 * 1024 * 1024, parse.whole,
        "Most bytes of webhook bodies read at once, across all requests (by Content-Length "
        "when given); bodies that do not fit are answered 503 with Retry-After, unread.")
    notify_webhook_url: str | None = setting(
        None, parse.url,
        "Where to POST a signed notification (Standard Webhooks) when a task ends; needs "
        "PORTER_NOTIFY_WEBHOOK_SECRET (docs/operator.md, Notifications).", secret=True)
    notify_webhook_secret: Secret | None = setting(
        None, parse.webhook_secret,
        "Signing secret for PORTER_NOTIFY_WEBHOOK_URL: whsec_ and the base64 of 24 to 64 random "
        "bytes.", secret=True)
    notify_slack_url: Secret | None = setting(
        None, parse.secret_url,
        "A Slack incoming webhook URL, told in one message when a task ends.", secret=True)
    log_level: str = setting("info", parse.choice("debug", "info", "warning", "error"),
                             "Log level.")
    log_format: str = setting(
        "auto", parse.choice("auto", "json", "text"),
        "How `porter serve` writes log lines to stderr: json (one object a line, for a log "
        "collector), text (for people), or auto: text when stderr is a terminal, else json.")
    sandbox_read_only_paths: tuple[Path, ...] = setting(
        (), parse.path_list,
        "Extra host paths (colon-separated, absolute) the local runner shows read-only in "
        "the agent's sandbox, e.g. an agent CLI installed outside /usr.")
    local_runner_unsandboxed: bool = setting(
        False, parse.flag,
        "DANGEROUS: run local agents without the bubblewrap sandbox, where they can read "
        "Porter's secrets and other runs. Only for trusted agents on hosts without bwrap.")
    # Read from the PORTER_* names with a pattern (see from_mapping), not from one name each.
    agent_commands: dict[str, tuple[str, ...]] = field(default_factory=dict)
    agent_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    agent_dialects: dict[str, str] = field(default_factory=dict)
    agent_secrets: dict[str, Secret] = field(default_factory=dict)
    unknown_names: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> Settings:
        """Parse every PORTER_* name; raise ConfigError naming each bad one."""
        values: dict[str, Any] = {}
        problems: list[str] = []
        for declared in SETTINGS:
            raw = env.get(declared.name)
            if raw is None or raw.strip() == "":
                continue
            try:
                values[declared.field] = declared.parse(raw.strip())
            except ValueError as exc:
                problems.append(f"{declared.name}: expected {exc}, got {_shown(declared, raw)}")
        commands: dict[str, tuple[str, ...]] = {}
        keys: dict[str, tuple[str, ...]] = {}
        dialects: dict[str, str] = {}
        secrets: dict[str, Secret] = {}
        unknown: list[str] = []
        for name, raw in env.items():
            if not name.startswith("PORTER_") or name in BY_NAME:
                continue
            if (operator_secret := OPERATOR_SECRET.fullmatch(name)) is not None:
                if raw.strip():
                    secrets[operator_secret.group(1)] = Secret(raw.strip())
                continue
            if (listed := AGENT_KEYS.fullmatch(name)) is not None:
                names = tuple(n.strip().upper() for n in raw.split(",") if n.strip())
                if not all(re.fullmatch(r"[A-Z][A-Z0-9_]*", n) for n in names):
                    problems.append(f"{name}: expected comma-separated environment variable "
                                    f"names, got {raw.strip()[:60]!r}")
                    continue
                keys[listed.group(1).lower().replace("_", "-")] = names
                continue
            if (spoken := AGENT_DIALECT.fullmatch(name)) is not None:
                dialect = raw.strip().lower()
                if dialect not in AGENT_DIALECTS:
                    problems.append(f"{name}: expected one of {', '.join(AGENT_DIALECTS)}, "
                                    f"got {raw.strip()[:60]!r}")
                    continue
                dialects[spoken.group(1).lower().replace("_", "-")] = dialect
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
        values["agent_dialects"] = dialects
        values["agent_secrets"] = secrets
        values["unknown_names"] = tuple(sorted(unknown))
        return cls(**values)

    @property
    def effective_runner(self) -> str:
        if self.runner:
            return self.runner
        return "fly" if self.fly_api_token else "local"

    @property
    def database_file(self) -> Path | None:
        """The SQLite file, or None when the database is PostgreSQL."""
        return self.database if isinstance(self.database, Path) else None

    @property
    def store_location(self) -> Path | str:
        """What `Store.open` takes: the SQLite file, or the PostgreSQL URL with its password."""
        return self.database if isinstance(self.database, Path) else self.database.get()

    @property
    def data_directory(self) -> Path:
        """PORTER_DATA_DIR, else the SQLite file's directory, else ./porter-data."""
        if self.data_dir is not None:
            return self.data_dir
        file = self.database_file
        return file.parent if file is not None else Path("porter-data")

    @property
    def runs_dir(self) -> Path:
        """Where the local runner writes each run's machine log."""
        return self.data_directory / "runs"

    @property
    def keys_file(self) -> Path:
        """The generated key ring: beside a SQLite file, named after it (where it always was),
        or porter.keys in the data directory."""
        file = self.database_file
        if file is not None:
            return file.with_name(file.name + ".keys")
        return self.data_directory / "porter.keys"

    def missing(self) -> dict[str, list[str]]:
        """What each capability that applies still needs, by setting name; [] is ready."""
        return {capability.name: capability.unmet(self) for capability in CAPABILITIES
                if capability.runner in (None, self.effective_runner)}

    def suggestions(self) -> list[str]:
        """One line per unknown PORTER_* name, with the closest real name."""
        lines = []
        for name in self.unknown_names:
            close = difflib.get_close_matches(name, list(BY_NAME), n=1, cutoff=0.75)
            hint = f"; did you mean {close[0]}?" if close else ""
            lines.append(f"{name} is not a Porter setting{hint}")
        return lines

    def value_of(self, declared: Setting) -> Any:
        return getattr(self, declared.field)


@dataclass(frozen=True)
class Setting:
    """One PORTER_* name, read from its field's declaration."""

    name: str
    field: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    secret: bool


SETTINGS: tuple[Setting, ...] = tuple(
    Setting(env_name(f.name), f.name, f.metadata["parse"], f.default, f.metadata["help"],
            f.metadata["secret"])
    for f in fields(Settings)
    if "parse" in f.metadata
)
BY_NAME = {declared.name: declared for declared in SETTINGS}
AGENT_COMMAND = re.compile(r"PORTER_AGENT_([A-Z0-9_]+)_COMMAND")
AGENT_KEYS = re.compile(r"PORTER_AGENT_([A-Z0-9_]+)_KEYS")
AGENT_DIALECT = re.compile(r"PORTER_AGENT_([A-Z0-9_]+)_DIALECT")
# The provider APIs the LLM gateway relays (porter/agent_wiring.py), and none.
AGENT_DIALECTS = ("anthropic", "openai", "gemini", "none")
OPERATOR_SECRET = re.compile(r"PORTER_SECRET_([A-Z][A-Z0-9_]*)")


@dataclass(frozen=True)
class Capability:
    """Something Porter does only once the settings it needs are set."""

    name: str
    label: str  # how `porter doctor` names it
    # Fields it needs; each inner tuple is met by any one of its fields.
    needs: tuple[tuple[str, ...], ...]
    blocking: bool  # without it Porter cannot do its job, and `porter doctor` exits 1
    runner: str | None = None  # needed only when agents run on this runner

    def unmet(self, settings: Settings) -> list[str]:
        return [" or ".join(env_name(name) for name in either) for either in self.needs
                if not any(getattr(settings, name) for name in either)]


CAPABILITIES: tuple[Capability, ...] = (
    Capability("webhooks", "accept webhooks", (("github_webhook_secret",),), blocking=True),
    Capability("github", "act on GitHub as the App",
               (("github_app_id",), ("github_private_key", "github_private_key_file")),
               blocking=True),
    Capability("api", "JSON API for operators", (("admin_token",),), blocking=False),
    Capability("fly", "start agent machines on Fly",
               (("fly_api_token",), ("fly_app",), ("agent_image",)), blocking=True, runner="fly"),
)


def _shown(declared: Setting, raw: str) -> str:
    if declared.secret:
        return "a value (hidden)"
    raw = without_password(raw)  # a URL's password, cut before the ellipsis could split it
    return repr(raw if len(raw) <= 60 else raw[:57] + "...")
