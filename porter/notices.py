"""What the requester is owed when a task changes: the payloads of the status and reaction
jobs. The store writes them in the transaction of each state change (porter/store/tasks.py);
porter/reporting.py reads them."""

from __future__ import annotations

from dataclasses import dataclass

from porter.payloads import Payload
from porter.states import REACT_JOB, STATUS_JOB


@dataclass(frozen=True)
class StatusJob(Payload):
    """Render the task's status comment as the task is when the job runs."""

    kind = STATUS_JOB
    task_id: int

    @property
    def key(self) -> str:
        return f"status:{self.task_id}"  # one per task: re-armed, never duplicated


@dataclass(frozen=True)
class ReactJob(Payload):
    """React to the comment that asked."""

    kind = REACT_JOB
    repo: str
    comment_kind: str  # "issue" or "review"
    comment_id: int
    content: str  # a GitHub reaction name: eyes, rocket, confused
