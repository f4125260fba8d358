"""What the routes need, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter
from starlette.requests import Request

from porter.runtime import Runtime
from porter.settings import Settings
from porter.store import IntakeWriter, Store


@dataclass
class Metrics:
    registry: CollectorRegistry
    recorded: Counter
    duplicate: Counter
    ignored: Counter
    unauthorized: Counter

    @classmethod
    def create(cls) -> Metrics:
        registry = CollectorRegistry()
        deliveries = Counter(
            "porter_webhook_deliveries", "Webhook deliveries by outcome.", ["outcome"],
            registry=registry,
        )
        # Children bound once: labels() takes a lock and a dict lookup per call.
        return cls(registry, *(deliveries.labels(outcome) for outcome in (
            "recorded", "duplicate", "ignored", "unauthorized")))


@dataclass
class Services:
    settings: Settings
    store: Store
    intake: IntakeWriter
    agents: frozenset[str]
    metrics: Metrics
    runtime: Runtime


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found
