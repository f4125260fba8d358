"""Every request the fake sees is recorded; faults and delays are injected by path pattern."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

from starlette.requests import Request

from tests.fakes.github_http import call_record
from tests.fakes.github_state import AuthKind, Call, Fault, Token, UserToken


class CallsAndFaults:
    """Mixed into FakeGitHub: `calls`, `calls_to()`, `fail()`, `rate_limit()`, `delay()`."""

    now: Callable[[], float]
    lock: threading.RLock

    def _init_calls_and_faults(self) -> None:
        self.calls: list[Call] = []
        self._faults: list[Fault] = []
        self._delays: list[Fault] = []

    def begin_call(
        self,
        request: Request,
        *,
        path: str,
        auth: AuthKind,
        token: Token | UserToken | None,
        body: Any,
    ) -> Call:
        call = call_record(request, path=path, auth=auth, token=token, body=body, now=self.now())
        with self.lock:
            self.calls.append(call)
        return call

    def calls_to(self, method: str, path_regex: str) -> list[Call]:
        """Recorded calls whose method matches ("*" for any) and whose path fully matches."""
        pattern = re.compile(path_regex)
        return [c for c in self.calls if method in ("*", c.method) and pattern.fullmatch(c.path)]

    def fail(
        self,
        method: str,
        path_regex: str,
        status: int = 500,
        *,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        lost: bool = False,
    ) -> None:
        """Answer the next `times` matching requests with `status` (path fully matches the regex,
        without the /api/v3 prefix). body: JSON-able, bytes, or None for GitHub's message.
        `lost`: GitHub does what was asked and only the answer is the fault (a proxy's 502)."""
        with self.lock:
            self._faults.append(
                Fault(
                    method.upper(), re.compile(path_regex), times, status, dict(headers or {}),
                    body, lost=lost,
                )
            )

    def rate_limit(
        self,
        method: str,
        path_regex: str,
        *,
        status: int = 403,
        times: int = 1,
        retry_after: int | None = None,
        reset_in: int = 60,
    ) -> None:
        """A primary (x-ratelimit-remaining: 0) or, with retry_after, a secondary rate limit."""
        headers = {
            "x-ratelimit-remaining": "0",
            "x-ratelimit-reset": str(int(self.now()) + reset_in),
        }
        if retry_after is not None:
            headers["retry-after"] = str(retry_after)
        self.fail(method, path_regex, status, times=times, headers=headers)

    def delay(self, method: str, path_regex: str, seconds: float, *, times: int = 1) -> None:
        """Hold the next `times` matching requests for `seconds` of real time before answering."""
        with self.lock:
            self._delays.append(
                Fault(method.upper(), re.compile(path_regex), times, seconds=seconds)
            )

    def clear_delays(self) -> None:
        """Requests from now on are answered at once (ones already held stay held)."""
        with self.lock:
            self._delays.clear()

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    return fault
        return None

    async def apply_delays(self, method: str, path: str) -> None:
        with self.lock:
            seconds = 0.0
            for delay in self._delays:
                if delay.matches(method, path):
                    delay.times -= 1
                    seconds = delay.seconds
                    break
        if seconds:
            await asyncio.sleep(seconds)
