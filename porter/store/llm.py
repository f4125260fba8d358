"""The LLM gateway's accounting: one row per model call, and the sums budgets and pages read.

A call's row and its task's cost are written in one transaction: the task's cost is the sum of its
priced calls across its attempts (`cost_source` 'porter'), so the task page, the status comment
and the pull request show what the gateway metered rather than what the agent claimed.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from porter.store.base import StoreBase

METERED = "porter"  # tasks.cost_source: the gateway's sum
REPORTED = "agent"  # tasks.cost_source: what the agent reported


@dataclass(frozen=True)
class LlmCall:
    run_id: str
    task_id: int
    user_id: int | None  # the requester's GitHub user id
    provider: str
    model: str | None
    status: int  # the upstream's HTTP status; 0: no answer
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float | None  # None: the model has no price
    started_at: float
    duration_ms: int


@dataclass(frozen=True)
class CallTotals:
    """A task's metered calls, summed."""

    calls: int
    unpriced: int  # calls whose model has no price: not in cost_usd
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float | None  # None: no call was priced


class LlmStore(StoreBase):
    async def record_call(self, call: LlmCall) -> None:
        def record(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO llm_calls (run_id, task_id, user_id, provider, model, status,"
                " input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd,"
                " started_at, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (call.run_id, call.task_id, call.user_id, call.provider, call.model,
                 call.status, call.input_tokens, call.output_tokens, call.cache_read_tokens,
                 call.cache_write_tokens, call.cost_usd, call.started_at, call.duration_ms))
            if call.cost_usd is None:
                return  # nothing priced changed; the agent's figure stays if there is one
            # updated_at moves: the feed and the task page show the cost as it grows.
            db.execute(
                "UPDATE tasks SET cost_usd = (SELECT SUM(cost_usd) FROM llm_calls"
                " WHERE task_id = ?), cost_source = ?, updated_at = ? WHERE id = ?",
                (call.task_id, METERED, self._clock(), call.task_id))

        await self._write(record)

    async def run_cost(self, run_id: str) -> float:
        """What a run's priced calls cost so far, in USD."""
        rows = list(await self._read(
            "SELECT COALESCE(SUM(cost_usd), 0) FROM llm_calls WHERE run_id = ?", (run_id,)))
        return float(rows[0][0])

    async def user_cost_since(self, user_id: int, since: float) -> float:
        """What a requester's priced calls cost since `since`, across all their runs."""
        rows = list(await self._read(
            "SELECT COALESCE(SUM(cost_usd), 0) FROM llm_calls"
            " WHERE user_id = ? AND started_at >= ?", (user_id, since)))
        return float(rows[0][0])

    async def task_calls(self, task_id: int) -> CallTotals | None:
        """A task's metered calls across its attempts; None when the gateway saw none."""
        rows = list(await self._read(
            "SELECT COUNT(*), COUNT(*) - COUNT(cost_usd), SUM(input_tokens), SUM(output_tokens),"
            " SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(cost_usd) FROM llm_calls"
            " WHERE task_id = ?", (task_id,)))
        row = rows[0]
        if not row[0]:
            return None  # no call: every SUM is NULL (the token columns are NOT NULL)
        return CallTotals(int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]),
                          int(row[5]), None if row[6] is None else float(row[6]))
