"""What a repository's `.porter.yml` asks of a task, read at dispatch and bounded by the operator.

Only the default branch's file counts (porter/github_repo_files.py): a pull request's branch is
written by whoever can push to it. The outcome is one of three: the config (or none) to record on
the task, problems that fail the task before any machine exists, or a GitHub error worth trying
again on the next dispatcher pass. What the recorded config then changes about the task (its
agent and model, how long it may run, what one run may spend) is decided here too, purely.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from porter.agents import agent_names
from porter.errors import GitHubError
from porter.github import GitHubApp
from porter.github_repo_files import ConfigFile, NoConfig, read_config_file
from porter.models import Task
from porter.neutralize import neutralize
from porter.repo_config import FILE_NAME, Bounds, ConfigProblems, parse_repo_config
from porter.settings import Settings


@dataclass(frozen=True)
class Loaded:
    """The default branch's config (None: no file, the operator's defaults apply)."""

    config: dict[str, Any] | None = None  # RepoConfig as JSON, for the task's context
    commit: str | None = None  # the default branch's commit it was read at (or looked at)
    branch: str | None = None  # the default branch


@dataclass(frozen=True)
class Refused:
    """The file cannot be used; `reason` (already inert) is for the status comment."""

    reason: str


@dataclass(frozen=True)
class Later:
    """GitHub failed in a way that may pass: the task stays queued."""

    message: str


def bounds(settings: Settings) -> Bounds:
    """What the operator lets a repository ask for. Pure but for reading the settings."""
    budget = settings.run_budget_usd
    return Bounds(max_timeout_s=settings.task_timeout,
                  max_budget_usd=budget if budget > 0 else None,  # 0: no per-run budget
                  agents=agent_names(settings),
                  default_agent=settings.default_agent)


async def load(github: GitHubApp, task: Task, *, limits: Bounds) -> Loaded | Refused | Later:
    """The task's repository's `.porter.yml` from its default branch, parsed within `limits`."""
    if task.installation_id is None:
        return Loaded()  # no installation, no contents API: nothing to read
    try:
        found = await read_config_file(github.installation(task.installation_id), task.repo)
    except GitHubError as exc:
        if exc.retryable:
            return Later(exc.message)
        return Refused(neutralize(f"{FILE_NAME} could not be read: {exc.message}"))
    if found is None:
        return Loaded()
    if isinstance(found, NoConfig):
        return Loaded(commit=found.commit, branch=found.branch)
    if not isinstance(found, ConfigFile):
        return Refused(neutralize(found.message))
    # Up to 64 KiB of YAML walked node by node: off the event loop, which serves every task.
    parsed = await asyncio.to_thread(parse_repo_config, found.content, bounds=limits)
    if isinstance(parsed, ConfigProblems):
        return Refused(problems_reason(parsed))
    return Loaded(dataclasses.asdict(parsed), found.commit, found.branch)


def problems_reason(problems: ConfigProblems) -> str:
    """One line for the status comment: every problem, each naming its line. Pure."""
    # The file is named once: the status comment shows 1,200 characters of a dispatch failure.
    listed = [f"line {problem.line}: " + (f"{problem.key}: " if problem.key else "")
              + problem.message for problem in problems.problems]
    if problems.more:
        listed.append(f"and {problems.more} more")
    return neutralize(f"{FILE_NAME} on the default branch is invalid: " + "; ".join(listed))


# -- what the recorded config changes about a task (pure) --------------------------------------


@dataclass(frozen=True)
class AgentChoice:
    """The agent and model a task runs with in its repository."""

    agent: str
    model: str | None


def choose_agent(task: Task, config: Mapping[str, Any] | None, *,
                 default_agent: str) -> AgentChoice | Refused:
    """The agent and model that run `task` under its repository's `config` (a RepoConfig as
    recorded on the task; None: no file), or why none may. `default_agent` is the operator's.

    A comment's choice beats the file's, and the file's beats the requester's own default
    (/settings): the file speaks for the repository, a requester's default for every repository.
    docs/repo-config.md states these rules for users."""
    if config is None:
        return AgentChoice(task.agent, task.model)
    file_agent = _text(config.get("agent"))
    file_model = _text(config.get("model"))
    listed = config.get("agents")
    allowed = None if listed is None else frozenset(str(name) for name in listed)
    # Intake records what the comment said; task.model alone may be the requester's default.
    said_model = task.model if task.context.get("model_named") is True else None
    if task.context.get("agent_named") is True:
        if allowed is not None and task.agent not in allowed:
            return Refused(neutralize(
                f"{FILE_NAME} on the default branch lets this repository use only "
                f"{_listed(allowed)}, not {task.agent}: name one of those or no agent"))
        # The comment named no --model: the file's model is for the file's agent only.
        return AgentChoice(task.agent,
                           task.model or (file_model if task.agent == file_agent else None))
    if file_agent is not None:
        return AgentChoice(file_agent, said_model or file_model)
    if allowed is None or task.agent in allowed:
        if task.agent == default_agent and file_model is not None:
            return AgentChoice(task.agent, said_model or file_model)
        return AgentChoice(task.agent, task.model)  # the requester's (or operator's) defaults
    # The requester's default agent is not allowed here; their default model was for it. The
    # file's check (porter/repo_config.py) keeps the operator's default among `agents`.
    return AgentChoice(default_agent, said_model or file_model)


def task_timeout(task: Task, settings: Settings) -> int:
    """Seconds the task's current attempt may run: `.porter.yml`'s `timeout`, else the
    operator's. Pure. Capped again: the operator may have lowered theirs since dispatch."""
    asked = _config_of(task).get("timeout_s")
    if isinstance(asked, int) and not isinstance(asked, bool) and asked > 0:
        return min(asked, settings.task_timeout)
    return settings.task_timeout


def run_budget(task: Task, settings: Settings) -> tuple[float | None, str]:
    """The USD one run of the task may spend (None: no budget) and what set it. Pure."""
    operator = settings.run_budget_usd or None  # 0: no per-run budget
    asked = _config_of(task).get("budget_usd")
    if isinstance(asked, int | float) and not isinstance(asked, bool) and asked > 0 \
            and (operator is None or asked < operator):
        return float(asked), f"budget_usd in {FILE_NAME}"
    return operator, "PORTER_RUN_BUDGET_USD"


def _config_of(task: Task) -> Mapping[str, Any]:
    config = task.context.get("repo_config")
    return config if isinstance(config, dict) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _listed(names: frozenset[str]) -> str:
    ordered = sorted(names)
    return ", ".join(ordered[:-1]) + f" and {ordered[-1]}" if len(ordered) > 1 \
        else (ordered[0] if ordered else "no agent")
