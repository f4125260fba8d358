"""Retention: the watchdog prunes old run logs and task events of finished tasks, hourly.

A pass deletes, in the store's bounded windows, what finished tasks logged before the cutoff
(PORTER_RETENTION_DAYS ago), then the local runner's log files of the runs that ended before it.
Each watchdog tick does at most a few windows, so a large backlog (the first pass after an
upgrade) spreads over several ticks instead of holding up the watchdog's own work.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from porter.settings import Settings
from porter.store import Store
from porter.store.retention import PRUNED, WINDOW, Pruned

log = logging.getLogger(__name__)

DAY = 86400.0
EVERY = 3600.0  # seconds from the end of one pass to the start of the next
WINDOWS_PER_TICK = 20


@dataclass
class _Pass:
    before: float
    after: dict[Pruned, int | None] = field(default_factory=lambda: dict.fromkeys(PRUNED, 0))
    deleted: dict[Pruned, int] = field(default_factory=lambda: dict.fromkeys(PRUNED, 0))


def runs_dir(settings: Settings) -> Path:
    """Where the local runner writes each run's machine log (porter/runtime.py build_runner)."""
    return settings.runs_dir


class Pruner:
    def __init__(self, *, store: Store, days: int, runs: Path | None, every: float = EVERY,
                 windows: int = WINDOWS_PER_TICK, window: int = WINDOW) -> None:
        self._store = store
        self._keep = days * DAY  # 0: keep everything
        self._runs = runs
        self._every = every
        self._windows = windows
        self._window = window
        self._due = 0.0  # the first tick starts a pass
        self._pass: _Pass | None = None

    @classmethod
    def from_settings(cls, store: Store, settings: Settings) -> Pruner:
        return cls(store=store, days=settings.retention_days, runs=runs_dir(settings))

    async def tick(self, now: float) -> None:
        """Go on with the pass under way, or start one when it is due. Never raises: a failing
        pass is logged and tried again at the next hour, not at every tick."""
        if self._keep <= 0 or (self._pass is None and now < self._due):
            return
        try:
            done = await self._step(now)
        except Exception:
            log.exception("retention: pruning failed; trying again in an hour")
            done = True
        if done:
            self._pass = None
            self._due = now + self._every

    async def _step(self, now: float) -> bool:
        """At most `windows` windows of the pass; whether it is over."""
        if self._pass is None:
            self._pass = _Pass(before=now - self._keep)
        current = self._pass
        budget = self._windows
        for table in PRUNED:
            while budget > 0 and (after := current.after[table]) is not None:
                current.after[table], deleted = await self._store.prune_window(
                    table, after=after, before=current.before, window=self._window)
                current.deleted[table] += deleted
                budget -= 1
        if any(after is not None for after in current.after.values()):
            return False
        files = await self._remove_files(current.before)
        if any(current.deleted.values()) or files:
            log.info("retention: deleted %d log chunks, %d task events and %d machine log "
                     "files of tasks finished before the last %g days",
                     current.deleted["run_logs"], current.deleted["task_events"], files,
                     self._keep / DAY)
        return True

    async def _remove_files(self, before: float) -> int:
        """Remove the machine log files of runs that ended before `before`, of finished tasks.
        A file of no run in this database (another Porter beside it) is left alone."""
        if self._runs is None:
            return 0
        candidates = await asyncio.to_thread(_old_logs, self._runs, before)
        prunable = await self._store.prunable_runs(list(candidates), before=before)
        return await asyncio.to_thread(_unlink, [candidates[run] for run in prunable])


def _old_logs(directory: Path, before: float) -> dict[str, Path]:
    """run id → its log file, for the files last written before `before`."""
    found = {}
    try:
        entries = list(directory.glob("*.log"))
    except OSError:
        return {}
    for path in entries:
        try:
            if path.stat().st_mtime < before:
                found[path.stem] = path
        except OSError:
            continue
    return found


def _unlink(paths: list[Path]) -> int:
    removed = 0
    for path in paths:
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("retention: could not remove %s: %s", path, exc.strerror)
    return removed
