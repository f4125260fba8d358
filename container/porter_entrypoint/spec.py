"""What the machine was started with: its environment, the runner's arguments, and the run spec.

Parsing only: nothing here talks to Porter, and only `sandbox_policy` looks at the host (for
the path of bwrap).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
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


@dataclass(frozen=True)
class AgentSpec:
    name: str
    argv: list[str]
    env: dict[str, str]
    output: str


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
    """Where workspaces go: the runner's argument, else PORTER_WORKDIR, else the temp dir."""
    return flag_value(argv, WORKDIR) or environ.get("PORTER_WORKDIR") or None


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
    )
