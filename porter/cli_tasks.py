"""`porter tasks list` and `porter tasks show`: the store's tasks, read from a terminal."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any

from porter.models import TaskFilter
from porter.settings import Settings
from porter.store import Store


def cmd_tasks_list(settings: Settings, args: argparse.Namespace) -> int:
    async def run() -> list[dict[str, Any]]:
        store = await Store.open(settings.store_location)
        try:
            where = TaskFilter(repo=args.repo, state=args.state, agent=args.agent,
                               requester=args.requester, issue=args.issue)
            return [t.to_json() for t in await store.list_tasks(where, limit=args.limit)]
        finally:
            await store.close()

    tasks = asyncio.run(run())
    if args.json:
        print(json.dumps(tasks, indent=2))
        return 0
    columns = ("id", "state", "repo", "issue_number", "agent", "requester", "created_at")
    rows = [[_cell(task, column) for column in columns] for task in tasks]
    headers = ["id", "state", "repo", "issue", "agent", "requester", "created"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    if not rows:
        print("(no tasks)")
    return 0


def cmd_tasks_show(settings: Settings, args: argparse.Namespace) -> int:
    async def run() -> dict[str, Any] | None:
        store = await Store.open(settings.store_location)
        try:
            task = await store.get_task(args.task_id)
            if task is None:
                return None
            events = await store.task_events(task.id)
            return {**task.to_json(), "events": [e.to_json() for e in events]}
        finally:
            await store.close()

    found = asyncio.run(run())
    if found is None:
        print(f"porter: no task {args.task_id}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    for key in ("id", "state", "stage", "reason", "repo", "issue_number", "comment_url",
                "requester", "agent", "model", "attempt", "instruction"):
        if found.get(key) not in (None, ""):
            print(f"{key:>12}: {found[key]}")
    print("      events:")
    for event in found["events"]:
        print(f"    {_time(event['at'])}  {event['kind']:<18} {event['message']}")
    return 0


def _cell(task: dict[str, Any], column: str) -> str:
    value = task[column]
    return _time(value) if column == "created_at" else str(value)


def _time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")
