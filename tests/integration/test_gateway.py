"""The LLM gateway: run tokens in, real keys out, answers streamed back, everything else refused
with nothing forwarded. Porter whole (tests/gateway_helpers.py) on a real socket, its gateway
pointed at the fake provider (tests/fakes/llm_provider.py), which records every request.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from porter.crypto import KeyRing
from porter.gateway.metering import BudgetExceeded, Metering
from porter.gateway.proxy import HTTP2, Gateway
from porter.tokens import GATEWAY_SUBKEY, gateway_token
from tests.fakes.llm_dialects import Text, Tool, anthropic_events, gemini_events, responses_events
from tests.fakes.llm_provider import FakeProvider, Reply
from tests.fakes.world import ADMIN
from tests.gateway_helpers import OPERATOR_KEYS, GatewayWorld, gateway_world
from tests.loopback import until
from tests.settings_helpers import ALICE_KEY, saved
from tests.web_helpers import signed_in

ANTHROPIC = "/llm/anthropic/v1/messages"
# Each provider's call and where its SDK puts the key.
CALLS = {
    "anthropic": (ANTHROPIC, lambda t: {"x-api-key": t}, "ANTHROPIC_API_KEY"),
    "openai": ("/llm/openai/v1/responses", lambda t: {"authorization": f"Bearer {t}"},
               "OPENAI_API_KEY"),
    "gemini": ("/llm/gemini/v1beta/models/gemini-2.5-pro:generateContent",
               lambda t: {"x-goog-api-key": t}, "GEMINI_API_KEY"),
}
# Odd spacing, key order, unicode and fields no SDK documents: all must arrive untouched.
BODY = ('{"model":"claude-sonnet-4-5",  "max_tokens": 64,\n "messages":[{"role":"user",'
        '"content":"fix Teh typo \\u00e9 ✓"}], "stream": false, "zz_unknown": {"a": [1, 2.50]},'
        ' "input": [{"type": "custom_tool_call", "name": "apply_patch", "input": "*** x"}]}'
        ).encode()


def error_of(provider: str, answer: httpx.Response) -> str:
    """The message of an error in the provider's own shape (fails on any other shape)."""
    data = answer.json()
    if provider == "anthropic":
        assert data["type"] == "error" and set(data["error"]) == {"type", "message"}
        return str(data["error"]["message"])
    if provider == "gemini":
        assert data["error"]["code"] == answer.status_code and data["error"]["status"]
        return str(data["error"]["message"])
    assert set(data["error"]) >= {"message", "type", "code"}
    return str(data["error"]["message"])


@pytest.fixture
async def gw(tmp_path: Path, pem: str) -> AsyncIterator[GatewayWorld]:
    async with gateway_world(tmp_path, pem) as opened:
        yield opened


async def live_token(gw: GatewayWorld, **where: Any) -> tuple[int, str]:
    task_id, caller = await gw.world.started(**where)
    return task_id, gw.token(caller.run_id)


# -- credential in, credential out ------------------------------------------------------------


@pytest.mark.parametrize("provider", list(CALLS))
async def test_the_provider_gets_the_real_key_and_the_exact_body_never_the_token(
        gw: GatewayWorld, provider: str) -> None:
    _, token = await live_token(gw)
    path, auth, key_name = CALLS[provider]
    answer = await gw.client.post(path, content=BODY, headers={
        **auth(token), "content-type": "application/json", "anthropic-version": "2023-06-01",
        "anthropic-beta": "tools-2024", "x-stainless-lang": "js", "user-agent": "claude-cli/2",
        "cookie": "porter_session=stolen", "x-forwarded-for": "10.0.0.1",
        "openai-organization": "org-someone-else", "x-unlisted": "dropped",
        **({"x-api-key": token} if provider != "anthropic" else {}),
    })
    assert answer.status_code == 200, answer.text
    [seen] = gw.provider.requests
    assert seen.method == "POST" and seen.path == path.removeprefix(f"/llm/{provider}")
    assert seen.body == BODY  # byte for byte, unknown fields and all
    expected = f"Bearer {OPERATOR_KEYS[key_name]}" if provider == "openai" \
        else OPERATOR_KEYS[key_name]
    header = {"anthropic": "x-api-key", "openai": "authorization",
              "gemini": "x-goog-api-key"}[provider]
    assert seen.headers[header] == expected
    assert token not in json.dumps([seen.headers, seen.query, seen.body.decode()])
    assert {"cookie", "x-forwarded-for", "openai-organization", "x-unlisted"}.isdisjoint(
        seen.headers)
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert seen.headers["anthropic-beta"] == "tools-2024"
    assert seen.headers["x-stainless-lang"] == "js"
    assert seen.headers["user-agent"] == "claude-cli/2"
    assert seen.headers["accept-encoding"] == "identity"
    other_keys = [v for k, v in OPERATOR_KEYS.items() if k != key_name]
    assert not [k for k in other_keys if k in json.dumps(seen.headers)]


async def test_gemini_takes_the_token_from_the_query_and_never_forwards_it(
        gw: GatewayWorld) -> None:
    _, token = await live_token(gw)
    path = "/llm/gemini/v1beta/models/gemini-2.5-pro:streamGenerateContent"
    answer = await gw.client.post(f"{path}?alt=sse&key={token}", json={"contents": []})
    assert answer.status_code == 200, answer.text
    [seen] = gw.provider.requests
    assert seen.query == "alt=sse"
    assert seen.headers["x-goog-api-key"] == OPERATOR_KEYS["GEMINI_API_KEY"]
    assert answer.text.startswith("data: ")


async def test_a_task_uses_its_requesters_key_and_another_the_operators(
        gw: GatewayWorld) -> None:
    alice = await signed_in(gw.world, "alice")
    await saved(alice, ANTHROPIC_API_KEY=ALICE_KEY)
    _, alices = await live_token(gw, user="alice", number=1)
    _, bobs = await live_token(gw, user="bob", number=2)  # bob saved nothing
    for token in (alices, bobs):
        answer = await gw.client.post(ANTHROPIC, headers={"x-api-key": token}, json={})
        assert answer.status_code == 200, answer.text
    assert [r.headers["x-api-key"] for r in gw.provider.requests] == [
        ALICE_KEY, OPERATOR_KEYS["ANTHROPIC_API_KEY"]]
    await alice.client.aclose()


async def test_a_run_without_a_key_for_that_provider_gets_403_and_nothing_is_sent(
        tmp_path: Path, pem: str) -> None:
    env = {"PORTER_AGENT_TESTER_KEYS": "ANTHROPIC_API_KEY",
           "PORTER_SECRET_OPENAI_API_KEY": ""}
    async with gateway_world(tmp_path, pem, env=env) as gw:
        _, token = await live_token(gw)
        answer = await gw.client.post("/llm/openai/v1/chat/completions", json={},
                                      headers={"authorization": f"Bearer {token}"})
        assert answer.status_code == 403
        assert "no openai API key" in error_of("openai", answer)
        assert gw.provider.requests == []


# -- refusals (acceptance 3): nothing is forwarded --------------------------------------------


@pytest.mark.parametrize("provider", list(CALLS))
async def test_no_token_or_a_wrong_one_is_401_in_the_providers_shape(
        gw: GatewayWorld, provider: str) -> None:
    task_id, caller = await gw.world.started()
    other_id, other = await gw.world.started(number=2)
    path, auth, _ = CALLS[provider]
    mine, theirs = gw.token(caller.run_id), gw.token(other.run_id)
    forged = mine.replace(caller.run_id, other.run_id)  # another run's id on this run's MAC
    foreign = gateway_token(KeyRing.generate().derive(GATEWAY_SUBKEY), caller.run_id)
    wrong: list[dict[str, str]] = [
        {}, {"authorization": "Bearer"} if provider == "openai" else auth(""), auth("plt_"),
        auth(forged), auth(foreign), auth(mine + "x"),
        auth(caller.token),  # the machine's callback token is not a gateway token
        auth(theirs[:-2] + mine[-2:]),
    ]
    if provider == "openai":
        wrong.append({"authorization": mine})  # no Bearer scheme
    for headers in wrong:
        answer = await gw.client.post(path, headers=headers, json={})
        assert answer.status_code == 401, (headers, answer.text)
        assert "run token" in error_of(provider, answer)
    assert gw.provider.requests == []
    # ...and a gateway token opens none of the machine's callbacks.
    spec = await gw.client.get(f"/api/runs/{caller.run_id}/spec",
                               headers={"Authorization": f"Bearer {mine}"})
    assert spec.status_code == 401
    assert (await gw.world.task(task_id)).state.value == "running"
    assert (await gw.world.task(other_id)).state.value == "running"


async def test_the_token_stops_working_the_moment_its_run_completes(gw: GatewayWorld) -> None:
    _, caller = await gw.world.started()
    token = gw.token(caller.run_id)
    assert (await gw.client.post(ANTHROPIC, headers={"x-api-key": token},
                                 json={})).status_code == 200
    done = await caller.complete({"status": "failed", "error": {"message": "gave up"}})
    assert done.status_code == 200, done.text
    answer = await gw.client.post(ANTHROPIC, headers={"x-api-key": token}, json={})
    assert answer.status_code == 401
    assert len(gw.provider.requests) == 1


async def test_the_token_stops_working_once_the_run_is_cancelled(gw: GatewayWorld) -> None:
    task_id, token = await live_token(gw)
    cancelled = await gw.world.client.post(f"/api/tasks/{task_id}/cancel", headers=ADMIN)
    assert cancelled.status_code == 200, cancelled.text
    # Before the machine has even heard of it: the cancel alone closes the gateway.
    answer = await gw.client.post(ANTHROPIC, headers={"x-api-key": token}, json={})
    assert answer.status_code == 401
    assert gw.provider.requests == []


async def test_the_token_stops_working_when_the_task_times_out(gw: GatewayWorld) -> None:
    task_id, token = await live_token(gw)
    gw.world.clock.now += gw.world.settings.task_timeout + 1
    await gw.world.runtime.watchdog.tick()
    assert (await gw.world.task(task_id)).state.value == "timed_out"
    answer = await gw.client.post(ANTHROPIC, headers={"x-api-key": token}, json={})
    assert answer.status_code == 401
    assert gw.provider.requests == []


BAD_PATHS = [
    b"/llm/anthropic/v1/complete", b"/llm/anthropic/v1/messages/batches",
    b"/llm/anthropic/v1/files", b"/llm/anthropic/", b"/llm/anthropic/v2/messages",
    b"/llm/openai/v1/embeddings", b"/llm/openai/v1/files", b"/llm/openai/v1/chat/completions/x",
    b"/llm/openai/v1/messages", b"/llm/gemini/v1beta/models/gemini-2.5-pro:deleteModel",
    b"/llm/gemini/v1beta/tunedModels", b"/llm/gemini/v1beta/models/a/b:generateContent",
    # traversal, encoding and other hosts, on the wire as written
    b"/llm/anthropic/v1/../../../api/tasks", b"/llm/anthropic/v1/messages/../../v1/files",
    b"/llm/anthropic/./v1/messages", b"/llm/anthropic/v1%2Fmessages",
    b"/llm/anthropic/v1/messages%2F..%2F..%2Fadmin", b"/llm/anthropic/v1/%6dessages",
    b"/llm/openai//v1/chat/completions", b"/llm/openai/v1//chat/completions",
    b"/llm/openai/http://evil.example/v1/chat/completions",
    b"/llm/openai/@evil.example/v1/chat/completions",
    b"/llm/openai/v1/responses/..", b"/llm/openai/v1/responses/%2e%2e/%2e%2e/files",
    b"/llm/gemini/v1beta/models/..:generateContent/../../../../v1/files",
    b"/llm/anthropic/v1/messages\\..\\files",
]


async def test_a_path_outside_the_providers_api_is_404_and_nothing_is_sent(
        gw: GatewayWorld) -> None:
    _, token = await live_token(gw)
    auth = (f"x-api-key: {token}\r\nauthorization: Bearer {token}\r\n"
            f"x-goog-api-key: {token}\r\n").encode()
    for path in BAD_PATHS:
        status, body = await gw.raw(b"POST " + path + b" HTTP/1.1\r\nhost: porter\r\n" + auth
                                    + b"content-length: 2\r\nconnection: close\r\n\r\n{}")
        assert status == 404, (path, body)
    # Absolute-form targets name the host in the request line; the gateway has its own.
    for target in (b"http://evil.example/llm/anthropic/v1/files",
                   b"http://evil.example/v1/messages"):
        status, _ = await gw.raw(b"GET " + target + b" HTTP/1.1\r\nhost: evil.example\r\n"
                                 + auth + b"connection: close\r\n\r\n")
        assert status == 404
    status, body = await gw.raw(b"GET /llm/nope/v1/messages HTTP/1.1\r\nhost: p\r\n"
                                b"connection: close\r\n\r\n")
    assert status == 404 and json.loads(body) == {"error": "no such LLM provider"}
    assert gw.provider.requests == []
    answer = await gw.client.put(ANTHROPIC, headers={"x-api-key": token}, json={})
    assert answer.status_code == 405 and error_of("anthropic", answer)
    assert gw.provider.requests == []


async def test_probes_are_answered_here(gw: GatewayWorld) -> None:
    for method in ("HEAD", "GET"):
        for path in ("/llm/anthropic", "/llm/anthropic/", "/llm/openai/", "/llm/gemini"):
            assert (await gw.client.request(method, path)).status_code == 200, (method, path)
    assert (await gw.client.head("/llm/nope/")).status_code == 404
    assert gw.provider.requests == []


async def test_a_body_over_the_bound_is_413_before_it_is_read(gw: GatewayWorld) -> None:
    _, token = await live_token(gw)
    status, body = await gw.raw(
        b"POST /llm/anthropic/v1/messages HTTP/1.1\r\nhost: p\r\nx-api-key: " + token.encode()
        + b"\r\ncontent-length: 40000000\r\n\r\n")
    assert status == 413 and json.loads(body)["error"]["type"] == "request_too_large"
    assert gw.provider.requests == []


async def test_a_run_over_budget_gets_402_and_nothing_is_sent(
        gw: GatewayWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(*args: object) -> None:
        raise BudgetExceeded("this run has spent its $5.00 budget")

    monkeypatch.setattr(Metering, "admit", refuse)
    _, token = await live_token(gw)
    answer = await gw.client.post("/llm/openai/v1/responses", json={},
                                  headers={"authorization": f"Bearer {token}"})
    assert answer.status_code == 402
    assert error_of("openai", answer) == "this run has spent its $5.00 budget"
    assert gw.provider.requests == []


# -- answers ----------------------------------------------------------------------------------


async def test_a_stream_reaches_the_agent_while_the_provider_is_still_sending(
        gw: GatewayWorld) -> None:
    """Acceptance 2: the first events are forwarded before the upstream has finished."""
    _, token = await live_token(gw)
    events = anthropic_events([Text("Fixed the typo."), Tool("Write", {"file_path": "a.txt",
                                                                        "content": "hi\n"})])
    reply = Reply.sse(events, hold_after=2, headers={"request-id": "req_123",
                                                      "set-cookie": "a=b"})
    gw.provider.push("anthropic", reply)
    async with gw.client.stream("POST", ANTHROPIC, headers={"x-api-key": token},
                                json={"stream": True}) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "text/event-stream"
        assert answer.headers["request-id"] == "req_123"
        assert "set-cookie" not in answer.headers
        received = b""
        chunks = answer.aiter_raw()
        while received.count(b"\n\n") < 2:
            received += await anext(chunks)
        assert received == b"".join(events[:2])
        assert reply.gate.reached.is_set() and gw.provider.completed == 0  # still held
        reply.gate.release()
        async for chunk in chunks:
            received += chunk
    assert received == b"".join(events)
    assert gw.provider.completed == 1


async def test_an_agent_that_goes_away_closes_the_upstream_stream(gw: GatewayWorld) -> None:
    _, token = await live_token(gw)
    reply = Reply.sse(responses_events([Text("a long answer")]), hold_after=1)
    gw.provider.push("responses", reply)
    async with gw.client.stream("POST", "/llm/openai/v1/responses", json={"stream": True},
                                headers={"authorization": f"Bearer {token}"}) as answer:
        await anext(answer.aiter_raw())
    await until(reply.gate.abandoned.is_set, "the provider to see its stream closed")
    assert gw.provider.abandoned == 1


async def test_a_slow_agent_slows_the_provider_down_instead_of_filling_memory(
        gw: GatewayWorld) -> None:
    """Back-pressure: 32 MiB of events, read slowly; the provider is held back meanwhile."""
    _, token = await live_token(gw)
    event = b"data: " + b"x" * (256 * 1024 - 8) + b"\n\n"
    reply = Reply.sse([event] * 128)
    gw.provider.push("anthropic", reply)
    async with gw.client.stream("POST", ANTHROPIC, headers={"x-api-key": token},
                                json={"stream": True}) as answer:
        chunks = answer.aiter_raw()
        received = len(await anext(chunks))
        await until(lambda: reply.sent > 8, "the provider to start sending")
        await asyncio.sleep(0.5)
        # Socket buffers on both hops and the gateway's bounded backlog, not the answer.
        assert reply.sent < 64, reply.sent
        async for chunk in chunks:
            received += len(chunk)
    assert received == 128 * len(event) and reply.sent == 128


async def test_errors_and_their_headers_pass_through(gw: GatewayWorld) -> None:
    _, token = await live_token(gw)
    gw.provider.push("chat", Reply.error("chat", 429, "slow down", retry_after=7))
    answer = await gw.client.post("/llm/openai/v1/chat/completions", json={},
                                  headers={"authorization": f"Bearer {token}"})
    assert answer.status_code == 429 and answer.headers["retry-after"] == "7"
    assert answer.json()["error"]["message"] == "slow down"


@pytest.mark.parametrize("provider", CALLS)
async def test_an_error_quoting_the_real_key_reaches_the_agent_without_it(
        gw: GatewayWorld, provider: str) -> None:
    _, token = await live_token(gw)
    path, auth, key_name = CALLS[provider]
    dialect = {"anthropic": "anthropic", "openai": "responses", "gemini": "gemini"}[provider]
    header = {"anthropic": "x-api-key", "openai": "authorization",
              "gemini": "x-goog-api-key"}[provider]

    def refuse(request: Any) -> Reply:  # as providers do: the refused credential, quoted
        return Reply.error(dialect, 401, f"Incorrect API key provided: "
                                         f"{request.headers[header]}")

    gw.provider.push(dialect, refuse)
    answer = await gw.client.post(path, content=BODY, headers={
        **auth(token), "content-type": "application/json"})
    assert answer.status_code == 401
    key = OPERATOR_KEYS[key_name]
    assert key in gw.provider.requests[0].headers[header]  # the provider did quote it
    assert key not in answer.text
    assert error_of(provider, answer).startswith("Incorrect API key provided: ")
    assert "[REDACTED]" in error_of(provider, answer)


async def test_a_compressing_upstream_reaches_the_agent_decoded(gw: GatewayWorld) -> None:
    _, token = await live_token(gw)
    events = gemini_events([Text("one two three four")])
    gw.provider.push("gemini", Reply.json({"ok": "whole"}, gzip=True),
                     Reply.sse(events, gzip=True))
    base = "/llm/gemini/v1beta/models/gemini-2.5-pro"
    whole = await gw.client.post(f"{base}:generateContent", json={},
                                 headers={"x-goog-api-key": token, "accept-encoding": "gzip"})
    assert whole.json() == {"ok": "whole"} and "content-encoding" not in whole.headers
    async with gw.client.stream("POST", f"{base}:streamGenerateContent?alt=sse", json={},
                                headers={"x-goog-api-key": token}) as streamed:
        raw = b"".join([chunk async for chunk in streamed.aiter_raw()])
    assert raw == b"".join(events) and "content-encoding" not in streamed.headers
    # The fake did compress: asked directly, it answers gzip whatever the client wanted.
    gw.provider.push("gemini", Reply.json({"ok": "whole"}, gzip=True))
    async with httpx.AsyncClient() as direct:
        upstream = gw.world.settings.llm_gemini_url
        async with direct.stream("POST", f"{upstream}/v1beta/models/m:generateContent",
                                 headers={"accept-encoding": "identity"}) as answer:
            assert answer.headers["content-encoding"] == "gzip"
            raw = b"".join([chunk async for chunk in answer.aiter_raw()])
            assert gzip.decompress(raw) == b'{"ok": "whole"}'


async def test_a_stream_cut_upstream_is_cut_for_the_agent(gw: GatewayWorld) -> None:
    _, token = await live_token(gw)
    gw.provider.push("anthropic", Reply.sse(anthropic_events([Text("abc")]), drop_after=2))
    with pytest.raises(httpx.RemoteProtocolError):
        async with gw.client.stream("POST", ANTHROPIC, headers={"x-api-key": token},
                                    json={"stream": True}) as answer:
            async for _ in answer.aiter_raw():
                pass


async def test_an_unreachable_provider_is_502_in_its_shape(tmp_path: Path, pem: str) -> None:
    with FakeProvider().serve() as closed:
        pass  # bound, served, stopped: nothing listens there now
    async with gateway_world(tmp_path, pem, env={"PORTER_LLM_OPENAI_URL": closed}) as gw:
        _, token = await live_token(gw)
        answer = await gw.client.post("/llm/openai/v1/responses", json={},
                                      headers={"authorization": f"Bearer {token}"})
        assert answer.status_code == 502
        assert "could not reach openai" in error_of("openai", answer)


async def test_models_and_token_counts_are_forwarded(gw: GatewayWorld) -> None:
    _, token = await live_token(gw)
    for method, path, auth in (
            ("GET", "/llm/anthropic/v1/models", {"x-api-key": token}),
            ("GET", "/llm/anthropic/v1/models/claude-sonnet-4-5", {"x-api-key": token}),
            ("POST", "/llm/anthropic/v1/messages/count_tokens", {"x-api-key": token}),
            ("GET", "/llm/openai/v1/models", {"authorization": f"Bearer {token}"}),
            ("GET", "/llm/gemini/v1/models", {"x-goog-api-key": token}),
            ("POST", "/llm/gemini/v1beta/models/gemini-2.5-flash:countTokens",
             {"x-goog-api-key": token})):
        answer = await gw.client.request(method, path, headers=auth,
                                         content=b"{}" if method == "POST" else None)
        assert answer.status_code == 200, (path, answer.text)
    assert len(gw.provider.requests) == 6


async def test_the_connection_pool_opens_and_closes_with_the_app(
        tmp_path: Path, pem: str, monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[Gateway] = []
    aclose = Gateway.aclose

    async def closing(self: Gateway) -> None:
        closed.append(self)
        await aclose(self)

    monkeypatch.setattr(Gateway, "aclose", closing)
    async with gateway_world(tmp_path, pem) as gw:
        gateway = gw.world.client._transport.app.state.gateway  # type: ignore[attr-defined]
        _, token = await live_token(gw)
        assert (await gw.client.post(ANTHROPIC, headers={"x-api-key": token},
                                     json={})).status_code == 200
        assert closed == []
    assert closed == [gateway]
    assert HTTP2  # h2 is installed (httpx[http2]): the providers' HTTPS answers come over HTTP/2
