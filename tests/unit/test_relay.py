"""The relay's pure parts: text/event-stream framing, and smee's event → a GitHub delivery."""

from __future__ import annotations

import json

import pytest

from porter.relay import Event, EventStream, delivery_of, json_members, local_webhook_url
from porter.webhooks import sign, verify_signature

SECRET = b"relay-secret"


def parse(*chunks: bytes, max_line: int = 1 << 16, max_event: int = 1 << 16) -> list[Event]:
    stream = EventStream(max_line=max_line, max_event=max_event)
    return [event for chunk in chunks for event in stream.feed(chunk)]


def bytewise(text: bytes) -> list[bytes]:
    return [text[i:i + 1] for i in range(len(text))]


def test_events_end_at_a_blank_line_and_data_lines_join_with_newlines() -> None:
    assert parse(b"data: one\ndata: two\n\nevent: ping\ndata: {}\n\n") == [
        Event("message", "one\ntwo", ""), Event("ping", "{}", "")]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending_frames_the_same(newline: bytes) -> None:
    text = newline.join([b"id: 7", b"event: delivery", b"data: a", b"data: b", b"", b""])
    assert parse(text) == [Event("delivery", "a\nb", "7")]
    assert parse(*bytewise(text)) == [Event("delivery", "a\nb", "7")]


def test_a_crlf_split_between_chunks_is_one_line_end() -> None:
    assert parse(b"data: x\r", b"\n\r", b"\ndata: y\r\n\r\n") == [
        Event("message", "x", ""), Event("message", "y", "")]
    # A lone CR then a new line's text: the CR alone ended the line.
    assert parse(b"data: x\r", b"\r") == [Event("message", "x", "")]


def test_comments_and_unknown_fields_are_ignored() -> None:
    text = b": keep-alive\n:\ndata: kept\nfoo: bar\nretry: soon\n\n"
    assert parse(text) == [Event("message", "kept", "")]


def test_only_one_space_after_the_colon_is_dropped_and_no_colon_means_an_empty_value() -> None:
    assert parse(b"data:  two spaces\ndata\ndata:tight\n\n") == [
        Event("message", " two spaces\n\ntight", "")]


def test_an_event_with_no_data_is_not_dispatched_but_its_id_counts() -> None:
    stream = EventStream(max_line=100, max_event=100)
    assert stream.feed(b"id: 41\nevent: x\n\n") == []
    assert stream.last_event_id == "41"
    assert stream.feed(b"data: y\n\n") == [Event("message", "y", "41")]


def test_an_empty_data_line_still_dispatches() -> None:
    assert parse(b"data:\n\n") == [Event("message", "", "")]


def test_an_unfinished_event_is_never_dispatched() -> None:
    stream = EventStream(max_line=100, max_event=100)
    assert stream.feed(b"id: 1\ndata: done\n\nid: 2\ndata: cut off") == [
        Event("message", "done", "1")]
    assert stream.feed(b"\n") == []  # still no blank line: the stream could end here
    stream.reconnected()  # it did: what was pending is forgotten, the last id is kept
    assert stream.last_event_id == "1"
    assert stream.feed(b"\n\ndata: next\n\n") == [Event("message", "next", "1")]


def test_retry_takes_digits_only_and_ids_with_nul_are_ignored() -> None:
    stream = EventStream(max_line=100, max_event=100)
    stream.feed(b"retry: 2500\nretry: 1e3\nid: a\x00b\ndata: x\n\n")
    assert stream.retry_ms == 2500
    assert stream.last_event_id == ""


def test_a_leading_bom_is_dropped_and_text_is_utf8() -> None:
    assert parse("\ufeffdata: café ✓\n\n".encode()) == [Event("message", "café ✓", "")]
    assert parse(b"data: \xff\n\n") == [Event("message", "\ufffd", "")]


def test_an_overlong_line_drops_its_event_without_holding_it() -> None:
    stream = EventStream(max_line=16, max_event=1000)
    events = stream.feed(b"data: small\n\ndata: " + b"x" * 40)
    assert events == [Event("message", "small", "")]
    assert len(stream._pending) == 0  # dropped as it came, not buffered
    assert stream.feed(b"x" * 40 + b"\ndata: tail\n\ndata: after\n\n") == [
        Event("message", "after", "")]
    assert stream.dropped == 1


def test_an_event_whose_data_passes_the_bound_is_dropped() -> None:
    stream = EventStream(max_line=100, max_event=10)
    assert stream.feed(b"data: 12345\ndata: 67890\n\ndata: ok\n\n") == [
        Event("message", "ok", "")]
    assert stream.dropped == 1


# -- smee's events ----------------------------------------------------------------------------


def smee(body_json: str, **headers: str) -> str:
    """An event's data as smee.io writes it: JSON.stringify of headers, body, query, timestamp."""
    fields = ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in headers.items())
    return "{" + fields + ',"body":' + body_json + ',"query":{},"timestamp":1700000000000}'


def test_a_delivery_keeps_githubs_headers_and_the_body_text_as_sent() -> None:
    # JSON.stringify's text, which Python's json.dumps would write differently (1e-7, \ud800).
    body = '{"action":"created","n":1e-7,"s":"caf\u00e9 \\ud800 </x>","ok":true}'
    signature = sign(body.encode(), secret=SECRET)
    data = smee(body, **{
        "host": "smee.io", "content-length": "999", "connection": "close",
        "x-github-event": "issue_comment", "x-github-delivery": "d-1",
        "x-hub-signature-256": signature, "user-agent": "GitHub-Hookshot/1",
        "content-type": "application/json", "x-github-hook-id": "7"})
    delivery = delivery_of(Event("message", data, "1"))
    assert delivery is not None
    assert delivery.body == body.encode()
    assert verify_signature(delivery.body, delivery.headers["x-hub-signature-256"],
                            secret=SECRET)
    assert delivery.headers == {
        "x-github-event": "issue_comment", "x-github-delivery": "d-1",
        "x-hub-signature-256": signature, "user-agent": "GitHub-Hookshot/1",
        "x-github-hook-id": "7", "content-type": "application/json"}
    assert delivery.name == "d-1 (issue_comment)"


def test_the_body_text_equals_a_compact_reserialisation_for_ordinary_payloads() -> None:
    payload = {"comment": {"body": "@porter fix — café ✓", "id": 5}, "list": [1, 2.5, None]}
    data = json.dumps({"x-github-event": "issue_comment", "body": payload},
                      separators=(",", ":"), ensure_ascii=False)
    delivery = delivery_of(Event("message", data, ""))
    assert delivery is not None
    assert delivery.body == json.dumps(payload, separators=(",", ":"),
                                       ensure_ascii=False).encode()


@pytest.mark.parametrize("event", [
    Event("ready", '{"x-github-event":"ping","body":{}}', ""),
    Event("ping", "{}", ""),
    Event("message", "not json", ""),
    Event("message", "[1, 2]", ""),
    Event("message", '{"body": {"a": 1}}', ""),  # no X-GitHub-Event: not a GitHub delivery
    Event("message", '{"x-github-event": "push", "body": "text"}', ""),  # not a JSON object
    Event("message", '{"x-github-event": "push", "body": {}} trailing', ""),
])
def test_anything_else_is_not_a_delivery(event: Event) -> None:
    assert delivery_of(event) is None


def test_json_members_keep_each_values_exact_text() -> None:
    assert json_members(' { "a" : [1, 2] , "b":{"c":"\\u00e9"} } ') == {
        "a": ([1, 2], "[1, 2]"), "b": ({"c": "é"}, '{"c":"\\u00e9"}')}
    assert json_members("{}") == {}
    for bad in ("", "{", '{"a"}', '{"a":1,}', '{1:2}', '{"a":1}}', "nope"):
        assert json_members(bad) is None


@pytest.mark.parametrize(("host", "url"), [
    ("127.0.0.1", "http://127.0.0.1:8000/webhooks/github"),
    ("0.0.0.0", "http://127.0.0.1:8000/webhooks/github"),  # noqa: S104 - not bound, mapped
    ("::", "http://[::1]:8000/webhooks/github"),
    ("localhost", "http://localhost:8000/webhooks/github"),
])
def test_the_relay_posts_to_the_listener_on_this_host(host: str, url: str) -> None:
    assert local_webhook_url(host, 8000) == url
