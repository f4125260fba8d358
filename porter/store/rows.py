"""Rows as Porter's own types (porter/models.py): nothing outside the store sees a row."""

from __future__ import annotations

import json
import sqlite3

from porter.models import TASK_FIELDS, AgentRun, Job, Task, TaskEvent
from porter.states import JobState, RunState, TaskState


def to_task(row: sqlite3.Row) -> Task:
    return Task(
        id=row["id"], repo=row["repo"], installation_id=row["installation_id"],
        issue_number=row["issue_number"], is_pull_request=bool(row["is_pull_request"]),
        comment_kind=row["comment_kind"], comment_id=row["comment_id"],
        comment_url=row["comment_url"], requester=row["requester"],
        requester_id=row["requester_id"], instruction=row["instruction"],
        state=TaskState(row["state"]), stage=row["stage"],
        reason=row["reason"], attempt=row["attempt"], created_at=row["created_at"],
        updated_at=row["updated_at"], delivery_id=row["delivery_id"],
        context=json.loads(row["context"]),
        **{name: row[name] for name in TASK_FIELDS if name != "installation_id"},
    )


def to_event(row: sqlite3.Row) -> TaskEvent:
    return TaskEvent(row["id"], row["task_id"], row["attempt"], row["at"], row["kind"],
                     row["message"], json.loads(row["data"]))


def to_run(row: sqlite3.Row) -> AgentRun:
    return AgentRun(
        id=row["id"], task_id=row["task_id"], attempt=row["attempt"],
        token_hash=row["token_hash"], runner=row["runner"], machine_id=row["machine_id"],
        state=RunState(row["state"]), stage=row["stage"], message=row["message"],
        last_heartbeat_at=row["last_heartbeat_at"],
        cancel_requested=bool(row["cancel_requested"]), log_bytes=row["log_bytes"],
        result=json.loads(row["result"]) if row["result"] else None,
        created_at=row["created_at"], completed_at=row["completed_at"],
        runner_owner=row["runner_owner"],
    )


def to_job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"], kind=row["kind"], key=row["key"], task_id=row["task_id"],
        installation_id=row["installation_id"], payload=json.loads(row["payload"]),
        state=JobState(row["state"]), attempts=row["attempts"], run_after=row["run_after"],
        last_error=row["last_error"],
        result=json.loads(row["result"]) if row["result"] else None,
        generation=row["generation"], progress=json.loads(row["progress"]),
    )
