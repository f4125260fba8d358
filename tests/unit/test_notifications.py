"""Notification settings checked at startup, Slack text made inert, and the pacing of a channel."""

from __future__ import annotations

import base64
import json

import pytest

from porter.errors import ConfigError
from porter.models import Task
from porter.notices import NotifyJob
from porter.notifications import (
    SLACK,
    WEBHOOK,
    Channels,
    Spacing,
    notification,
    retry_after,
    slack_message,
)
from porter.redact import Redactor
from porter.runtime import check_config
from porter.settings import Settings
from porter.states import TaskState

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXX"


def settings(**env: str) -> Settings:
    return Settings.from_mapping({f"PORTER_{name.upper()}": value for name, value in env.items()})


def test_no_setting_no_channel() -> None:
    assert Channels.from_settings(settings()).names == ()


def test_both_channels_from_their_settings() -> None:
    channels = Channels.from_settings(settings(
        notify_webhook_url="https://hooks.example.com/porter", notify_webhook_secret=SECRET,
        notify_slack_url=SLACK_URL))
    assert channels.names == (WEBHOOK, SLACK)
    assert channels.webhook_key == bytes(range(32))
    assert SECRET not in repr(channels) and SLACK_URL not in repr(channels)


@pytest.mark.parametrize(("env", "problem"), [
    ({"notify_webhook_url": "hooks.example.com/porter", "notify_webhook_secret": SECRET},
     "PORTER_NOTIFY_WEBHOOK_URL: expected an http:// or https:// URL"),
    ({"notify_webhook_url": "https://hooks.example.com", "notify_webhook_secret": "hunter2hunter2"},
     "PORTER_NOTIFY_WEBHOOK_SECRET: expected whsec_ followed by the base64 of 24 to 64 random "
     "bytes, got a value (hidden)"),
    ({"notify_slack_url": "ftp://hooks.slack.com/x"},
     "PORTER_NOTIFY_SLACK_URL: expected an http:// or https:// URL, got a value (hidden)"),
])
def test_bad_values_stop_startup_with_the_setting_named(env: dict[str, str],
                                                        problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        settings(**env)
    assert problem in raised.value.message
    assert "hunter2" not in raised.value.message and "ftp://" not in raised.value.message


def test_a_webhook_url_without_a_secret_is_refused_at_startup_and_by_doctor() -> None:
    unsigned = settings(notify_webhook_url="https://hooks.example.com/porter")
    with pytest.raises(ConfigError, match="PORTER_NOTIFY_WEBHOOK_URL needs "
                                          "PORTER_NOTIFY_WEBHOOK_SECRET"):
        Channels.from_settings(unsigned)
    assert any("PORTER_NOTIFY_WEBHOOK_SECRET" in line for line in check_config(unsigned))


def finished(**fields: object) -> Task:
    values: dict[str, object] = dict(
        id=7, repo="octo/hello", installation_id=42, issue_number=3, is_pull_request=False,
        comment_kind="issue", comment_id=9, comment_url="https://github.com/octo/hello#c9",
        requester="alice", requester_id=1, agent="claude", model=None,
        instruction="fix the typo", state=TaskState.FAILED, stage="agent", reason="it broke",
        attempt=1, created_at=1000.0, updated_at=1125.0, delivery_id="d", started_at=1005.0,
        finished_at=1125.0, cost_usd=0.125, summary=None)
    values.update(fields)
    return Task(**values)  # type: ignore[arg-type]


def note_of(task: Task, *secrets: str) -> dict[str, object]:
    job = NotifyJob(task.id, attempt=task.attempt, channel=SLACK, state=task.state.value)
    return notification(task, job, public_url="https://porter.example.com",
                        redactor=Redactor(secrets))


def test_the_payload_says_what_ended_how_and_where_to_look() -> None:
    note = note_of(finished(pr_url=None))
    assert note["type"] == "task.finished"
    assert note["timestamp"] == "1970-01-01T00:18:45Z"
    assert note["data"] == {
        "task_id": 7, "attempt": 1, "state": "failed", "stage": "agent", "reason": "it broke",
        "repo": "octo/hello", "issue_number": 3, "url": "https://porter.example.com/tasks/7",
        "comment_url": "https://github.com/octo/hello#c9", "pr_url": None, "agent": "claude",
        "model": None, "requester": "alice", "cost_usd": 0.125, "duration_seconds": 120.0,
        "instruction": "fix the typo", "summary": None}


def test_untrusted_text_is_redacted_and_capped() -> None:
    token = "ghp_" + "A1b2C3d4E5" * 4
    task = finished(instruction=f"use {token} " + "x" * 500, summary="s" * 2000,
                    reason=f"leaked {SLACK_URL}")
    data = note_of(task, SLACK_URL)["data"]
    assert isinstance(data, dict)
    assert token not in json.dumps(data) and SLACK_URL not in json.dumps(data)
    assert len(data["instruction"]) == 200 and data["instruction"].endswith("…")
    assert len(data["summary"]) == 500
    assert data["reason"] == "leaked [REDACTED]"


def test_slack_text_is_inert_and_links_only_to_porter_and_the_pull_request() -> None:
    task = finished(state=TaskState.SUCCEEDED, pr_url="https://github.com/octo/hello/pull/4",
                    instruction="<!channel> @here ping <@U123> & see <https://evil.example|docs>",
                    summary="Done. @everyone look: <!here>")
    message = slack_message(note_of(task))
    text = message["text"]
    assert message["unfurl_links"] is False and message["unfurl_media"] is False
    for live in ("<!channel>", "<!here>", "<@U123>", "@here", "@everyone", "<https://evil"):
        assert live not in text
    assert "&lt;!channel&gt; @\u2060here ping &lt;@\u2060U123&gt; &amp; see" in text
    assert set(part.split("|")[0] for part in text.split("<")[1:]) == {
        "https://porter.example.com/tasks/7", "https://github.com/octo/hello/pull/4"}
    assert text.startswith(":white_check_mark: Porter task "
                           "<https://porter.example.com/tasks/7|#7> *succeeded*"
                           " · octo/hello#3 · claude · 2m 00s · $0.12")


def test_retry_after_in_seconds_or_as_a_date_within_an_hour() -> None:
    assert retry_after("7", now=0) == 7.0
    assert retry_after("Thu, 01 Jan 1970 00:00:30 GMT", now=10) == 20.0
    assert retry_after("999999", now=0) == 3600.0
    assert retry_after("soon", now=0) is None
    assert retry_after(None, now=0) is None


def test_a_channel_sends_one_message_per_interval_in_turn() -> None:
    spacing = Spacing(1.0)
    assert spacing.wait("a", 100.0) == 0.0
    assert spacing.wait("b", 100.0) == 1.0  # b's turn is at 101
    assert spacing.wait("c", 100.2) == pytest.approx(1.8)  # c's at 102
    assert spacing.wait("b", 100.5) == 0.5  # early: still 101
    assert spacing.wait("b", 101.0) == 0.0
    assert spacing.wait("c", 102.0) == 0.0
    assert spacing.wait("d", 102.0) == 1.0  # after c's turn
    spacing.hold(200.0)  # the channel answered 429
    assert spacing.wait("e", 150.0) == 50.0
