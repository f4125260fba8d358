"""What a recorded `.porter.yml` changes about a task: the agent and model that run, how long an
attempt may last and what one run may spend (porter/repo_settings.py; rules in
docs/repo-config.md)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from porter.models import Task
from porter.repo_config import RepoConfig
from porter.repo_settings import AgentChoice, Refused, choose_agent, run_budget, task_timeout
from porter.settings import Settings
from porter.states import TaskState

OPERATOR = "claude"  # the operator's default agent
BASE = Task(
    id=1, repo="octo/hello", installation_id=42, issue_number=9, is_pull_request=False,
    comment_kind="issue", comment_id=5001, comment_url="https://github.com/octo/hello/issues/9#c",
    requester="wes", requester_id=7, agent=OPERATOR, model=None, instruction="fix it",
    state=TaskState.QUEUED, stage=None, reason=None, attempt=1, created_at=0.0, updated_at=0.0,
    delivery_id="d-1", context={},
)


def named(agent: str, model: str | None = None) -> Task:
    """The comment said `@porter <agent> [--model <model>] …`."""
    context: dict[str, Any] = {"agent_named": True}
    if model is not None:
        context["model_named"] = True
    return dataclasses.replace(BASE, agent=agent, model=model, context=context)


def unnamed(agent: str = OPERATOR, model: str | None = None, *,
            model_named: bool = False) -> Task:
    """No agent in the comment: `agent` and `model` are the requester's or operator's defaults
    (or, with model_named, the comment's `--model`)."""
    context = {"model_named": True} if model_named else {}
    return dataclasses.replace(BASE, agent=agent, model=model, context=context)


def config(**values: Any) -> dict[str, Any]:
    """As recorded on the task: RepoConfig as a dict (lists for tuples, as after JSON)."""
    recorded = dataclasses.asdict(RepoConfig(**values))
    return {k: list(v) if isinstance(v, tuple) else v for k, v in recorded.items()}


def choose(task: Task, recorded: dict[str, Any] | None) -> AgentChoice | Refused:
    return choose_agent(task, recorded, default_agent=OPERATOR)


# -- the comment names an agent ---------------------------------------------------------------


def test_a_named_agent_the_file_does_not_allow_is_refused_listing_the_allowed_ones() -> None:
    refused = choose(named("aider"), config(agents=("codex", "claude")))
    assert isinstance(refused, Refused)
    assert "only claude and codex, not aider" in refused.reason
    assert ".porter.yml" in refused.reason


def test_a_named_agent_runs_with_its_comments_model_over_the_files() -> None:
    assert choose(named("codex", "o3"), config(agent="codex", model="gpt-5")) == \
        AgentChoice("codex", "o3")


def test_the_files_model_goes_only_with_the_files_agent() -> None:
    assert choose(named("codex"), config(agent="codex", model="gpt-5")) == \
        AgentChoice("codex", "gpt-5")
    assert choose(named("claude"), config(agent="codex", model="gpt-5")) == \
        AgentChoice("claude", None)


def test_a_named_agent_runs_when_the_file_lists_no_agents() -> None:
    assert choose(named("aider"), config(agent="codex")) == AgentChoice("aider", None)


# -- the comment names none -------------------------------------------------------------------


def test_the_files_agent_and_model_replace_the_requesters_defaults() -> None:
    assert choose(unnamed("aider", "sonnet"), config(agent="codex", model="gpt-5")) == \
        AgentChoice("codex", "gpt-5")
    assert choose(unnamed("aider", "sonnet"), config(agent="codex")) == AgentChoice("codex", None)


def test_a_comments_model_without_an_agent_still_wins() -> None:
    task = unnamed(model="o3", model_named=True)
    assert choose(task, config(agent="codex", model="gpt-5")) == AgentChoice("codex", "o3")
    assert choose(task, config(model="opus")) == AgentChoice(OPERATOR, "o3")


def test_the_requesters_default_agent_runs_when_the_file_allows_it() -> None:
    assert choose(unnamed("codex", "o3"), config(agents=("codex", "claude"), model="opus")) == \
        AgentChoice("codex", "o3")


def test_a_requesters_default_agent_the_file_leaves_out_gives_way_to_the_operators() -> None:
    assert choose(unnamed("aider", "sonnet"), config(agents=("claude",), model="opus")) == \
        AgentChoice(OPERATOR, "opus")
    assert choose(unnamed("aider", "sonnet"), config(agents=("claude",))) == \
        AgentChoice(OPERATOR, None)


def test_the_files_model_without_an_agent_is_for_the_operators_default() -> None:
    assert choose(unnamed(), config(model="opus")) == AgentChoice(OPERATOR, "opus")
    assert choose(unnamed(OPERATOR, "sonnet"), config(model="opus")) == \
        AgentChoice(OPERATOR, "opus")
    assert choose(unnamed(OPERATOR, "sonnet"), config()) == AgentChoice(OPERATOR, "sonnet")


@pytest.mark.parametrize("task", [named("aider", "m"), unnamed("codex", "o3")])
def test_without_a_file_the_task_runs_as_it_was_asked(task: Task) -> None:
    assert choose(task, None) == AgentChoice(task.agent, task.model)


# -- time and money ---------------------------------------------------------------------------

SETTINGS = Settings.from_mapping({"PORTER_TASK_TIMEOUT": "3600", "PORTER_RUN_BUDGET_USD": "5"})


def recorded(**values: Any) -> Task:
    return dataclasses.replace(BASE, context={"repo_config": config(**values)})


def test_the_files_timeout_applies_and_the_operators_otherwise() -> None:
    assert task_timeout(recorded(timeout_s=600), SETTINGS) == 600
    assert task_timeout(recorded(), SETTINGS) == 3600
    assert task_timeout(BASE, SETTINGS) == 3600
    # The operator lowered their limit after the file was read: theirs holds.
    assert task_timeout(recorded(timeout_s=600),
                        Settings.from_mapping({"PORTER_TASK_TIMEOUT": "300"})) == 300


def test_the_files_budget_applies_and_says_where_it_came_from() -> None:
    assert run_budget(recorded(budget_usd=0.5), SETTINGS) == (0.5, "budget_usd in .porter.yml")
    assert run_budget(recorded(), SETTINGS) == (5.0, "PORTER_RUN_BUDGET_USD")
    assert run_budget(BASE, Settings.from_mapping({})) == (None, "PORTER_RUN_BUDGET_USD")
    # A repository may set a budget where the operator sets none.
    assert run_budget(recorded(budget_usd=2), Settings.from_mapping({})) == \
        (2.0, "budget_usd in .porter.yml")
