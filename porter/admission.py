"""Which queued task may start now: one pure decision, made in one place. No I/O.

One live task per issue or pull request: a follow-up from the same requester waits behind it,
anyone else is refused and told which task holds it. Past the global or per-installation limit
a task waits, queued, in order. Tasks are decided oldest first, and a task started in this pass
holds its issue and its slots for the ones after it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from porter.models import Task


@dataclass(frozen=True)
class Limits:
    total: int  # machines alive at once
    per_installation: int  # machines alive at once for one GitHub App installation


@dataclass(frozen=True)
class Start:
    task: Task


@dataclass(frozen=True)
class Wait:
    task: Task
    behind: Task | None = None  # the requester's own task holding the issue; None: no slot


@dataclass(frozen=True)
class Refuse:
    task: Task
    holder: Task  # someone else's live task on the same issue


Decision = Start | Wait | Refuse


def decide(queued: Sequence[Task], live: Sequence[Task], limits: Limits) -> list[Decision]:
    """A decision for each queued task, oldest first; `live` holds issues and slots."""
    holders = {(t.repo, t.issue_number): t for t in live}
    per_installation = Counter(t.installation_id or 0 for t in live)
    total = len(live)
    decisions: list[Decision] = []
    for task in sorted(queued, key=lambda t: t.id):
        holder = holders.get((task.repo, task.issue_number))
        if holder is not None and holder.id != task.id:
            if holder.requester == task.requester:
                decisions.append(Wait(task, behind=holder))
            else:
                decisions.append(Refuse(task, holder))
            continue
        installation = task.installation_id or 0
        if total >= limits.total or per_installation[installation] >= limits.per_installation:
            decisions.append(Wait(task))
            continue
        decisions.append(Start(task))
        total += 1
        per_installation[installation] += 1
        holders[(task.repo, task.issue_number)] = task
    return decisions
