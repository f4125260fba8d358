from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from porter.commands import ControlCommand, Reply, Run
from porter.errors import BadRequest
from porter.webhooks import (
    Ignored,
    Trigger,
    decode_delivery,
    decode_json,
    may_mention,
    sign,
    verify_signature,
)
from tests.conftest import comment_payload, fixture_files, fixture_name, load_fixture

AGENTS = frozenset({"claude", "codex"})
SECRET = b"It's a Secret to Everybody"


def test_githubs_documented_test_vector() -> None:
    header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert verify_signature(b"Hello, World!", header, secret=SECRET)
    assert sign(b"Hello, World!", secret=SECRET) == header


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha256=zz",
        "sha1=" + hmac.new(SECRET, b"Hello, World!", hashlib.sha1).hexdigest(),
        hmac.new(SECRET, b"Hello, World!", hashlib.sha256).hexdigest(),
        "sha512=" + hmac.new(SECRET, b"Hello, World!", hashlib.sha512).hexdigest(),
    ],
)
def test_signatures_that_are_not_sha256_of_the_body_are_refused(header: str | None) -> None:
    assert not verify_signature(b"Hello, World!", header, secret=SECRET)


def test_empty_secret_accepts_nothing() -> None:
    assert not verify_signature(b"x", sign(b"x", secret=b""), secret=b"")


@given(st.binary(max_size=4096), st.one_of(st.none(), st.text(max_size=200)))
def test_any_bytes_and_header_never_raise(body: bytes, header: str | None) -> None:
    assert verify_signature(body, header, secret=SECRET) in (True, False)


@given(st.binary(min_size=1, max_size=2048), st.data())
def test_any_single_byte_change_is_rejected(body: bytes, data: st.DataObject) -> None:
    header = sign(body, secret=SECRET)
    index = data.draw(st.integers(0, len(body) - 1))
    new_byte = data.draw(st.integers(0, 255).filter(lambda b: b != body[index]))
    changed = body[:index] + bytes([new_byte]) + body[index + 1 :]
    assert verify_signature(body, header, secret=SECRET)
    assert not verify_signature(changed, header, secret=SECRET)


def test_prefilter_finds_the_handle_in_raw_bytes_case_insensitively() -> None:
    assert may_mention(b'{"body":"@Porter fix"}', "porter")
    assert not may_mention(b'{"body":"@porterbot fix"}', "porter")
    assert not may_mention(json.dumps(comment_payload(body="thanks!")).encode(), "porter")


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"\xff\xfe", b'{"a": '])
def test_decode_json_refuses_non_objects(body: bytes) -> None:
    with pytest.raises(BadRequest):
        decode_json(body)


def decode(event: str, payload: dict[str, object]) -> Trigger | Ignored:
    return decode_delivery(event, "d-1", payload, handle="porter", agents=AGENTS)


def test_issue_comment_becomes_a_trigger() -> None:
    payload = comment_payload(body="@porter codex fix the typo")
    trigger = decode("issue_comment", payload)
    assert isinstance(trigger, Trigger)
    assert trigger.repo == payload["repository"]["full_name"]
    assert trigger.issue_number == payload["issue"]["number"]
    assert trigger.comment_id == payload["comment"]["id"]
    assert trigger.requester == payload["comment"]["user"]["login"]
    assert trigger.command == Run("fix the typo", agent="codex")
    assert trigger.comment_key == f"issue:{payload['comment']['id']}"


def test_review_comment_carries_file_line_and_head() -> None:
    payload = comment_payload("pull_request_review_comment")
    trigger = decode("pull_request_review_comment", payload)
    assert isinstance(trigger, Trigger)
    assert trigger.is_pull_request
    assert trigger.issue_number == payload["pull_request"]["number"]
    assert trigger.context["path"] == payload["comment"]["path"]
    assert trigger.context["head_sha"] == payload["pull_request"]["head"]["sha"]
    assert trigger.comment_key.startswith("review:")


@pytest.mark.parametrize(
    ("event", "mutate", "reason"),
    [
        ("issue_comment", {"action": "edited"}, "action"),
        ("issue_comment", {"action": "pinned"}, "action"),
        ("issues", {}, "event"),
        ("issue_comment", {"sender": {"login": "x", "type": "Bot"}}, "bots"),
    ],
)
def test_ignored_deliveries(event: str, mutate: dict[str, object], reason: str) -> None:
    payload = comment_payload()
    payload.update(mutate)
    outcome = decode(event, payload)
    assert isinstance(outcome, Ignored)
    assert reason in outcome.reason


def test_bot_commenter_never_triggers() -> None:
    payload = comment_payload()
    payload["comment"]["user"]["type"] = "Bot"
    assert isinstance(decode("issue_comment", payload), Ignored)
    payload = comment_payload()
    payload["comment"]["user"]["login"] = "porter[bot]"
    assert isinstance(decode("issue_comment", payload), Ignored)


def test_control_and_reply_commands_are_triggers_too() -> None:
    cancel = decode("issue_comment", comment_payload(body="@porter cancel"))
    assert isinstance(cancel, Trigger) and cancel.command == ControlCommand("cancel")
    typo = decode("issue_comment", comment_payload(body="@porter cladue fix"))
    assert isinstance(typo, Trigger) and isinstance(typo.command, Reply)


MENTION = "@porter fix the typo"
FIX = Run("fix the typo")
# Every real payload → what it decodes to as delivered, and with MENTION as its comment's body
# (None: the payload has no comment). A string is the reason it is ignored; a command, the
# trigger's. A new fixture needs a row here (test_the_decode_table_covers_every_fixture).
DECODES: dict[str, tuple[str, str | Run | None]] = {
    "github_app_authorization/revoked.payload.json": (
        "event github_app_authorization is not handled", None),
    "installation/created.payload.json": ("event installation is not handled", None),
    "installation/deleted.payload.json": ("event installation is not handled", None),
    "installation/suspend.payload.json": ("event installation is not handled", None),
    "installation_repositories/added.payload.json": (
        "event installation_repositories is not handled", None),
    "installation_repositories/removed.payload.json": (
        "event installation_repositories is not handled", None),
    "issue_comment/created.payload.json": ("comment does not address Porter", FIX),
    "issue_comment/created.with-installation.payload.json": (
        "comment does not address Porter", FIX),
    "issue_comment/deleted.payload.json": (
        "action 'deleted' is not handled", "action 'deleted' is not handled"),
    "issue_comment/deleted.with-organization.payload.json": (
        "action 'deleted' is not handled", "action 'deleted' is not handled"),
    "issue_comment/edited.payload.json": (
        "action 'edited' is not handled", "action 'edited' is not handled"),
    "issues/opened.payload.json": ("event issues is not handled", None),
    "issues/opened.with-empty-body.payload.json": ("event issues is not handled", None),
    "issues/opened.with-organization.payload.json": ("event issues is not handled", None),
    "ping/payload.json": ("event ping is not handled", None),
    "ping/with-app_id.payload.json": ("event ping is not handled", None),
    "pull_request/closed.payload.json": ("event pull_request is not handled", None),
    "pull_request/opened.payload.json": ("event pull_request is not handled", None),
    "pull_request/opened.with-organization.payload.json": (
        "event pull_request is not handled", None),
    "pull_request_review_comment/created.payload.json": (
        "comment does not address Porter", FIX),
    "pull_request_review_comment/deleted.payload.json": (
        "action 'deleted' is not handled", "action 'deleted' is not handled"),
    "pull_request_review_comment/edited.payload.json": (
        "action 'edited' is not handled", "action 'edited' is not handled"),
}


def test_the_decode_table_covers_every_fixture() -> None:
    assert sorted(DECODES) == [fixture_name(path) for path in fixture_files()]


def assert_decodes(event: str, payload: dict[str, object], expected: str | Run) -> None:
    outcome = decode(event, payload)
    if isinstance(expected, str):
        assert isinstance(outcome, Ignored), outcome
        assert outcome.reason == expected
    else:
        assert isinstance(outcome, Trigger), outcome
        assert outcome.command == expected


@pytest.mark.parametrize(("name", "as_delivered", "mentioned"),
                         [(name, *row) for name, row in DECODES.items()], ids=list(DECODES))
def test_what_each_real_payload_decodes_to(
    name: str, as_delivered: str, mentioned: str | Run | None
) -> None:
    event = name.split("/")[0]
    payload = load_fixture(name)
    assert_decodes(event, payload, as_delivered)
    if mentioned is None:
        assert "comment" not in payload
        return
    payload["comment"]["body"] = MENTION
    assert_decodes(event, payload, mentioned)


def test_comment_missing_required_fields_is_a_bad_request() -> None:
    payload = comment_payload()
    del payload["repository"]
    with pytest.raises(BadRequest):
        decode("issue_comment", payload)
