"""Totals /metrics reads at each scrape: tasks by state and agent with their cost, live runs."""

from __future__ import annotations

from dataclasses import dataclass

from porter.states import LIVE_RUN
from porter.store.base import StoreBase, marks


@dataclass(frozen=True)
class TaskTotal:
    state: str
    agent: str
    tasks: int
    cost_usd: float  # the sum of the tasks' recorded cost (none recorded: 0)


class GaugeStore(StoreBase):
    async def task_totals(self) -> list[TaskTotal]:
        """One row per (state, agent) that has tasks."""
        rows = await self._read(
            "SELECT state, agent, COUNT(*), COALESCE(SUM(cost_usd), 0) FROM tasks"
            " GROUP BY state, agent")
        return [TaskTotal(str(r[0]), str(r[1]), int(r[2]), float(r[3])) for r in rows]

    async def live_run_count(self) -> int:
        """Runs whose machine may still be up (launching or running)."""
        rows = list(await self._read(
            f"SELECT COUNT(*) FROM runs WHERE state IN ({marks(LIVE_RUN)})", [*LIVE_RUN]))
        return int(rows[0][0])
