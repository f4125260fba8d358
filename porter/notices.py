"""What the requester (and the operator) is owed when a task changes: the payloads of the status,
reaction and notification jobs. The store writes them in the transaction of each state change
(porter/store/tasks.py); porter/reporting.py and porter/notifications.py read them."""

from __future__ import annotations

from dataclasses import dataclass

from porter.payloads import Payload
from porter.states import REACT_JOB, STATUS_JOB, TaskState


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


# Tasks that ended in these states are told to the operator's notification channels
# (porter/notifications.py). Not `rejected`: anyone who can comment can be refused, so telling each
# refusal would let strangers post into the operator's Slack; the reply on GitHub says it all.
NOTIFY_JOB = "notify"
NOTIFIED = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED,
                      TaskState.TIMED_OUT})


@dataclass(frozen=True)
class NotifyJob(Payload):
    """Tell one channel that one attempt of a task ended in `state`."""

    kind = NOTIFY_JOB
    task_id: int
    attempt: int
    channel: str  # porter/notifications.py: "webhook" or "slack"
    state: str

    @property
    def key(self) -> str:
        return f"notify:{self.task_id}:{self.attempt}:{self.channel}"  # sent once per attempt
