"""Porter's own record types, as the store returns them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from porter.states import LIVE_RUN, JobState, RunState, TaskState


@dataclass(frozen=True)
class Task:
    id: int
    repo: str
    installation_id: int | None
    issue_number: int
    is_pull_request: bool
    comment_kind: str
    comment_id: int
    comment_url: str
    requester: str
    requester_id: int | None
    agent: str
    model: str | None
    instruction: str
    state: TaskState
    stage: str | None
    reason: str | None
    attempt: int
    created_at: float
    updated_at: float
    delivery_id: str
    context: dict[str, Any] = field(default_factory=dict)
    status_comment_id: int | None = None
    base_ref: str | None = None
    base_sha: str | None = None
    branch: str | None = None
    commit_sha: str | None = None
    pr_number: int | None = None
    pr_url: str | None = None
    summary: str | None = None
    cost_usd: float | None = None
    files_changed: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    authorized_at: float | None = None
    # Whose agent keys and Fly account the current attempt runs with: "requester" or "operator"
    # (porter/keys.py); never the values.
    key_source: str | None = None
    fly_source: str | None = None
    # Where cost_usd came from: "porter" (the LLM gateway's metered calls) or "agent" (its report).
    cost_source: str | None = None

    @property
    def owner(self) -> str:
        return self.repo.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.repo.split("/", 1)[1]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        return data


@dataclass(frozen=True)
class TaskEvent:
    id: int
    task_id: int
    attempt: int
    at: float
    kind: str
    message: str
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    key: str
    task_id: int | None
    installation_id: int | None
    payload: dict[str, Any]
    state: JobState
    attempts: int
    run_after: float
    last_error: str | None
    result: dict[str, Any] | None
    generation: int = 0
    progress: dict[str, Any] = field(default_factory=dict)


# Task columns services may set directly; state changes go through Store.transition.
TASK_FIELDS = frozenset({
    "status_comment_id", "base_ref", "base_sha", "branch", "commit_sha", "pr_number", "pr_url",
    "summary", "cost_usd", "files_changed", "started_at", "finished_at", "installation_id",
    "authorized_at", "key_source", "fly_source", "cost_source",
    "agent", "model",  # a repository's .porter.yml may change them at dispatch
})


@dataclass(frozen=True)
class IntakeResult:
    """What recording a delivery did: a new task, a new command job, or nothing (a duplicate)."""

    duplicate: bool
    task_id: int | None = None
    job_id: int | None = None


@dataclass(frozen=True)
class TaskFilter:
    """Which tasks to list; None matches anything. Every field set must hold."""

    repo: str | None = None
    state: str | None = None
    agent: str | None = None
    requester: str | None = None
    issue: int | None = None  # the issue or pull request the task was asked on
    branch: str | None = None  # the base branch (`base_ref`)
    # Who may see what: only tasks of these repositories; None: every repository (admins).
    repos: tuple[str, ...] | None = None


@dataclass(frozen=True)
class AgentRun:
    """One attempt of a task on a machine."""

    id: str
    task_id: int
    attempt: int
    token_hash: str
    runner: str
    machine_id: str | None
    state: RunState
    stage: str | None
    message: str | None
    last_heartbeat_at: float | None
    cancel_requested: bool
    log_bytes: int
    result: dict[str, Any] | None
    created_at: float
    completed_at: float | None
    # Whose Fly account holds the machine (a user id); None: the operator's runner.
    runner_owner: int | None = None

    @property
    def live(self) -> bool:
        return self.state in LIVE_RUN


@dataclass(frozen=True)
class User:
    """A GitHub account that signed in to the web app."""

    id: int
    login: str
    name: str | None
    avatar_url: str | None
    default_agent: str | None
    default_model: str | None
    fly_app: str | None
    token_expires_at: float | None
    created_at: float
    last_sign_in_at: float | None


@dataclass(frozen=True)
class Session:
    user_id: int
    csrf: str
    expires_at: float


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: float
    actor: str
    actor_id: int | None
    action: str
    target: str
    source: str  # page | api | comment | cli
    address: str
    detail: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
