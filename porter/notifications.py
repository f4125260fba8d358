"""Telling the operator when a task ends: a signed webhook (Standard Webhooks) and a Slack message.

Each end of a task (`NOTIFIED` in porter/notices.py) enqueues one job per configured channel in
the transaction of the state change (porter/store/tasks.py); the job runner delivers it, so a
task's state never waits on a notification. Network errors, 5xx and 429 are retried with the
runner's backoff (a `Retry-After` obeyed); any other answer gives up, and the runner logs why.

What is sent is what an operator needs to look: links, repository, state, cost, duration. Never a
secret: the untrusted text (instruction, summary, reason) is redacted and capped, and for Slack
escaped so that it cannot ping a channel or forge a link.
"""

from __future__ import annotations

import email.utils
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from porter import standard_webhooks
from porter.errors import ConfigError, NotificationError
from porter.jobs import JobContext, JobKind, Paced
from porter.logs import known_secrets
from porter.models import Task
from porter.notices import NotifyJob
from porter.redact import Redactor
from porter.settings import Settings
from porter.settings.parse import Secret
from porter.status import duration

log = logging.getLogger(__name__)

Clock = Callable[[], float]

WEBHOOK = "webhook"
SLACK = "slack"
EVENT_TYPE = "task.finished"
# Bounded: a receiver that hangs costs the job runner this much, then the job is retried.
TIMEOUT = httpx.Timeout(15.0, connect=5.0)
# Slack accepts about one message a second per incoming webhook; a receiver of signed webhooks
# is ours to pace too, a little more loosely.
SPACING = {SLACK: 1.0, WEBHOOK: 0.2}
MAX_RETRY_AFTER = 3600.0
# How much untrusted text travels, in characters.
INSTRUCTION_CHARS = 200
SUMMARY_CHARS = 500
REASON_CHARS = 300

STATE_WORDS = {"succeeded": "succeeded", "failed": "failed", "cancelled": "was cancelled",
               "timed_out": "timed out"}
STATE_EMOJI = {"succeeded": ":white_check_mark:", "failed": ":x:",
               "cancelled": ":octagonal_sign:", "timed_out": ":hourglass:"}


@dataclass(frozen=True)
class Channels:
    """The configured channels; the key and the Slack URL are credentials (never in a repr)."""

    webhook_url: str | None = field(default=None, repr=False)
    webhook_key: bytes | None = field(default=None, repr=False)
    slack_url: Secret | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Channels:
        """Raise ConfigError, naming the settings, for a webhook URL with no secret to sign."""
        secret = settings.notify_webhook_secret
        if settings.notify_webhook_url and secret is None:
            raise ConfigError("PORTER_NOTIFY_WEBHOOK_URL needs PORTER_NOTIFY_WEBHOOK_SECRET: "
                              f"{standard_webhooks.SECRET_SHAPE}")
        key = None
        if settings.notify_webhook_url and secret is not None:
            try:
                key = standard_webhooks.decode_secret(secret.get())
            except ValueError as exc:
                raise ConfigError(f"PORTER_NOTIFY_WEBHOOK_SECRET: expected {exc}") from None
        return cls(webhook_url=settings.notify_webhook_url if key else None, webhook_key=key,
                   slack_url=settings.notify_slack_url or None)

    @property
    def names(self) -> tuple[str, ...]:
        return ((WEBHOOK,) if self.webhook_url else ()) + ((SLACK,) if self.slack_url else ())

    def secrets(self) -> list[str]:
        """What no payload may hold, whatever the untrusted text says."""
        slack = self.slack_url.get() if self.slack_url else None
        return [value for value in (self.webhook_url, slack) if value]


def notification(task: Task, job: NotifyJob, *, public_url: str, redactor: Redactor
                 ) -> dict[str, Any]:
    """The webhook's JSON body (also what the Slack text is made from). Pure."""
    started = task.started_at or task.created_at
    ended = task.finished_at or task.updated_at
    return {
        "type": EVENT_TYPE,
        "timestamp": datetime.fromtimestamp(ended, UTC).isoformat().replace("+00:00", "Z"),
        "data": {
            "task_id": task.id,
            "attempt": job.attempt,
            "state": job.state,
            "stage": task.stage,
            "reason": _told(task.reason, redactor, REASON_CHARS),
            "repo": task.repo,
            "issue_number": task.issue_number,
            "url": f"{public_url}/tasks/{task.id}",
            "comment_url": task.comment_url,
            "pr_url": task.pr_url,
            "agent": task.agent,
            "model": task.model,
            "requester": task.requester,
            "cost_usd": task.cost_usd,
            "duration_seconds": round(max(0.0, ended - started), 3),
            "instruction": _told(" ".join(task.instruction.split()), redactor,
                                 INSTRUCTION_CHARS),
            "summary": _told(task.summary, redactor, SUMMARY_CHARS),
        },
    }


def _told(text: str | None, redactor: Redactor, limit: int) -> str | None:
    if not text:
        return None
    text = redactor.redact(text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# A mention in plain text (`@here`, `@channel`, `@someone`); a WORD JOINER after the `@` keeps it
# readable and inert, whether or not Slack links names for this webhook.
_AT = re.compile(r"@(?=\w)")


def slack_escape(text: str) -> str:
    """Untrusted text as Slack shows it literally: `&`, `<`, `>` escaped (so no `<!channel>`,
    `<@U…>` or `<url|label>` survives) and no `@` mention."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _AT.sub("@\u2060", escaped)


def _link(url: str | None, label: str) -> str:
    if not url or "|" in url:
        return slack_escape(url or label)
    return f"<{slack_escape(url)}|{slack_escape(label)}>"


def slack_message(note: dict[str, Any]) -> dict[str, Any]:
    """The Slack incoming-webhook body for a notification. Pure."""
    data = note["data"]
    state = str(data["state"])
    cost = f" · ${data['cost_usd']:.2f}" if data["cost_usd"] is not None else ""
    lines = [
        f"{STATE_EMOJI.get(state, ':grey_question:')} Porter task "
        f"{_link(data['url'], '#' + str(data['task_id']))} *{STATE_WORDS.get(state, state)}*"
        f" · {slack_escape(data['repo'])}#{data['issue_number']} · "
        f"{slack_escape(data['agent'])} · {duration(data['duration_seconds'])}{cost}"]
    if data["pr_url"]:
        lines.append(f"Pull request: {_link(data['pr_url'], data['pr_url'])}")
    if data["instruction"]:
        lines.append(f"> {slack_escape(data['instruction'])}")
    if data["reason"] and state != "succeeded":
        lines.append(f"Reason: {slack_escape(data['reason'])}")
    if data["summary"]:
        lines.append(slack_escape(data["summary"]))
    # No unfurling: a link in the untrusted text must not make Slack fetch it.
    return {"text": "\n".join(lines), "unfurl_links": False, "unfurl_media": False}


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds a `Retry-After` asks for (a number, or an HTTP date), within 0…an hour."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class Spacing:
    """At most one message per `interval` on a channel. A message that comes too soon is given
    the next free turn and handed back to the job runner until then (`Paced`: nothing sleeps,
    no attempt is spent); back at its turn, it goes."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._next = 0.0
        self._turns: dict[str, float] = {}

    def wait(self, key: str, now: float) -> float:
        """0: send now. Else how long until `key`'s turn, which is kept for it."""
        turn = self._turns.pop(key, None)
        if turn is not None:
            if now >= turn:
                return 0.0
            self._turns[key] = turn
            return turn - now
        if now >= self._next:
            self._next = now + self._interval
            return 0.0
        turn, self._next = self._next, self._next + self._interval
        # Turns never claimed (the job was given up elsewhere) are forgotten after a while.
        self._turns = {k: t for k, t in self._turns.items() if t > now - MAX_RETRY_AFTER}
        self._turns[key] = turn
        return turn - now

    def hold(self, until: float) -> None:
        """The channel said it is rate limited: nothing new goes before `until`."""
        self._next = max(self._next, until)


class Notifier:
    """The notification job kind: builds the message when it runs, and posts it."""

    def __init__(self, channels: Channels, *, public_url: str, clock: Clock = time.time
                 ) -> None:
        self.channels = channels
        self._public_url = public_url
        self._clock = clock
        self._spacing = {name: Spacing(SPACING[name]) for name in channels.names}

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock = time.time) -> Notifier:
        return cls(Channels.from_settings(settings), public_url=settings.public_url,
                   clock=clock)

    def kind(self) -> JobKind:
        return JobKind(run=self._send, writes=False)

    async def _send(self, ctx: JobContext) -> dict[str, object]:
        job = NotifyJob.of(ctx.job)
        spacing = self._spacing.get(job.channel)
        if spacing is None:  # configured when enqueued, not any more: nothing to do
            return {"skipped": f"{job.channel} is not configured"}
        task = await ctx.store.get_task(job.task_id)
        if task is None:
            return {"skipped": "the task is gone"}
        wait = spacing.wait(job.key, self._clock())
        if wait > 0:
            raise Paced(wait)  # back at its turn, no attempt spent
        # Whatever Porter knows to be secret (the operator's keys, tokens it minted), not only
        # the channels' own URLs: a summary is the agent's text and may quote any of them.
        redactor = Redactor([*self.channels.secrets(), *known_secrets()])
        note = notification(task, job, public_url=self._public_url, redactor=redactor)
        if job.channel == SLACK:
            assert self.channels.slack_url is not None
            body = json.dumps(slack_message(note)).encode()
            status = await self._post(job, self.channels.slack_url.get(), body, {})
        else:
            assert self.channels.webhook_url and self.channels.webhook_key
            body = json.dumps(note, separators=(",", ":")).encode()
            # One id per task attempt, the same on every retry: the receiver's idempotency
            # key. Per Porter instance, as task ids are.
            msg_id = f"msg_{ctx.store.instance_id}_{job.task_id}_{job.attempt}"
            signed = standard_webhooks.headers(self.channels.webhook_key, msg_id,
                                               int(self._clock()), body)
            status = await self._post(job, self.channels.webhook_url, body, signed)
        return {"status": status}

    async def _post(self, job: NotifyJob, url: str, body: bytes, headers: dict[str, str]
                    ) -> int:
        """POST once; the status on a 2xx, else a NotificationError saying whether to retry.
        Messages never hold the URL (Slack's is a credential) nor the answer's body."""
        what = f"{job.channel} notification of task {job.task_id}"
        try:
            sent = {"content-type": "application/json", "user-agent": "Porter", **headers}
            # Streamed and never read: the answer's body is not ours to hold, whatever its size.
            async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as client, \
                    client.stream("POST", url, content=body, headers=sent) as response:
                status = response.status_code
                wait = retry_after(response.headers.get("retry-after"), self._clock())
        except httpx.HTTPError as exc:
            raise NotificationError(f"{what}: {type(exc).__name__}", retryable=True) from None
        if 200 <= status < 300:
            return status
        if status == 429 or status >= 500:
            if status == 429:
                self._spacing[job.channel].hold(self._clock() + (wait or SPACING[job.channel]))
            raise NotificationError(f"{what}: answered {status}", retryable=True,
                                    retry_after=wait)
        hint = "; redirects are not followed: set the final URL" if status < 400 else ""
        raise NotificationError(f"{what}: answered {status}, not sent{hint}")
