"""What the LLM gateway lets through, per provider (porter/gateway/providers.py). Pure."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from porter.gateway.providers import (
    PROVIDERS,
    api_path,
    real_key,
    request_headers,
    response_headers,
    run_token,
    take_query_param,
)
from porter.tokens import GATEWAY_SUBKEY, gateway_token, parse_gateway_token

A, OAI, G = PROVIDERS["anthropic"], PROVIDERS["openai"], PROVIDERS["gemini"]

ALLOWED = [
    (A, "v1/messages"), (A, "v1/messages/count_tokens"), (A, "v1/models"),
    (A, "v1/models/claude-sonnet-4-5"),
    (OAI, "v1/chat/completions"), (OAI, "v1/responses"), (OAI, "v1/responses/resp_123"),
    (OAI, "v1/responses/resp_123/input_items"), (OAI, "v1/responses/compact"), (OAI, "v1/models"),
    (OAI, "v1/models/gpt-5.1-codex"),
    (G, "v1beta/models/gemini-2.5-pro:generateContent"),
    (G, "v1beta/models/gemini-2.5-flash-lite:streamGenerateContent"),
    (G, "v1/models/gemini-2.5-pro:countTokens"), (G, "v1beta/models"),
    (G, "v1beta/models/gemini-2.5-pro"),
]
REFUSED = [
    (A, ""), (A, "v1"), (A, "v1/messages/"), (A, "v1/messages/batches"), (A, "v1/complete"),
    (A, "v1/files"), (A, "v1/models/a/b"), (A, "V1/messages"), (A, "v1/messages?x=1"),
    (OAI, "v1/embeddings"), (OAI, "v1/files"), (OAI, "v1/batches"), (OAI, "v1/audio/speech"),
    (OAI, "v1/images/generations"), (OAI, "v1/chat/completions/abc"), (OAI, "v1/responses/"),
    (OAI, "v1/responses/.."), (OAI, "v1/responses/./x"), (OAI, "v1/messages"),
    (G, "v1beta/models/gemini:embedContent"), (G, "v1beta/models/gemini:deleteModel"),
    (G, "v1beta/tunedModels"), (G, "v1beta/files"), (G, "v1beta/models/a/b:generateContent"),
    (G, "v1beta/models/:generateContent"), (G, "v1beta/models/..:generateContent"),
    (G, "v2/models/gemini:generateContent"),
]


def raw(provider_name: str, path: str) -> bytes:
    return f"/llm/{provider_name}/{path}".encode()


@pytest.mark.parametrize(("provider", "path"), ALLOWED)
def test_the_dialects_paths_are_allowed(provider, path) -> None:  # type: ignore[no-untyped-def]
    assert api_path(raw(provider.name, path), provider) == path


@pytest.mark.parametrize(("provider", "path"), REFUSED)
def test_other_paths_are_not(provider, path) -> None:  # type: ignore[no-untyped-def]
    assert api_path(raw(provider.name, path), provider) is None


@pytest.mark.parametrize("wire", [
    b"/llm/anthropic/v1/../v1/messages", b"/llm/anthropic/v1/./messages",
    b"/llm/anthropic/v1%2Fmessages", b"/llm/anthropic/v1/messag%65s",
    b"/llm/anthropic//v1/messages", b"/llm/anthropic/v1/messages/..",
    b"/llm/anthropic/v1/messages\x00", b"/llm/anthropic/v1/messages\\..\\files",
    b"/llm/anthropic/https://evil.example/v1/messages", b"/llm/anthropic/v1/m\xc3\xa9ssages",
    b"/llm/anthropic/v1/messages ", b"/llm/openai/v1/chat/completions",  # another's prefix
    b"/llm/anthropic", b"/api/tasks",
])
def test_encodings_traversal_and_other_hosts_never_pass(wire: bytes) -> None:
    assert api_path(wire, A) is None


@given(st.binary(max_size=80))
def test_whatever_passes_is_plain_and_inside_the_api(tail: bytes) -> None:
    for provider in PROVIDERS.values():
        path = api_path(b"/llm/" + provider.name.encode() + b"/" + tail, provider)
        if path is not None:
            assert provider.allows(path)
            assert "%" not in path and "//" not in path and not path.startswith("/")
            assert ".." not in path.split("/") and "." not in path.split("/")


def test_the_token_comes_from_the_header_its_sdk_uses() -> None:
    assert run_token(A, {"x-api-key": "plt_r1.m"}, "beta=true") == ("plt_r1.m", "beta=true")
    assert run_token(A, {"authorization": "Bearer plt_r1.m"}, "") == (None, "")
    assert run_token(OAI, {"authorization": "Bearer plt_r1.m"}, "") == ("plt_r1.m", "")
    assert run_token(OAI, {"authorization": "bearer  plt_r1.m "}, "") == ("plt_r1.m", "")
    assert run_token(OAI, {"authorization": "Basic plt_r1.m"}, "") == (None, "")
    assert run_token(OAI, {"x-api-key": "plt_r1.m"}, "") == (None, "")
    assert run_token(G, {"x-goog-api-key": "plt_r1.m"}, "alt=sse") == ("plt_r1.m", "alt=sse")
    assert run_token(G, {}, "alt=sse&key=plt_r1.m") == ("plt_r1.m", "alt=sse")
    assert run_token(G, {}, "key=plt_r1.m&alt=sse&key=other") == ("plt_r1.m", "alt=sse")
    # The header wins; the query's key is stripped either way, so it never travels on.
    assert run_token(G, {"x-goog-api-key": "plt_a.b"}, "key=plt_c.d") == ("plt_a.b", "")
    assert run_token(A, {}, "key=plt_r1.m") == (None, "key=plt_r1.m")


def test_a_query_keeps_its_other_bytes() -> None:
    assert take_query_param("a=1&%6bey=s%2Bx&b=%20+&c", "key") == ("s+x", "a=1&b=%20+&c")
    assert take_query_param("", "key") == (None, "")
    assert take_query_param("keys=1&akey=2", "key") == (None, "keys=1&akey=2")


def test_only_safe_request_headers_travel() -> None:
    sent = [(b"content-type", b"application/json"), (b"x-api-key", b"plt_x"),
            (b"authorization", b"Bearer plt_x"), (b"x-goog-api-key", b"plt_x"),
            (b"cookie", b"s=1"), (b"host", b"porter"), (b"content-length", b"2"),
            (b"connection", b"keep-alive"), (b"transfer-encoding", b"chunked"),
            (b"te", b"trailers"), (b"upgrade", b"h2c"), (b"proxy-authorization", b"x"),
            (b"x-forwarded-for", b"1.2.3.4"), (b"forwarded", b"for=x"),
            (b"openai-organization", b"org"), (b"openai-project", b"p"),
            (b"x-goog-user-project", b"p"), (b"accept-encoding", b"gzip"),
            (b"anthropic-version", b"2023-06-01"), (b"anthropic-beta", b"x"),
            (b"openai-beta", b"responses=v1"), (b"X-Stainless-OS", b"Linux"),
            (b"user-agent", b"codex"), (b"accept", b"text/event-stream"),
            (b"originator", b"codex_cli_rs"), (b"session_id", b"s")]
    kept = {name.lower() for name, _ in request_headers(sent)}
    assert kept == {b"content-type", b"anthropic-version", b"anthropic-beta", b"openai-beta",
                    b"x-stainless-os", b"user-agent", b"accept", b"originator", b"session_id"}


def test_only_safe_response_headers_travel_back() -> None:
    answered = [(b"Content-Type", b"text/event-stream"), (b"request-id", b"req_1"),
                (b"x-request-id", b"r"), (b"anthropic-ratelimit-tokens-remaining", b"9"),
                (b"x-ratelimit-remaining-requests", b"9"), (b"retry-after", b"3"),
                (b"x-should-retry", b"true"), (b"set-cookie", b"a=b"),
                (b"content-length", b"10"), (b"content-encoding", b"gzip"),
                (b"transfer-encoding", b"chunked"), (b"connection", b"close"),
                (b"anthropic-organization-id", b"org"), (b"openai-organization", b"org"),
                (b"strict-transport-security", b"max-age=1"), (b"alt-svc", b"h3")]
    assert [n for n, _ in response_headers(answered)] == [
        b"content-type", b"request-id", b"x-request-id", b"anthropic-ratelimit-tokens-remaining",
        b"x-ratelimit-remaining-requests", b"retry-after", b"x-should-retry"]


def test_the_real_key_goes_where_the_provider_reads_it() -> None:
    assert A.key_out("sk-a") == ("x-api-key", "sk-a")
    assert OAI.key_out("sk-o") == ("authorization", "Bearer sk-o")
    assert G.key_out("gm") == ("x-goog-api-key", "gm")
    assert real_key(OAI, {"CODEX_API_KEY": "c", "OPENAI_API_KEY": "o"}) == "o"
    assert real_key(OAI, {"CODEX_API_KEY": "c", "OPENAI_API_KEY": ""}) == "c"
    assert real_key(G, {"GOOGLE_API_KEY": "g"}) == "g"
    assert real_key(A, {"OPENAI_API_KEY": "o"}) is None


@pytest.mark.parametrize("status", [401, 402, 403, 404, 405, 413, 502, 504])
def test_refusals_come_in_each_providers_error_shape(status: int) -> None:
    anthropic = json.loads(A.error_body(status, "no"))
    assert anthropic["type"] == "error" and anthropic["error"]["message"] == "no"
    assert anthropic["error"]["type"].endswith("_error") or \
        anthropic["error"]["type"] == "request_too_large"
    openai = json.loads(OAI.error_body(status, "no"))["error"]
    assert openai["message"] == "no" and openai["type"] and "param" in openai
    gemini = json.loads(G.error_body(status, "no"))["error"]
    assert gemini == {"code": status, "message": "no", "status": gemini["status"]}
    assert gemini["status"].isupper()
    assert json.loads(A.error_body(401, "x"))["error"]["type"] == "authentication_error"
    assert json.loads(OAI.error_body(401, "x"))["error"]["code"] == "invalid_api_key"
    assert json.loads(G.error_body(401, "x"))["error"]["status"] == "UNAUTHENTICATED"


def test_a_gateway_token_names_its_run_and_nothing_else_parses() -> None:
    token = gateway_token(b"k" * 32, "rabc123")
    assert token.startswith("plt_rabc123.") and parse_gateway_token(token) == "rabc123"
    for bad in ("", "plt_", "plt_.mac", "plt_rabc", "prt_rabc.mac", "plt_r/../x.mac",
                "plt_r abc.mac", "plt_" + "r" * 65 + ".mac"):
        assert parse_gateway_token(bad) is None, bad
    assert GATEWAY_SUBKEY == "llm-token"
