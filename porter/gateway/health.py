"""Each model provider's health as the gateway sees it: a rolling error rate and latency.

In memory, per process: the last `WINDOW_CALLS` calls of each provider within the last
`WINDOW_MINUTES`. An error is the provider failing, not the agent: no answer at all (status 0),
a 5xx, or 429 (rate limited); a 400 or 404 is the caller's own doing. Latency is the time to the
answer's first byte, which for a stream is when the model started answering; the whole call's
duration is kept beside it.

`/metrics` exports it (`HealthCollector`, registered in porter/web/services.py), and the
diagnostics page shows it (`health_checks`, included by porter/diagnostics.py's diagnose).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from porter.check import Check
from porter.gateway.providers import PROVIDERS

WINDOW_MINUTES = 15
WINDOW_CALLS = 1000
# Above this share of errors in the window, a provider shows as failing on the diagnostics page.
UNHEALTHY = 0.2
# Cumulative first-byte histogram buckets, in seconds.
BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def is_error(status: int) -> bool:
    return status == 0 or status == 429 or status >= 500


@dataclass(frozen=True)
class Sample:
    at: float
    status: int
    first_byte: float  # seconds to the answer's first byte (the whole call if none came)
    duration: float


@dataclass(frozen=True)
class Snapshot:
    """One provider over the window."""

    provider: str
    calls: int
    errors: int
    p50: float | None  # seconds to first byte
    p95: float | None
    last_error: int | None  # the status of the latest error in the window

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0


class ProviderHealth:
    """Thread-safe: /metrics is collected from prometheus_client's own thread, if it has one."""

    def __init__(self, *, window_s: float = WINDOW_MINUTES * 60,
                 max_calls: int = WINDOW_CALLS,
                 clock: Callable[[], float] = time.time) -> None:
        self.window_s = window_s
        self.max_calls = max_calls
        self._clock = clock
        self._lock = threading.Lock()
        self._samples: dict[str, deque[Sample]] = {}
        # Since the process started, for Prometheus' own rates: (provider, outcome) → calls,
        # and provider → first-byte histogram (bucket counts, sum).
        self._totals: dict[tuple[str, str], int] = {}
        self._histograms: dict[str, tuple[list[int], float]] = {}

    def record(self, provider: str, *, status: int, first_byte: float, duration: float,
               at: float | None = None) -> None:
        sample = Sample(self._clock() if at is None else at, status, first_byte, duration)
        outcome = "error" if is_error(status) else "ok"
        with self._lock:
            samples = self._samples.setdefault(provider, deque(maxlen=self.max_calls))
            samples.append(sample)
            self._totals[(provider, outcome)] = self._totals.get((provider, outcome), 0) + 1
            counts, total = self._histograms.get(provider, ([0] * len(BUCKETS), 0.0))
            for index, bound in enumerate(BUCKETS):
                if first_byte <= bound:
                    counts[index] += 1
            self._histograms[provider] = (counts, total + first_byte)

    def providers(self) -> list[str]:
        with self._lock:
            seen = list(self._samples)
        return [*PROVIDERS, *sorted(p for p in seen if p not in PROVIDERS)]  # known ones first

    def snapshot(self, provider: str, *, now: float | None = None) -> Snapshot:
        since = (self._clock() if now is None else now) - self.window_s
        with self._lock:
            window = [s for s in self._samples.get(provider, ()) if s.at >= since]
        errors = [s for s in window if is_error(s.status)]
        latencies = sorted(s.first_byte for s in window)
        return Snapshot(provider, len(window), len(errors), _quantile(latencies, 0.5),
                        _quantile(latencies, 0.95), errors[-1].status if errors else None)

    def totals(self) -> tuple[dict[tuple[str, str], int], dict[str, tuple[list[int], float]]]:
        with self._lock:
            return dict(self._totals), {p: (list(c), s) for p, (c, s) in self._histograms.items()}

    def reset(self) -> None:
        with self._lock:
            self._samples.clear()
            self._totals.clear()
            self._histograms.clear()


# The gateway's health in this process: one gateway per process, as there is one /metrics.
PROVIDER_HEALTH = ProviderHealth()


def _quantile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class HealthCollector(Collector):
    """The window's numbers as gauges, read at each scrape, and the calls and first-byte latency
    since the process started, for Prometheus to take rates of."""

    def __init__(self, health: ProviderHealth = PROVIDER_HEALTH) -> None:
        self._health = health

    def collect(self) -> Iterator[Metric]:
        window = f"last {self._health.window_s / 60:g} minutes"
        rate = GaugeMetricFamily(
            "porter_llm_provider_error_ratio",
            f"Share of model calls that failed (no answer, 429, 5xx), {window}.",
            labels=["provider"])
        calls = GaugeMetricFamily("porter_llm_provider_window_calls",
                                  f"Model calls, {window}.", labels=["provider"])
        latency = GaugeMetricFamily("porter_llm_provider_first_byte_seconds",
                                    f"Seconds to the answer's first byte, {window}.",
                                    labels=["provider", "quantile"])
        for provider in self._health.providers():
            shot = self._health.snapshot(provider)
            rate.add_metric([provider], shot.error_rate)
            calls.add_metric([provider], shot.calls)
            for quantile, value in (("0.5", shot.p50), ("0.95", shot.p95)):
                if value is not None:
                    latency.add_metric([provider, quantile], value)
        yield from (rate, calls, latency)
        totals, histograms = self._health.totals()
        total = CounterMetricFamily("porter_llm_calls", "Model calls since start, by outcome.",
                                    labels=["provider", "outcome"])
        for (provider, outcome), count in sorted(totals.items()):
            total.add_metric([provider, outcome], count)
        yield total
        histogram = HistogramMetricFamily(
            "porter_llm_first_byte_seconds", "Seconds to a model answer's first byte.",
            labels=["provider"])
        for provider, (counts, seconds) in sorted(histograms.items()):
            count = sum(totals.get((provider, o), 0) for o in ("ok", "error"))
            histogram.add_metric([provider], [*((str(b), c) for b, c in zip(BUCKETS, counts,
                                                                             strict=True)),
                                              ("+Inf", count)], seconds)
        yield histogram


def health_checks(health: ProviderHealth = PROVIDER_HEALTH, *,
                  now: float | None = None) -> list[Check]:
    """One line per provider for the diagnostics: never blocking, since a provider's outage is
    not Porter's configuration. Another process (`porter doctor`) has seen no calls."""
    checks = []
    window = f"the last {health.window_s / 60:g} minutes"
    for provider in health.providers():
        shot = health.snapshot(provider, now=now)
        name = f"LLM provider {provider}"
        if not shot.calls:
            checks.append(Check(name, None, f"no calls through this Porter in {window}",
                                blocking=False))
            continue
        detail = (f"{shot.calls} call{'' if shot.calls == 1 else 's'} in {window}, "
                  f"{shot.error_rate:.0%} failed")
        if shot.p50 is not None and shot.p95 is not None:
            detail += f"; first byte p50 {shot.p50:.2f} s, p95 {shot.p95:.2f} s"
        if shot.error_rate > UNHEALTHY:
            checks.append(Check(name, False, f"{detail} (latest: {_status(shot.last_error)})",
                                f"check the provider's status page; runs using {provider} "
                                "are failing or retrying", blocking=False))
        else:
            checks.append(Check(name, True, detail, blocking=False))
    return checks


def _status(status: int | None) -> str:
    return "no answer" if status == 0 else f"HTTP {status}"
