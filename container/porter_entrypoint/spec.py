"""What the machine was started with: its environment, the runner's arguments, and the run spec.

Parsing only: nothing here talks to Porter, and only `sandbox_policy` looks at the host (for
the path of bwrap).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from typing import Any

from porter_entrypoint import sandbox

# Arguments, set by whoever starts the machine (the local runner, or the image's ENTRYPOINT).
SANDBOX_RO = "--porter-sandbox-ro="
SANDBOX_HIDE = "--porter-sandbox-hide="
UNSANDBOXED = "--porter-unsandboxed"
SANDBOX_CHECK = "--porter-sandbox-check"
WORKDIR = "--porter-workdir="
AGENT_PIDFILE = "--porter-agent-pidfile="


class ConfigError(Exception):
    """The machine was started without the environment the entrypoint needs."""


@dataclass(frozen=True)
class Config:
    porter_url: str
    run_id: str
    run_token: str
    backoff_s: float | None
    complete_deadline_s: float | None
    kill_grace_s: float
    workdir: str | None
    keep_workspace: bool
    sandbox: sandbox.Policy | None  # None: the operator turned the sandbox off
    agent_pidfile: str | None = None  # where a local runner wants the agent's pid written


MAX_HOME_FILES = 16
MAX_HOME_FILE_BYTES = 64 * 1024
# The repository's setup and verify commands (porter/verification.py bounds the report the same).
MAX_COMMANDS = 50
MAX_COMMAND_BYTES = 4 * 1024
DEFAULT_VERIFY_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class AgentSpec:
    name: str
    argv: list[str]
    env: dict[str, str]
    output: str
    # Names in env whose values are not credentials; None: the spec did not say, so every value
    # is treated as one (and redacted from what the entrypoint sends).
    public_env: frozenset[str] | None = None
    home_files: dict[str, str] = field(default_factory=dict)  # relative to HOME → text
    summary_file: bool = False  # the agent writes its final message to $PORTER_SUMMARY_FILE
    idle_timeout_s: float | None = None  # stop it after this long with nothing new said

    @property
    def secrets(self) -> list[str]:
        """The env values the entrypoint must never send on (its keys, its gateway token)."""
        public = self.public_env or frozenset()
        return [value for name, value in self.env.items() if name not in public]


@dataclass(frozen=True)
class Limits:
    agent_timeout_s: float
    heartbeat_interval_s: float
    max_changeset_bytes: int
    log_chunk_bytes: int
    clone_timeout_s: float
    callback_backoff_s: float | None
    complete_deadline_s: float | None


@dataclass(frozen=True)
class Spec:
    task_id: Any
    repo: str
    clone_url: str
    clone_token: str
    base_ref: str
    base_sha: str
    agent: AgentSpec
    prompt: str
    limits: Limits
    # Absent from the spec: empty, and no verification is run or reported.
    setup: tuple[str, ...] = ()
    verify: tuple[str, ...] = ()
    verify_timeout_s: float = DEFAULT_VERIFY_TIMEOUT_S  # for each phase

    @property
    def verifies(self) -> bool:
        return bool(self.setup or self.verify)


def _float_env(environ: dict[str, str], name: str) -> float | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number") from exc
    if value < 0:
        raise ConfigError(f"{name} must not be negative")
    return value


def sandbox_policy(argv: list[str]) -> sandbox.Policy | None:
    """The sandbox the arguments ask for; None only when told --porter-unsandboxed."""
    if UNSANDBOXED in argv:
        return None
    read_only = tuple(a[len(SANDBOX_RO):] for a in argv if a.startswith(SANDBOX_RO))
    hidden = tuple(a[len(SANDBOX_HIDE):] for a in argv if a.startswith(SANDBOX_HIDE))
    for path in (*read_only, *hidden):
        if not os.path.isabs(path):
            raise ConfigError(f"sandbox paths must be absolute: {path!r}")
    return sandbox.Policy(read_only=read_only, hidden=hidden,
                          bwrap=shutil.which(sandbox.BWRAP) or sandbox.BWRAP)


def flag_value(argv: list[str], flag: str) -> str | None:
    """The value of the first `--flag=value` argument, or None when there is none."""
    return next((a[len(flag):] for a in argv if a.startswith(flag)), None)


def _workdir(environ: dict[str, str], argv: list[str]) -> str | None:
    """Where workspaces go: the runner's argument, else PORTER_WORKDIR, else the temp dir.
    Made absolute here: git clones from a directory of its own, where a relative path (the
    local runner's, beside a relative `porter.db`) would name another place."""
    given = flag_value(argv, WORKDIR) or environ.get("PORTER_WORKDIR") or None
    return os.path.abspath(given) if given else None


def load_config(environ: dict[str, str], argv: list[str]) -> Config:
    missing = [n for n in ("PORTER_URL", "PORTER_RUN_ID", "PORTER_RUN_TOKEN") if not environ.get(n)]
    if missing:
        raise ConfigError("missing environment: " + ", ".join(missing))
    if not environ["PORTER_URL"].startswith(("http://", "https://")):
        raise ConfigError("PORTER_URL must be an http(s) URL")
    run_id = environ["PORTER_RUN_ID"]
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", run_id):
        raise ConfigError("PORTER_RUN_ID has unexpected characters")
    grace = _float_env(environ, "PORTER_KILL_GRACE_S")
    return Config(
        porter_url=environ["PORTER_URL"].rstrip("/"),
        run_id=run_id,
        run_token=environ["PORTER_RUN_TOKEN"],
        backoff_s=_float_env(environ, "PORTER_CALLBACK_BACKOFF_S"),
        complete_deadline_s=_float_env(environ, "PORTER_COMPLETE_DEADLINE_S"),
        kill_grace_s=10.0 if grace is None else grace,
        workdir=_workdir(environ, argv),
        keep_workspace=environ.get("PORTER_KEEP_WORKSPACE") == "1",
        sandbox=sandbox_policy(argv),
        agent_pidfile=flag_value(argv, AGENT_PIDFILE) or None,
    )


def _require(obj: dict[str, Any], key: str, kind: type, where: str = "") -> Any:
    value = obj.get(key)
    if not isinstance(value, kind):
        raise ValueError(f"spec field {where}{key} is missing or not a {kind.__name__}")
    return value


def _number(obj: dict[str, Any], key: str, default: float | None) -> float | None:
    value = obj.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"spec field limits.{key} must be a positive number")
    return float(value)


def _public_env(agent: dict[str, Any]) -> frozenset[str] | None:
    names = agent.get("public_env")
    if names is None:
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError("spec field agent.public_env must be a list of names")
    return frozenset(names)


def _home_files(agent: dict[str, Any]) -> dict[str, str]:
    """Files for the agent's HOME: plain relative paths that stay inside it."""
    files = agent.get("home_files") or {}
    if not isinstance(files, dict) or len(files) > MAX_HOME_FILES:
        raise ValueError(f"spec field agent.home_files must map at most {MAX_HOME_FILES} "
                         "paths to text")
    for path, text in files.items():
        parts = path.split("/") if isinstance(path, str) else []
        if not parts or any(p in ("", ".", "..") for p in parts) or "\0" in path:
            raise ValueError(f"spec field agent.home_files has a path outside HOME: {path!r}")
        if not isinstance(text, str) or len(text.encode()) > MAX_HOME_FILE_BYTES:
            raise ValueError(f"spec field agent.home_files[{path!r}] must be text of at most "
                             f"{MAX_HOME_FILE_BYTES} bytes")
    return dict(files)


def _idle_timeout(agent: dict[str, Any]) -> float | None:
    value = agent.get("idle_timeout_s")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError("spec field agent.idle_timeout_s must be a positive number")
    return float(value)


def _commands(raw: dict[str, Any], key: str) -> tuple[str, ...]:
    commands = raw.get(key)
    if commands is None:
        return ()
    if not isinstance(commands, list) or not all(
        isinstance(c, str) and c.strip() and len(c.encode()) <= MAX_COMMAND_BYTES
        for c in commands
    ):
        raise ValueError(f"spec field {key} must be a list of commands of at most "
                         f"{MAX_COMMAND_BYTES} bytes")
    return tuple(commands)


def parse_spec(raw: dict[str, Any]) -> Spec:
    """Validate the spec Porter served; raise ValueError naming the offending field."""
    agent = _require(raw, "agent", dict)
    argv = _require(agent, "argv", list, "agent.")
    if not argv or not all(isinstance(a, str) and a for a in argv):
        raise ValueError("spec field agent.argv must be a non-empty list of strings")
    env = agent.get("env") or {}
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise ValueError("spec field agent.env must map strings to strings")
    limits = raw.get("limits") or {}
    if not isinstance(limits, dict):
        raise ValueError("spec field limits must be an object")
    base_sha = _require(raw, "base_sha", str)
    if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", base_sha):
        raise ValueError("spec field base_sha is not a full commit id")
    setup, verify = _commands(raw, "setup"), _commands(raw, "verify")
    if len(setup) + len(verify) > MAX_COMMANDS:
        raise ValueError(f"spec fields setup and verify hold more than {MAX_COMMANDS} commands")
    verify_timeout = raw.get("verify_timeout_s", DEFAULT_VERIFY_TIMEOUT_S)
    if isinstance(verify_timeout, bool) or not isinstance(verify_timeout, int | float) \
            or not verify_timeout > 0:
        raise ValueError("spec field verify_timeout_s must be a positive number")
    clone_url = _require(raw, "clone_url", str)
    if clone_url.startswith("-"):
        raise ValueError("spec field clone_url is not a URL or path")
    return Spec(
        task_id=raw.get("task_id"),
        repo=str(raw.get("repo") or ""),
        clone_url=clone_url,
        clone_token=str(raw.get("clone_token") or ""),
        base_ref=str(raw.get("base_ref") or ""),
        base_sha=base_sha,
        agent=AgentSpec(
            name=str(agent.get("name") or argv[0]),
            argv=list(argv),
            env=dict(env),
            output=str(agent.get("output") or "text"),
            public_env=_public_env(agent),
            home_files=_home_files(agent),
            summary_file=agent.get("summary_file") is True,
            idle_timeout_s=_idle_timeout(agent),
        ),
        prompt=_require(raw, "prompt", str),
        limits=Limits(
            agent_timeout_s=_number(limits, "agent_timeout_s", 3000.0) or 3000.0,
            heartbeat_interval_s=_number(limits, "heartbeat_interval_s", 15.0) or 15.0,
            max_changeset_bytes=int(_number(limits, "max_changeset_bytes", 10 << 20) or 0),
            log_chunk_bytes=max(1024, int(_number(limits, "log_chunk_bytes", 16384) or 0)),
            clone_timeout_s=_number(limits, "clone_timeout_s", 900.0) or 900.0,
            callback_backoff_s=_number(limits, "callback_backoff_s", None),
            complete_deadline_s=_number(limits, "complete_deadline_s", None),
        ),
        setup=setup,
        verify=verify,
        verify_timeout_s=float(verify_timeout),
    )
