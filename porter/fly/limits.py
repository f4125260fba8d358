"""Spacing Fly Machines API requests to the documented per-action limits
(docs/platform-notes.md §A.6).

This queues, it never retries: a caller waits for its slot, then makes its one attempt.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

# A.6: 1 req/s with bursts of 3 per action, except Get Machine at 5 req/s with bursts of 10.
_RATES: Mapping[str, tuple[float, float]] = {"get": (5.0, 10.0)}
_DEFAULT_RATE = (1.0, 3.0)
_MAX_IDLE_BUCKETS = 1024


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Queue, don't refuse: each call reserves the next slot of its bucket, then sleeps.

    Reserving before sleeping keeps concurrent callers in arrival order and needs no lock. Buckets
    are keyed by action and identifier (the app for create/list, the machine otherwise), as the
    limits are scoped.
    """

    def __init__(
        self, clock: Callable[[], float], sleep: Callable[[float], Awaitable[None]]
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    async def acquire(self, action: str, scope: str) -> None:
        delay = self._reserve(action, scope)
        if delay > 0:
            await self._sleep(delay)

    def _reserve(self, action: str, scope: str) -> float:
        rate, burst = _RATES.get(action, _DEFAULT_RATE)
        now = self._clock()
        if len(self._buckets) > _MAX_IDLE_BUCKETS:
            self._forget_full_buckets(now)
        bucket = self._buckets.setdefault((action, scope), _Bucket(burst, now))
        bucket.tokens = min(burst, bucket.tokens + max(0.0, now - bucket.stamp) * rate) - 1
        bucket.stamp = now
        return 0.0 if bucket.tokens >= 0 else -bucket.tokens / rate

    def _forget_full_buckets(self, now: float) -> None:
        for key, bucket in list(self._buckets.items()):
            rate, burst = _RATES.get(key[0], _DEFAULT_RATE)
            if bucket.tokens + (now - bucket.stamp) * rate >= burst:
                del self._buckets[key]
