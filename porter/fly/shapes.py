"""The Fly Machines API's shapes: what Porter sends and how it reads what comes back.

Pure functions and dataclasses, no I/O. The facts they rely on (auth schemes, the create body,
exit events, error bodies) are in docs/platform-notes.md §A, cited by number below.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from porter.errors import ConfigError, FlyError

_MACAROON_PREFIXES = ("fm2_", "fm1", "m2.")
# A.6: the buckets refill within seconds, so a longer Retry-After is a bad header, and obeying it
# would hold a launch back past the watchdog's start allowance.
_MAX_RETRY_AFTER_S = 60.0


def authorization_header(token: str) -> str:
    """The Authorization value Fly expects for `token` (A.1, after fly-go's tokens.normalized).

    Macaroons (`fm2_…`, `fm1…`, `m2.…`, possibly a comma-separated bundle that must stay whole)
    go as `FlyV1 <token>`, anything else as `Bearer <token>`; a scheme the user pasted is dropped
    first, so `Bearer FlyV1 …` can never be produced.
    """
    rest = token.strip()
    pasted_flyv1 = False
    while True:
        scheme, _, tail = rest.partition(" ")
        if scheme.lower() not in ("bearer", "flyv1"):
            break
        pasted_flyv1 = pasted_flyv1 or scheme.lower() == "flyv1"
        rest = tail.strip()
    if not rest:
        raise ConfigError("The Fly API token is empty.")
    if pasted_flyv1 or rest.startswith(_MACAROON_PREFIXES):
        return f"FlyV1 {rest}"
    return f"Bearer {rest}"


@dataclass(frozen=True)
class MachineSpec:
    """What Porter asks Fly for: a one-shot machine that runs the agent image once."""

    image: str
    env: dict[str, str]
    metadata: dict[str, str]
    region: str = "iad"
    cpu_kind: str = "shared"
    cpus: int = 1
    memory_mb: int = 2048
    name: str | None = None
    auto_destroy: bool = True

    def to_api(self) -> dict[str, Any]:
        """The create body (A.3/A.4). Region is always explicit: unset means "near the caller"."""
        body: dict[str, Any] = {
            "region": self.region,
            "config": {
                "image": self.image,
                "env": dict(self.env),
                "guest": {
                    "cpu_kind": self.cpu_kind,
                    "cpus": self.cpus,
                    "memory_mb": self.memory_mb,
                },
                "auto_destroy": self.auto_destroy,
                # A one-shot job must not be restarted; the API default is on-failure (A.4).
                "restart": {"policy": "no"},
                "metadata": dict(self.metadata),
            },
        }
        if self.name:
            body["name"] = self.name
        return body


class ExitInfo(NamedTuple):
    exit_code: int | None
    oom_killed: bool
    requested_stop: bool


def exit_info(events: object) -> ExitInfo:
    """Exit details from a machine's `events` (A.5); exit_code is None until it has exited.

    The newest `exit` event wins (by timestamp; on ties the earlier entry, since the API lists
    newest first). Like fly-go, `request.MonitorEvent.exit_event` is read before
    `request.exit_event`, and a missing `exit_code` is 0 because the API omits zero values.
    """
    newest: Mapping[str, Any] | None = None
    newest_ts = -math.inf
    for event in events if isinstance(events, list) else []:
        if not isinstance(event, Mapping) or event.get("type") != "exit":
            continue
        stamp = event.get("timestamp")
        ts = float(stamp) if isinstance(stamp, int | float) else -math.inf
        if newest is None or ts > newest_ts:
            newest, newest_ts = event, ts
    if newest is None:
        return ExitInfo(None, False, False)
    request = _mapping(newest.get("request"))
    detail = _mapping(_mapping(request.get("MonitorEvent")).get("exit_event"))
    if not detail:
        detail = _mapping(request.get("exit_event"))
    if not detail:
        return ExitInfo(None, False, False)
    code = detail.get("exit_code", 0)
    return ExitInfo(
        code if isinstance(code, int) else None,
        detail.get("oom_killed") is True,
        detail.get("requested_stop") is True,
    )


@dataclass(frozen=True)
class FlyMachine:
    """A machine as the Machines API describes it (runners.base.Machine is Porter's view)."""

    id: str
    name: str
    state: str
    region: str
    metadata: dict[str, str]
    exit_code: int | None
    oom_killed: bool
    requested_stop: bool

    @classmethod
    def from_api(cls, data: object) -> FlyMachine:
        if not isinstance(data, Mapping) or not isinstance(data.get("id"), str):
            raise FlyError("Fly returned something that is not a machine.")
        config = _mapping(data.get("config"))
        metadata = {str(k): str(v) for k, v in _mapping(config.get("metadata")).items()}
        info = exit_info(data.get("events"))
        return cls(
            id=data["id"],
            name=str(data.get("name") or ""),
            state=str(data.get("state") or "unknown"),
            region=str(data.get("region") or ""),
            metadata=metadata,
            exit_code=info.exit_code,
            oom_killed=info.oom_killed,
            requested_stop=info.requested_stop,
        )


def error_detail(body: object) -> str:
    """The API's own error text (A.3: `error` or `message`, then `status`), at most 300 chars."""
    fields = _mapping(body)
    text = fields.get("error") or fields.get("message")
    parts = [str(text)] if text else []
    if isinstance(fields.get("status"), str):
        parts.append(f"({fields['status']})")
    return " ".join(parts)[:300]


def name_taken(body: object) -> bool:
    """Whether an error body says the machine's name is in use (fly-go: `name_taken`)."""
    fields = _mapping(body)
    text = f"{fields.get('status', '')} {fields.get('error', '')} {fields.get('message', '')}"
    text = text.lower()
    return "name_taken" in text or "already exists" in text or "already taken" in text


def retry_after(value: str | None) -> float | None:
    """A Retry-After header in seconds, capped; HTTP dates are ignored (A.6: undocumented)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return min(seconds, _MAX_RETRY_AFTER_S) if math.isfinite(seconds) and seconds >= 0 else None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
