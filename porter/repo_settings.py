"""What a repository's `.porter.yml` asks of a task, read at dispatch and bounded by the operator.

Only the default branch's file counts (porter/github_repo_files.py): a pull request's branch is
written by whoever can push to it. The outcome is one of three: the config (or none) to record on
the task, problems that fail the task before any machine exists, or a GitHub error worth trying
again on the next dispatcher pass.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from typing import Any

from porter.agents import agent_names
from porter.errors import GitHubError
from porter.github import GitHubApp
from porter.github_repo_files import ConfigFile, read_config_file
from porter.models import Task
from porter.neutralize import neutralize
from porter.repo_config import FILE_NAME, Bounds, ConfigProblems, parse_repo_config
from porter.settings import Settings


@dataclass(frozen=True)
class Loaded:
    """The default branch's config (None: no file, the operator's defaults apply)."""

    config: dict[str, Any] | None = None  # RepoConfig as JSON, for the task's context
    commit: str | None = None  # the default branch's commit it was read at


@dataclass(frozen=True)
class Refused:
    """The file cannot be used; `reason` (already inert) is for the status comment."""

    reason: str


@dataclass(frozen=True)
class Later:
    """GitHub failed in a way that may pass: the task stays queued."""

    message: str


def bounds(settings: Settings, *, agent: str | None = None) -> Bounds:
    """What the operator lets a repository ask for. Pure but for reading the settings."""
    budget = settings.run_budget_usd
    return Bounds(max_timeout_s=settings.task_timeout,
                  max_budget_usd=budget if budget > 0 else None,  # 0: no per-run budget
                  agents=agent_names(settings),
                  default_agent=agent or settings.default_agent)


async def load(github: GitHubApp, task: Task, *, limits: Bounds) -> Loaded | Refused | Later:
    """The task's repository's `.porter.yml` from its default branch, parsed within `limits`
    (their default agent replaced by the task's)."""
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
    if not isinstance(found, ConfigFile):
        return Refused(neutralize(found.message))
    limits = dataclasses.replace(limits, default_agent=task.agent)
    # Up to 64 KiB of YAML walked node by node: off the event loop, which serves every task.
    parsed = await asyncio.to_thread(parse_repo_config, found.content, bounds=limits)
    if isinstance(parsed, ConfigProblems):
        return Refused(problems_reason(parsed))
    return Loaded(dataclasses.asdict(parsed), found.commit)


def problems_reason(problems: ConfigProblems) -> str:
    """One line for the status comment: every problem, each naming its line. Pure."""
    # The file is named once: the status comment keeps only the first 300 characters.
    listed = [f"line {problem.line}: " + (f"{problem.key}: " if problem.key else "")
              + problem.message for problem in problems.problems]
    if problems.more:
        listed.append(f"and {problems.more} more")
    return neutralize(f"{FILE_NAME} on the default branch is invalid: " + "; ".join(listed))
