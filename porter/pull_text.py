"""What a task's publishing writes on GitHub as text: the branch name, the pull request's title
and body (with its verification table), and the comment that links it. Pure.

The summary, the paths and the verification output are the agent's or its machine's: each is
neutralised, so that Porter's `Closes #N` is the only closing keyword in the body, and nothing in
them pings anyone or hides what follows.
"""

from __future__ import annotations

import unicodedata

from porter.changesets import Changeset
from porter.models import Task
from porter.neutralize import close_fences, neutralize, one_line
from porter.status import COST_SOURCES, duration
from porter.verification import HEADLINES, Verification
from porter.verification_markdown import markdown_table

DEFAULT_PREFIX = "porter"
MAX_SLUG = 40
MAX_TITLE = 120
MAX_SUMMARY = 20_000
MAX_FILE_LINES = 100
MAX_VERIFICATION = 15_000  # of the body; the check run's page and the artifact have it all
MAX_BODY = 60_000  # GitHub refuses PR bodies over 65,536 characters


def branch_name(task_id: int, title: str, *, prefix: str = DEFAULT_PREFIX) -> str:
    """`<prefix>/<id>-<slug>`: the slug is lowercase ASCII `[a-z0-9-]`, at most 40 characters;
    the prefix is `porter` or the repository's `branch_prefix` (checked when it was read)."""
    ascii_text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    words = "".join(c if c.isalnum() else " " for c in ascii_text.lower()).split()
    slug = "-".join(words)[:MAX_SLUG].strip("-")
    return f"{prefix}/{task_id}-{slug}" if slug else f"{prefix}/{task_id}"


def link_marker(task_id: int) -> str:
    """A hidden tag that finds the link comment again after a crash."""
    return f"<!-- porter:link task={task_id} -->"


def pull_title(task: Task) -> str:
    """The issue's title (anyone may have written it), else the instruction's first line."""
    title = str(task.context.get("title") or "").strip()
    if not title:
        title = next((line for line in task.instruction.splitlines() if line.strip()), "")
    return neutralize(one_line(title, MAX_TITLE)) or f"Porter task #{task.id}"


def pull_body(task: Task, changeset: Changeset, *, summary: str, cost_usd: float | None,
              duration_s: float | None, public_url: str, cost_source: str | None = None,
              verification: Verification | None = None) -> str:
    """Summary, verification, changed files, cost and duration, the task link, and `Closes #N`
    for an issue.

    The summary and the paths are the agent's: neutralised, so that Porter's `Closes #N` is the
    only closing keyword in the body, and nothing in them pings anyone or hides what follows.
    """
    text = summary.strip()
    cut = len(text) > MAX_SUMMARY
    text = close_fences(neutralize(text[:MAX_SUMMARY].rstrip() if cut else text))
    if cut:
        text += "\n\n… (summary cut short; the task page has it all)"
    stats = changeset.stats()
    # Every line starts with "+ " or "− ", so no path (even one holding ```) can end the fence.
    lines = [("− " if f.deleted else "+ ") + neutralize(_path(f.path))
             for f in changeset.files[:MAX_FILE_LINES]]
    if len(changeset.files) > MAX_FILE_LINES:
        lines.append(f"… and {len(changeset.files) - MAX_FILE_LINES} more")
    facts = [f"Porter task [#{task.id}]({public_url.rstrip('/')}/tasks/{task.id})", task.agent]
    if duration_s is not None:
        facts.append(duration(duration_s))
    if cost_usd is not None:
        source = COST_SOURCES.get(cost_source or "")
        facts.append(f"${cost_usd:.2f}" + (f" {source}" if source else ""))
    parts = [text or "_The agent left no summary._"]
    if verification is not None:
        parts.append(verification_section(verification))
    parts += [
        f"**Files changed** ({stats.written} written, {stats.deleted} deleted)\n\n```\n"
        + "\n".join(lines) + "\n```",
        " · ".join(facts),
    ]
    if not task.is_pull_request:
        parts.append(f"Closes #{task.issue_number}")
    body = "\n\n".join(parts)
    if len(body) > MAX_BODY:  # only reachable through very long paths; keep the tail's links
        tail = "\n\n".join(parts[-1:] if task.is_pull_request else parts[-2:])
        body = body[: MAX_BODY - len(tail) - 10] + "\n…\n\n" + tail
    return body


def link_body(task: Task, *, pr_number: int, pr_url: str) -> str:
    return f"🚀 Opened #{pr_number} — {pull_title(task)}\n\n{pr_url}\n{link_marker(task.id)}"




def verification_section(verification: Verification) -> str:
    """The verification headline and table, as the pull request and the check run show it."""
    mark = HEADLINES[verification.outcome]
    table = markdown_table(verification, neutralize=neutralize, limit=MAX_VERIFICATION)
    return f"**Verification: {mark}** (the `verify` commands of `.porter.yml`)\n\n{table}"


def _path(path: str) -> str:
    return path if len(path) <= 200 else path[:199] + "…"
