"""Artifacts of a run: its log, its verification output and its changeset, kept for a while.

The pure rules: which artifacts there are, how each is served, the bound on one artifact's
size (a larger one is cut, with a marker saying so), when one is old enough to go, and the
watchdog's pass that deletes those in bounded batches (the store does the deleting:
porter/store/artifacts.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Protocol

log = logging.getLogger(__name__)

Name = Literal["log", "verification", "changeset"]
NAMES: tuple[Name, ...] = ("log", "verification", "changeset")

# What a download is served as. Only these: the type reaches a browser as Content-Type, so a
# stored `text/html` would make an artifact (an agent's output) a page of Porter's origin.
MEDIA_TYPES: dict[Name, str] = {
    "log": "text/plain; charset=utf-8",
    "verification": "application/json",
    "changeset": "text/x-diff; charset=utf-8",
}
ALLOWED_MEDIA_TYPES = frozenset(MEDIA_TYPES.values()) | {"application/octet-stream"}

MAX_BYTES = 10 * 1024 * 1024  # one artifact; a run's output can be any size, the database not
DAY = 86400.0
EVERY = 3600.0  # seconds from one pruning pass to the next
# Artifacts deleted per transaction: few enough that the writer is not held for long even when
# many are near the bound; a larger backlog takes more ticks.
BATCH = 50
BATCHES_PER_TICK = 10
_MARKER_ROOM = 80  # the marker and its newline, whatever the numbers in it


def bounded(name: Name, content: bytes, *, limit: int = MAX_BYTES) -> bytes:
    """`content` cut to at most `limit` bytes when longer, with a marker saying how much was
    kept. A log keeps its end (where the failure is), the others their beginning."""
    if len(content) <= limit:
        return content
    keep = max(0, limit - _MARKER_ROOM)
    end = "last" if name == "log" else "first"
    marker = f"[porter: cut to the {end} {keep} of {len(content)} bytes]\n".encode()
    if name == "log":
        return marker + content[len(content) - keep:]
    return content[:keep] + b"\n" + marker


def media_type(name: Name, given: str | None = None) -> str:
    """The type an artifact is served as: `given` when it is one Porter serves, else the
    name's own."""
    return given if given in ALLOWED_MEDIA_TYPES else MEDIA_TYPES[name]


def cutoff(now: float, days: int) -> float | None:
    """Artifacts made before this go; None when `days` is 0 (keep everything)."""
    return now - days * DAY if days > 0 else None


@dataclass(frozen=True)
class ArtifactInfo:
    """One artifact without its content: what the task page lists."""

    id: int
    task_id: int
    run_id: str
    name: str
    media_type: str
    size: int  # of the content as given; more than `stored` when it was cut
    stored: int
    sha256: str  # of the stored content, as downloaded
    created_at: float

    @property
    def truncated(self) -> bool:
        return self.size > self.stored


@dataclass(frozen=True)
class Artifact:
    info: ArtifactInfo
    content: bytes


class Prunes(Protocol):
    async def prune_artifacts(self, older_than: float, *, limit: int) -> int: ...


class ArtifactPruner:
    """The watchdog's part: on its first tick and hourly after, delete the artifacts older than
    the retention period, at most `batches` transactions a tick (a backlog spreads over
    ticks)."""

    def __init__(self, store: Prunes, *, days: int, every: float = EVERY, batch: int = BATCH,
                 batches: int = BATCHES_PER_TICK) -> None:
        self._store = store
        self._days = days
        self._every = every
        self._batch = batch
        self._batches = batches
        self._due = 0.0
        self._before: float | None = None  # the cutoff of the pass under way

    async def tick(self, now: float) -> int:
        """Go on with the pass, or start one when due; how many artifacts went. Never raises:
        a failure is logged and the pass tried again at the next hour."""
        if self._before is None:
            if now < self._due or (before := cutoff(now, self._days)) is None:
                return 0
            self._before = before
        deleted, done = 0, False
        try:
            for _ in range(self._batches):
                gone = await self._store.prune_artifacts(self._before, limit=self._batch)
                deleted += gone
                if gone < self._batch:
                    done = True
                    break
        except Exception:
            log.exception("artifacts: pruning failed; trying again in an hour")
            done = True
        if deleted:
            log.info("artifacts: deleted %d older than %d days", deleted, self._days)
        if done:
            self._before = None
            self._due = now + self._every
        return deleted
