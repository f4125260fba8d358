"""HTTP to Porter: the run's callbacks, authenticated with the run token, and the spec fetch.

A call answers a `Reply` rather than raise: a connection error is status 0. Redirects are never
followed, so the run token only ever goes to Porter's own URL.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

SPEC_ATTEMPTS = 6


class SpecUnavailable(Exception):
    """The spec could not be fetched (refused, not found, or Porter unreachable)."""


@dataclass(frozen=True)
class Reply:
    status: int  # 0 = no HTTP response (connection error, timeout)
    body: Any
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        return self.status == 0 or self.status in (408, 425, 429) or self.status >= 500

    def describe(self) -> str:
        return f"HTTP {self.status}" if self.status else (self.error or "no response")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect would carry the run token to wherever Porter's URL points; never follow one.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Callback:
    """Porter's run callbacks, authenticated with the run token."""

    def __init__(self, base_url: str, run_id: str, token: str) -> None:
        self._base = f"{base_url}/api/runs/{run_id}/"
        self._token = token
        self._opener = urllib.request.build_opener(_NoRedirect())

    def call(self, method: str, name: str, payload: Any = None, timeout: float = 30.0) -> Reply:
        data = None if payload is None else json.dumps(payload).encode()
        # The scheme was checked in load_config (http/https only).
        request = urllib.request.Request(self._base + name, data=data, method=method)  # noqa: S310
        request.add_header("Authorization", f"Bearer {self._token}")
        request.add_header("Accept", "application/json")
        request.add_header("User-Agent", "porter-entrypoint/1")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(request, timeout=timeout) as response:
                return Reply(response.status, _json_or_none(response.read()))
        except urllib.error.HTTPError as exc:
            try:
                body = exc.read()
            except (OSError, http.client.HTTPException):
                body = b""
            return Reply(exc.code, _json_or_none(body), body[:300].decode("utf-8", "replace"))
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return Reply(0, None, f"{type(exc).__name__}: {exc}")


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def backoff_delays(base: float) -> Iterator[float]:
    """Capped exponential backoff with jitter."""
    cap = 60.0 * base
    attempt = 0
    while True:
        yield min(cap, base * 2**attempt) * random.uniform(0.5, 1.0)  # noqa: S311 (jitter)
        attempt += 1


def fetch_spec(callback: Callback, base_backoff: float, stop: threading.Event) -> dict[str, Any]:
    delays = backoff_delays(base_backoff)
    reply = Reply(0, None, "not tried")
    for _ in range(SPEC_ATTEMPTS):
        reply = callback.call("GET", "spec")
        if reply.ok and isinstance(reply.body, dict):
            return reply.body
        if reply.ok:
            raise SpecUnavailable("Porter served a spec that is not a JSON object")
        if not reply.retryable:
            raise SpecUnavailable(f"Porter refused the spec request ({reply.describe()})")
        if stop.wait(next(delays)):
            break
    raise SpecUnavailable(f"could not fetch the spec ({reply.describe()})")
