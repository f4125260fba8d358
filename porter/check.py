"""What one diagnostic check found (porter/diagnostics.py), and how checks reach the network."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

NETWORK_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: skipped, or information only
    detail: str
    next_action: str | None = None  # every failing check says what to do about it
    blocking: bool = True  # failed, it means Porter cannot do its job: `porter doctor` exits 1
    area: str = ""  # settings, database, github, runner, agents or gateway (set by diagnose)

    @property
    def blocks(self) -> bool:
        return self.ok is False and self.blocking


@dataclass(frozen=True)
class Network:
    """How the checks reach GitHub and Fly: a transport (tests) and a short timeout."""

    transport: httpx.AsyncBaseTransport | None = None
    timeout: float = NETWORK_TIMEOUT_S

    def client(self, **options: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self.timeout, transport=self.transport, **options)


def unreachable(name: str, url: str, exc: Exception) -> Check:
    return Check(name, False, f"not checked: could not reach {url} ({type(exc).__name__})",
                 f"check that this host reaches {url} (PORTER_GITHUB_API_URL)", blocking=False)
