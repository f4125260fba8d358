"""The App's webhook deliveries as GitHub lists them, read into Porter's own types.

`GitHubApp.webhook_deliveries`, `.delivery_payload` and `.redeliver` (porter/github.py) make the
calls; this module only reads their answers, as plain JSON rather than githubkit's models: the
delivery list grows fields between API versions (`throttled_at`), and a delivery's payload is a
webhook payload, which never passes through the models (docs/platform-notes.md §D.3).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from porter.errors import GitHubError

PER_PAGE = 100  # GitHub's most


@dataclass(frozen=True)
class Delivery:
    """One attempt to deliver an event; redeliveries of it share its `guid` (X-GitHub-Delivery)."""

    id: int
    guid: str
    delivered_at: float
    redelivery: bool
    status: str  # GitHub's words: "OK", "Invalid HTTP Response: 503", "timed out", …
    status_code: int  # 0 when nothing answered
    event: str
    action: str | None
    installation_id: int | None
    repository_id: int | None
    duration: float = 0.0
    throttled_at: float | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300


@dataclass(frozen=True)
class DeliveryPage:
    deliveries: list[Delivery]  # newest first
    cursor: str | None  # the next page's, None on the last


def delivery_page(items: Any, link: str | None) -> DeliveryPage:
    """A page of `GET /app/hook/deliveries` from its JSON and its `Link` header."""
    if not isinstance(items, list):
        raise GitHubError("GitHub's list of webhook deliveries is not a list")
    return DeliveryPage([delivery(item) for item in items], next_cursor(link))


def delivery(item: Any) -> Delivery:
    if not isinstance(item, Mapping):
        raise GitHubError("a webhook delivery GitHub listed is not an object")
    try:
        return Delivery(
            id=int(item["id"]), guid=str(item["guid"]),
            delivered_at=_epoch(item["delivered_at"]), redelivery=bool(item.get("redelivery")),
            status=str(item.get("status") or ""), status_code=int(item.get("status_code") or 0),
            event=str(item.get("event") or ""), action=_maybe_str(item.get("action")),
            installation_id=_maybe_int(item.get("installation_id")),
            repository_id=_maybe_int(item.get("repository_id")),
            duration=float(item.get("duration") or 0.0),
            throttled_at=_epoch(item["throttled_at"]) if item.get("throttled_at") else None,
        )
    except (KeyError, TypeError, ValueError):
        raise GitHubError("a webhook delivery GitHub listed lacks its id, guid or time") from None


def request_payload(detail: Any) -> dict[str, Any] | None:
    """The payload GitHub sent, from `GET /app/hook/deliveries/{id}`; None when it kept none."""
    request = detail.get("request") if isinstance(detail, Mapping) else None
    payload = request.get("payload") if isinstance(request, Mapping) else None
    return payload if isinstance(payload, dict) else None


def next_cursor(link: str | None) -> str | None:
    """The `cursor` of the `rel="next"` URL in a Link header: this list pages by cursor."""
    for part in (link or "").split(","):
        url, _, params = part.partition(";")
        if 'rel="next"' not in params.replace(" ", ""):
            continue
        cursor = parse_qs(urlsplit(url.strip().strip("<>")).query).get("cursor")
        if cursor:
            return cursor[0]
    return None


def _epoch(value: Any) -> float:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _maybe_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _maybe_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
