"""What a GitHub error answer means for Porter: its message, and whether and when to try again.

Pure: porter/github.py hands in the status, the headers and the decoded body of an answer that
githubkit refused, and raises the GitHubError made here (the job runner reads `retryable` and
`retry_after`).
"""

from __future__ import annotations

from collections.abc import Mapping

from porter.errors import GitHubError
from porter.logs import redact

SECONDARY_LIMIT_WAIT = 60.0  # GitHub: "wait at least one minute" when it does not say how long


def failed(status: int, headers: Mapping[str, str], body: object, *, now: float) -> GitHubError:
    """The error for an answer with this status, headers and JSON body (None: not JSON)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    message = error_message(body)
    rate_limited = ("rate limit" in message.lower()
                    or lowered.get("x-ratelimit-remaining") == "0")
    return GitHubError(
        f"GitHub answered {status}: {message}",
        status=status,
        retry_after=retry_delay(status, lowered, message, now=now),
        retryable=status in (408, 429) or status >= 500 or (status == 403 and rate_limited),
    )


def retry_delay(status: int, headers: Mapping[str, str], message: str, *,
                now: float) -> float | None:
    """Seconds GitHub asks us to wait before retrying, or None when it did not say.

    Rules from GitHub's rate-limit docs (docs/platform-notes.md §C.6): `retry-after` wins;
    otherwise a spent primary limit (`x-ratelimit-remaining: 0`) waits until `x-ratelimit-reset`;
    a secondary limit, known only from the error's message, waits at least a minute.
    `headers` have lower-case names.
    """
    retry_after = headers.get("retry-after")
    if retry_after is not None and retry_after.strip().isdigit():
        return float(retry_after.strip())
    if headers.get("x-ratelimit-remaining") == "0":
        reset = headers.get("x-ratelimit-reset", "")
        if reset.isdigit():
            return max(0.0, float(reset) - now)
    if status in (403, 429) and "secondary rate limit" in message.lower():
        return SECONDARY_LIMIT_WAIT
    return None


def error_message(body: object) -> str:
    """GitHub's `message` and the `errors` details, at most 300 characters, with the secrets
    and token shapes Porter knows redacted: an answer can echo what it was sent, and this text
    becomes a task's reason, shown in its status comment and pages."""
    if not isinstance(body, dict):
        return "no details"
    message = str(body.get("message") or "no details")
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        details = [str(e.get("message") or e.get("code") or "") if isinstance(e, dict)
                   else str(e) for e in errors]
        message += " (" + "; ".join(d for d in details if d) + ")"
    return redact(message)[:300]
