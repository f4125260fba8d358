"""What a run ends with, and delivering it: the outcome, the `complete` payload (redacted, with
the log tail), and posting it until Porter accepts or refuses it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from porter_entrypoint.callbacks import Callback, backoff_delays
from porter_entrypoint.streams import Transcript


class StageFailure(Exception):
    """A stage failed in a way the requester should hear about."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage
        self.message = message


@dataclass
class Outcome:
    status: str
    summary: str = ""
    exit_code: int | None = None
    cost_usd: float | None = None
    usage: dict[str, Any] | None = None
    changeset: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    verification: dict[str, Any] | None = None  # already redacted (verify.py)
    patch: str | None = None  # the changeset as a diff, for the task page


def failed(stage: str, message: str, summary: str = "") -> Outcome:
    return Outcome("failed", summary=summary, error={"stage": stage, "message": message})


def complete_payload(outcome: Outcome, transcript: Transcript) -> dict[str, Any]:
    redact = transcript.redactor.redact
    error = None
    if outcome.error:
        error = {"stage": outcome.error["stage"], "message": redact(outcome.error["message"])}
    payload = {
        "status": outcome.status,
        "summary": redact(outcome.summary),
        "exit_code": outcome.exit_code,
        "cost_usd": outcome.cost_usd,
        "usage": outcome.usage,
        "changeset": outcome.changeset,
        "error": error,
        "log_tail": transcript.log_tail(),
    }
    if outcome.verification is not None:  # only when the spec asked for verification
        payload["verification"] = outcome.verification
    if outcome.patch is not None:
        payload["patch"] = redact(outcome.patch)
    return payload


def post_complete(
    callback: Callback,
    payload: dict[str, Any],
    *,
    base_backoff: float,
    deadline_s: float,
    transcript: Transcript,
) -> bool:
    """Deliver the result until Porter accepts it; False if it was refused or time ran out."""
    delays = backoff_delays(base_backoff)
    give_up_at = time.monotonic() + deadline_s
    while True:
        reply = callback.call("POST", "complete", payload, timeout=120.0)
        if reply.ok:
            transcript.note(f"Porter accepted the result ({payload['status']})")
            return True
        if reply.status in (401, 409):
            transcript.note(f"Porter refused the result ({reply.describe()}): attempt superseded")
            return False
        if not reply.retryable:
            if payload["status"] == "failed" and payload["changeset"] is None:
                transcript.note(f"Porter rejected the result ({reply.describe()})")
                return False
            # Porter could not take this result (too big, invalid): still report that it ended.
            detail = transcript.redactor.redact(reply.error)[:200]
            transcript.note(f"Porter rejected the result ({reply.describe()}); reporting a failure")
            # Without the verification report too: it may be what Porter refused.
            payload = {
                **{key: value for key, value in payload.items() if key != "verification"},
                "status": "failed",
                "changeset": None,
                "error": {
                    "stage": "collect",
                    "message": f"Porter rejected the result ({reply.describe()}): {detail}",
                },
            }
            continue
        delay = next(delays)
        if time.monotonic() + delay > give_up_at:
            transcript.note(f"could not deliver the result ({reply.describe()}); giving up")
            return False
        time.sleep(delay)
