"""The one status comment per task: rendered from the task alone. Pure.

Reasons, titles and branch names come from outside (the agent's errors, GitHub's and Fly's
messages, whoever opened the issue or the pull request), so they are neutralised before they show.
"""

from __future__ import annotations

from porter.models import Task
from porter.neutralize import code_span, neutralize, one_line
from porter.states import TaskState
from porter.verification import HEADLINES

STEPS = (
    (TaskState.QUEUED, "queued"),
    (TaskState.STARTING, "machine started"),
    (TaskState.RUNNING, "agent running"),
    (TaskState.PUBLISHING, "publishing"),
    (TaskState.SUCCEEDED, "done"),
)
STAGE_WORDS = {
    "dispatch": "starting the machine",
    "agent": "running the agent",
    "publish": "publishing the result",
    "budget": "running the agent",  # the reason names the budget and the amounts
}
# What the requester must fix before a task can start (a .porter.yml's problems, keys to add) is
# shown whole; elsewhere the log has the rest.
REASON_CHARS = {"dispatch": 1_200}
REASON_DEFAULT_CHARS = 300
# The change's verification (porter/verification.py's outcome, recorded when it was published):
# "not_run" says nothing worth a word here.
VERIFIED: dict[str, str] = {outcome: f"verification {words}"
                            for outcome, words in HEADLINES.items() if outcome != "not_run"}
# Whose figure the cost is (tasks.cost_source): Porter's own metering of the model calls through
# its LLM gateway, or what the agent said it spent.
COST_SOURCES = {"porter": "metered by Porter", "agent": "reported by the agent"}


def marker(task_id: int) -> str:
    """A hidden tag that finds the status comment again after a crash."""
    return f"<!-- porter:status task={task_id} -->"


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def render_status(task: Task, *, public_url: str, mention: str, now: float) -> str:
    link = f"{public_url}/tasks/{task.id}"
    who = task.agent + (f" ({task.model})" if task.model else "")
    started = task.started_at or task.created_at
    elapsed = duration((task.finished_at or now) - started)
    cost = cost_text(task)
    state = task.state
    if state is TaskState.SUCCEEDED:
        count = task.files_changed
        files = f" ({count} file{'' if count == 1 else 's'})" if count is not None else ""
        if task.context.get("target_branch"):
            branch = code_span(task.branch or "")
            head = f"✅ Pushed {(task.commit_sha or '')[:7]} to {branch}{files}"
        elif task.pr_number:
            title = _inert(str(task.context.get("title") or task.instruction), 80)
            head = f"✅ Opened #{task.pr_number} — {title}{files}"
        else:
            head = f"✅ Done{files}"
        verified = VERIFIED.get(str(task.context.get("verification")))
        head += f" · {verified}" if verified else ""
        body = f"{head} · {who} · {elapsed}{cost}\n\n[Task #{task.id}]({link})"
    elif state is TaskState.FAILED:
        where = STAGE_WORDS.get(task.stage or "", "working on it")
        reason = _inert(task.reason or "no reason was recorded",
                        REASON_CHARS.get(task.stage or "", REASON_DEFAULT_CHARS))
        body = (f"❌ Failed while {where}: {reason}\n\nLog: {link}{cost} · "
                f"`@{mention} retry` to try again.")
    elif state is TaskState.TIMED_OUT:
        reason = _inert(task.reason or "it ran past its time limit", 300)
        body = (f"⌛ Timed out after {elapsed}: {reason}\n\nLog: {link}{cost} · "
                f"`@{mention} retry` to try again.")
    elif state is TaskState.CANCELLED:
        reason = _inert(task.reason or "cancelled", 200)
        body = (f"🛑 Cancelled after {elapsed}: {reason}. Nothing was published.\n\n"
                f"Log: {link}{cost}")
    elif state is TaskState.REJECTED:
        body = f"🚫 Not started: {_inert(task.reason or 'not allowed', 300)}"
    else:
        body = (f"⏳ Porter is on it — {who} · task #{task.id} · started {elapsed} ago\n"
                f"{_progress(state)}\n"
                f"Follow along: {link} · `@{mention} cancel` to stop")
    return f"{body}\n{marker(task.id)}"


def cost_text(task: Task) -> str:
    """` · $0.38 metered by Porter`, or nothing while the task has no cost."""
    if task.cost_usd is None:
        return ""
    source = COST_SOURCES.get(task.cost_source or "")
    return f" · ${task.cost_usd:.2f}" + (f" {source}" if source else "")


def _progress(state: TaskState) -> str:
    order = [step for step, _ in STEPS]
    current = order.index(state) if state in order else 0
    parts = []
    for index, (_, label) in enumerate(STEPS):
        if index < current:
            parts.append(f"{label} ✓")
        elif index == current:
            parts.append(f"**{label} …**")
        else:
            parts.append(label)
    return " · ".join(parts)


def _inert(text: str, limit: int) -> str:
    return neutralize(one_line(text, limit))

