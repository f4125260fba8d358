"""The App's webhook delivery log, kept as GitHub keeps it, and its REST endpoints.

    fake.webhook_url, fake.webhook_secret = url, secret       # the App's webhook settings
    fake.deliver("issue_comment", payload)                     # sent for real, answer recorded
    fake.add_delivery("issue_comment", payload, status_code=502)  # recorded, nothing sent

`GET /app/hook/deliveries` lists the log newest first and pages by cursor through the `Link`
header; `GET /app/hook/deliveries/{id}` adds the request and response; `POST .../attempts` answers
202 and then, on a thread of its own as GitHub does later, sends the stored payload again under
the same guid, signed with the webhook secret, recording the new attempt (`redelivery: true`)
with the status code the webhook URL answered.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from porter.webhooks import sign
from tests.fakes import github_shapes as shapes
from tests.fakes.github_http import ApiError, Ctx, not_found
from tests.fakes.github_routes import route

REDELIVERY_WINDOW = 3 * 24 * 3600  # GitHub redelivers deliveries of the past 3 days
DEFAULT_PER_PAGE = 30
SEND_TIMEOUT = 10.0  # GitHub gives a webhook URL 10 seconds


@dataclass
class DeliveryRecord:
    id: int
    guid: str
    event: str
    payload: dict[str, Any]
    delivered_at: float
    status_code: int  # 0: nothing answered
    status: str
    redelivery: bool
    duration: float = 0.01
    response_body: str = ""

    @property
    def action(self) -> str | None:
        action = self.payload.get("action")
        return action if isinstance(action, str) else None


class DeliveryLog:
    """Mixed into FakeGitHub: `deliveries` (oldest first), `deliver()`, `add_delivery()`."""

    now: Callable[[], float]
    lock: threading.RLock
    app_id: str
    webhook_url: str | None
    webhook_secret: str | None

    def _init_deliveries(self) -> None:
        self.deliveries: list[DeliveryRecord] = []
        self._delivery_ids = itertools.count(70_000_001)

    def add_delivery(self, event: str, payload: dict[str, Any], *, status_code: int = 202,
                     guid: str | None = None, redelivery: bool = False,
                     status: str | None = None, response_body: str = "",
                     delivered_at: float | None = None) -> DeliveryRecord:
        """Record an attempt without sending anything: one that failed before reaching Porter,
        or one a proxy answered (`delivered_at`: now unless said)."""
        record = DeliveryRecord(
            id=next(self._delivery_ids), guid=guid or str(uuid.uuid4()), event=event,
            payload=payload, delivered_at=self.now() if delivered_at is None else delivered_at,
            status_code=status_code,
            status=status or _status(status_code), redelivery=redelivery,
            response_body=response_body)
        with self.lock:
            self.deliveries.append(record)
        return record

    def deliver(self, event: str, payload: dict[str, Any], *, guid: str | None = None,
                redelivery: bool = False) -> DeliveryRecord:
        """Send to the App's webhook URL as GitHub does (blocking) and record the answer."""
        if not self.webhook_url or not self.webhook_secret:
            raise AssertionError("set fake.webhook_url and fake.webhook_secret first")
        guid = guid or str(uuid.uuid4())
        body = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/fake",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": guid,
            "X-GitHub-Hook-ID": "1",
            "X-GitHub-Hook-Installation-Target-Type": "integration",
            "X-GitHub-Hook-Installation-Target-ID": self.app_id,
            "X-Hub-Signature-256": sign(body, secret=self.webhook_secret.encode()),
        }
        started = time.monotonic()
        try:
            answer = httpx.post(self.webhook_url, content=body, headers=headers,
                                timeout=SEND_TIMEOUT)
            code, status, text = answer.status_code, _status(answer.status_code), answer.text
        except httpx.TimeoutException:
            code, status, text = 0, "timed out", ""
        except httpx.HTTPError:
            code, status, text = 0, "failed to connect to host", ""
        record = self.add_delivery(event, payload, status_code=code, guid=guid,
                                   redelivery=redelivery, status=status, response_body=text)
        record.duration = round(time.monotonic() - started, 3)
        return record

    def find_delivery(self, delivery_id: int) -> DeliveryRecord | None:
        return next((d for d in self.deliveries if d.id == delivery_id), None)


def _status(code: int) -> str:
    return "OK" if 200 <= code < 300 else f"Invalid HTTP Response: {code}"


def _item(record: DeliveryRecord, *, api_version: str) -> dict[str, Any]:
    payload = record.payload
    installation = payload.get("installation")
    repository = payload.get("repository")
    item: dict[str, Any] = {
        "id": record.id,
        "guid": record.guid,
        "delivered_at": shapes.iso(record.delivered_at),
        "redelivery": record.redelivery,
        "duration": record.duration,
        "status": record.status,
        "status_code": record.status_code,
        "event": record.event,
        "action": record.action,
        "installation_id": installation.get("id") if isinstance(installation, dict) else None,
        "repository_id": repository.get("id") if isinstance(repository, dict) else None,
    }
    if api_version > "2022-11-28":  # newer API versions add when GitHub throttled a delivery
        item["throttled_at"] = None
    return item


def _api_version(ctx: Ctx) -> str:
    return ctx.request.headers.get("x-github-api-version", "2022-11-28")


def _log(ctx: Ctx) -> DeliveryLog:
    log: DeliveryLog = ctx.gh
    return log


@route("GET", "/app/hook/deliveries", "jwt")
def list_deliveries(ctx: Ctx) -> tuple[int, Any]:
    query = ctx.request.query_params
    per_page = max(1, min(int(query.get("per_page") or DEFAULT_PER_PAGE), 100))
    cursor = query.get("cursor")
    newest_first = sorted(_log(ctx).deliveries, key=lambda d: d.id, reverse=True)
    if cursor:  # v1_<id>: the deliveries older than that one
        if not cursor.startswith("v1_") or not cursor[3:].isdigit():
            raise ApiError(400, "Invalid cursor")
        newest_first = [d for d in newest_first if d.id < int(cursor[3:])]
    status = query.get("status")
    if status in ("success", "failure"):
        newest_first = [d for d in newest_first
                        if (200 <= d.status_code < 300) == (status == "success")]
    page, rest = newest_first[:per_page], newest_first[per_page:]
    if rest:
        params = {**dict(query), "per_page": str(per_page), "cursor": f"v1_{page[-1].id}"}
        url = f"{ctx.gh.api_url}/app/hook/deliveries?{urlencode(params)}"
        ctx.response_headers["link"] = f'<{url}>; rel="next"'
    return 200, [_item(d, api_version=_api_version(ctx)) for d in page]


@route("GET", "/app/hook/deliveries/{delivery_id}", "jwt")
def get_delivery(ctx: Ctx) -> tuple[int, Any]:
    record = _log(ctx).find_delivery(ctx.int_arg("delivery_id"))
    if record is None:
        raise not_found()
    return 200, {
        **_item(record, api_version=_api_version(ctx)),
        "url": ctx.gh.webhook_url or "",
        "request": {"headers": {"X-GitHub-Event": record.event,
                                "X-GitHub-Delivery": record.guid},
                    "payload": record.payload},
        "response": {"headers": {}, "payload": record.response_body or None},
    }


@route("POST", "/app/hook/deliveries/{delivery_id}/attempts", "jwt")
def redeliver(ctx: Ctx) -> tuple[int, Any]:
    log = _log(ctx)
    record = log.find_delivery(ctx.int_arg("delivery_id"))
    if record is None:
        raise not_found()
    if record.delivered_at < log.now() - REDELIVERY_WINDOW:
        raise ApiError(422, "This delivery is too old to redeliver")  # the fake's wording
    # GitHub answers first and delivers later: the send must not hold the fake's lock, nor
    # wait on a Porter served by the event loop that made this request.
    threading.Thread(target=log.deliver, args=(record.event, record.payload),
                     kwargs={"guid": record.guid, "redelivery": True}, daemon=True,
                     name=f"fake-redelivery-{record.id}").start()
    return 202, {}
