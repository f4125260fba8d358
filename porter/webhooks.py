"""Verifying and decoding a GitHub delivery: pure functions of headers, body and secret.

Payloads are read as plain dicts, never through githubkit's strict models: several real payloads
fail them and GitHub keeps adding actions (docs/platform-notes.md §B.4, D.3).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson

from porter.commands import Command, parse_comment
from porter.errors import BadRequest

TRIGGER_EVENTS = frozenset({"issue_comment", "pull_request_review_comment"})
_SIGNATURE = re.compile(r"sha256=([0-9a-f]{64})")
MAX_CONTEXT_CHARS = 20_000


def verify_signature(body: bytes, header: str | None, *, secret: bytes) -> bool:
    """True when `header` is `sha256=<hex HMAC of body>`. sha1 is never accepted (B.2)."""
    if not header or not secret:
        return False
    match = _SIGNATURE.fullmatch(header.strip().lower())
    if match is None:
        return False
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, match.group(1))


def sign(body: bytes, *, secret: bytes) -> str:
    """The X-Hub-Signature-256 value GitHub would send for `body`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


@lru_cache(maxsize=8)
def _mention_pattern(handle: str) -> re.Pattern[bytes]:
    return re.compile(rb"@" + re.escape(handle.encode()) + rb"(?![A-Za-z0-9_-])", re.IGNORECASE)


def may_mention(body: bytes, handle: str) -> bool:
    """Cheap pre-filter on the raw bytes: False means no comment in it can address Porter."""
    return _mention_pattern(handle).search(body) is not None


def decode_json(body: bytes) -> dict[str, Any]:
    # orjson: strict RFC 8259 parsing at a third of the stdlib's cost on the webhook hot path.
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise BadRequest("body is not a JSON object")
    return payload


@dataclass(frozen=True)
class Trigger:
    """A comment that addresses Porter, with everything a task needs from the payload."""

    delivery_id: str
    event: str
    comment_kind: str  # "issue" (issue or PR conversation) or "review" (PR diff comment)
    comment_id: int
    comment_url: str
    repo: str
    installation_id: int | None
    issue_number: int
    is_pull_request: bool
    requester: str
    requester_id: int | None
    command: Command
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def comment_key(self) -> str:
        return f"{self.comment_kind}:{self.comment_id}"


@dataclass(frozen=True)
class Ignored:
    reason: str


def decode_delivery(
    event: str,
    delivery_id: str,
    payload: Mapping[str, Any],
    *,
    handle: str,
    agents: Collection[str],
) -> Trigger | Ignored:
    """Decide what a verified delivery means. Raises BadRequest only for malformed payloads."""
    if event not in TRIGGER_EVENTS:
        return Ignored(f"event {event or '(none)'} is not handled")
    action = payload.get("action")
    if action != "created":
        return Ignored(f"action {action!r} is not handled")
    comment = _object(payload, "comment")
    sender = _maybe(payload, "sender")
    user = _maybe(comment, "user")
    if _is_bot(user) or _is_bot(sender):
        return Ignored("comments by bots never trigger")
    body = comment.get("body")
    if not isinstance(body, str):
        return Ignored("comment has no body")
    command = parse_comment(body, handle=handle, agents=agents)
    if command is None:
        return Ignored("comment does not address Porter")

    repository = _object(payload, "repository")
    repo = _str(repository, "full_name")
    installation = payload.get("installation")
    installation_id = installation.get("id") if isinstance(installation, dict) else None
    context: dict[str, Any] = {"author_association": comment.get("author_association")}
    if event == "issue_comment":
        issue = _object(payload, "issue")
        number = _int(issue, "number")
        is_pr = isinstance(issue.get("pull_request"), dict)
        kind = "issue"
        context.update(
            title=_clip(issue.get("title")),
            body=_clip(issue.get("body")),
            issue_url=issue.get("html_url"),
        )
    else:
        pull = _object(payload, "pull_request")
        number = _int(pull, "number")
        is_pr = True
        kind = "review"
        head = _maybe(pull, "head")
        base = _maybe(pull, "base")
        context.update(
            title=_clip(pull.get("title")),
            body=_clip(pull.get("body")),
            issue_url=pull.get("html_url"),
            path=comment.get("path"),
            line=comment.get("line") or comment.get("original_line"),
            diff_hunk=_clip(comment.get("diff_hunk")),
            head_ref=head.get("ref"),
            head_sha=head.get("sha"),
            head_repo=_maybe(head, "repo").get("full_name"),
            base_ref=base.get("ref"),
        )
    return Trigger(
        delivery_id=delivery_id,
        event=event,
        comment_kind=kind,
        comment_id=_int(comment, "id"),
        comment_url=str(comment.get("html_url") or ""),
        repo=repo,
        installation_id=installation_id if isinstance(installation_id, int) else None,
        issue_number=number,
        is_pull_request=is_pr,
        requester=_str(user, "login"),
        requester_id=user.get("id") if isinstance(user.get("id"), int) else None,
        command=command,
        context=context,
    )


def _is_bot(user: Mapping[str, Any]) -> bool:
    login = user.get("login")
    return user.get("type") == "Bot" or (isinstance(login, str) and login.endswith("[bot]"))


def _object(payload: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = payload.get(key)
    if not isinstance(value, dict):
        raise BadRequest(f"payload has no {key} object")
    return value


def _maybe(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def _int(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(f"payload field {key} is not a number")
    return value


def _str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"payload field {key} is missing")
    return value


def _clip(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    return value[:MAX_CONTEXT_CHARS]
