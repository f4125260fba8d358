"""What the feed and the task page show of a task, built once for the page and again for each
live update, so a row or a header swapped in over SSE is the very HTML the page would render.

Links are built from Porter's own settings and ids, never taken from stored URLs: a link's
scheme is then always GitHub's or Fly's, whatever a payload said.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request

from porter.agents import Registry
from porter.models import AgentRun, Task
from porter.states import CANCELLABLE
from porter.status import COST_SOURCES
from porter.store.llm import CallTotals
from porter.web.artifacts_page import artifact_rows
from porter.web.render import fragment
from porter.web.services import Services, services
from porter.web.task_access import may_control
from porter.web.viewer import Viewer

FLY_DASHBOARD = "https://fly.io/apps"
LOG_TAIL_CHARS = 64 * 1024


def row_html(svc: Services, task: Task) -> str:
    """One feed row (porter/web/templates/_task_row.html)."""
    return fragment("_task_row.html", task=task, now=svc.clock(),
                    github_url=svc.settings.github_url)


def row_key(task: Task) -> tuple[object, ...]:
    """What a feed row shows: a change to anything else (a status comment's id, the context
    dispatch learned) needs no new row."""
    return (task.state, task.stage, task.agent, task.model, task.instruction, task.cost_usd,
            task.pr_number, task.attempt)


async def machine_url(svc: Services, run: AgentRun | None, runner_owner: int | None
                      ) -> str | None:
    """The Fly dashboard page of the run's machine; None for a local process, which has
    nowhere to link to."""
    if run is None or run.machine_id is None or run.runner != "fly":
        return None
    app = svc.settings.fly_app
    if runner_owner is not None:
        owner = await svc.store.get_user(runner_owner)
        app = owner.fly_app if owner is not None and owner.fly_app else app
    if not app:
        return None
    return f"{FLY_DASHBOARD}/{quote(app, safe='')}/machines/{quote(run.machine_id, safe='')}"


async def head_context(request: Request, viewer: Viewer, task: Task) -> dict[str, Any]:
    """The task page's header: facts, cost and usage, links, and the buttons this viewer
    may press."""
    svc = services(request)
    run = await svc.store.current_run(task.id)
    details = await svc.store.run_details(run.id) if run else {"runner_owner": None}
    result = (run.result if run else None) or {}
    cost = task.cost_usd if task.cost_usd is not None else result.get("cost_usd")
    usage = result.get("usage") if isinstance(result.get("usage"), dict) else {}
    # What Porter's LLM gateway metered beats what the agent reported (porter/gateway/).
    source = COST_SOURCES.get(task.cost_source or "") if task.cost_usd is not None \
        else COST_SOURCES["agent"] if cost is not None else None
    if (calls := await svc.store.task_calls(task.id)) is not None:
        usage = metered_usage(calls)
    cancel, retry = task.state in CANCELLABLE, task.state.terminal
    allowed = (cancel or retry) and (await may_control(request, viewer, task)).allowed
    return {
        "task": task, "run": run, "cost": cost, "cost_source": source, "usage": usage,
        "machine_url": await machine_url(svc, run, details["runner_owner"]),
        "github_url": svc.settings.github_url, "csrf": viewer.csrf,
        "can_cancel": allowed and cancel, "can_retry": allowed and retry,
    }


def metered_usage(calls: CallTotals) -> dict[str, int]:
    """The task's metered calls as the page's usage line; calls whose model has no price
    (so are not in the cost) are said."""
    usage = {"model_calls": calls.calls, "input_tokens": calls.input_tokens,
             "output_tokens": calls.output_tokens, "cache_read_tokens": calls.cache_read_tokens,
             "cache_write_tokens": calls.cache_write_tokens}
    if calls.unpriced:
        usage["calls_not_priced"] = calls.unpriced
    return usage


def head_html(context: dict[str, Any]) -> str:
    return fragment("_task_head.html", **context)


async def timeline_html(svc: Services, task: Task) -> str:
    return fragment("_task_timeline.html", events=await svc.store.task_events(task.id))


def direct_keys(svc: Services, task: Task) -> tuple[str, ...]:
    """The keys this task's agent receives as they are, in its machine's spec, because it
    cannot use the LLM gateway (porter/agents.py `direct_keys`); () when it holds none."""
    agent = Registry.from_settings(svc.settings).get(task.agent)
    return agent.direct_keys if agent is not None else ()


async def page_context(request: Request, viewer: Viewer, task: Task) -> dict[str, Any]:
    """Everything task.html renders."""
    svc = services(request)
    head = await head_context(request, viewer, task)
    run: AgentRun | None = head["run"]
    prompt, log_text, log_seq = None, "", -1
    if run is not None:
        prompt = (await svc.store.run_details(run.id))["prompt"]
        log_text, log_seq = await svc.store.run_log_tail(run.id, max_chars=LOG_TAIL_CHARS)
    return {**head, "events": await svc.store.task_events(task.id), "prompt": prompt,
            "log_text": log_text, "log_seq": log_seq,
            "artifacts": await artifact_rows(svc, task),
            "retention_days": svc.settings.artifact_retention_days,
            # Said once the machine has fetched its spec (the prompt is stored then).
            "direct_keys": direct_keys(svc, task) if prompt is not None else ()}
