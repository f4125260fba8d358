"""Failed calls to real HTTP servers, logged with their tracebacks, show no secret; nor does a
value once the vault has opened it. A gateway call's lines name its run and task."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import httpx
from githubkit import AppInstallationAuthStrategy, GitHub
from githubkit.exception import RequestFailed
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from porter.crypto import KeyRing
from porter.store import Store
from porter.vault import Vault
from tests.fakes.github import FakeGitHub
from tests.fakes.llm_dialects import Text, anthropic_events
from tests.fakes.llm_provider import Reply
from tests.gateway_helpers import gateway_world
from tests.loopback import served
from tests.unit.test_logs import json_lines, logging_to

REPO = "octo/hello"
TOKEN = "ghs_" + "T0kenInABody" * 4
KEY_IN_URL = "no-shape-key-5e2d8a1c"  # nobody configured it: only its place in the URL says
USER_KEY = "user-key-without-shape-9b3f"


async def test_a_github_error_body_and_a_url_key_are_redacted_from_tracebacks(
        tmp_path: Path, pem: str) -> None:
    fake = FakeGitHub(tmp_path / "github", private_key_pem=pem)
    fake.add_installation(42, account="octo")
    fake.add_repo(REPO, files={"README.md": b"hi\n"}, installation_id=42)
    fake.fail("GET", rf"/repos/{REPO}/issues/1", 422,
              body={"message": f"Validation Failed: token {TOKEN} is not allowed here"})

    async def forbidden(request: Request) -> JSONResponse:
        return JSONResponse({"error": {"message": "API key not valid"}}, 403)

    provider = Starlette(routes=[Route("/{path:path}", forbidden, methods=["GET"])])
    out = io.StringIO()
    log = logging.getLogger("porter.jobs")
    with fake.serve(), logging_to(out, "json"):
        github = GitHub(AppInstallationAuthStrategy(fake.app_id, pem, 42),
                        base_url=fake.api_url + "/", auto_retry=False)
        try:
            await github.rest.issues.async_get("octo", "hello", 1)
        except RequestFailed as exc:
            log.exception("GitHub refused: %s", exc.response.text)
        async with served(provider) as url, httpx.AsyncClient() as client:
            response = await client.get(f"{url}/v1beta/models?alt=sse&key={KEY_IN_URL}")
            try:
                response.raise_for_status()
            except httpx.HTTPStatusError:
                log.exception("the model call failed")
    text = out.getvalue()
    assert TOKEN not in text and KEY_IN_URL not in text
    # Every logger's lines are there (httpx's and aiosqlite's debug lines too): only ours are read.
    github_line, model_line = ours(out)
    assert str(github_line["message"]).startswith("GitHub refused: {")
    assert "token [REDACTED] is not allowed" in str(github_line["message"])
    assert "RequestFailed" in str(github_line["exception"])
    assert model_line["message"] == "the model call failed"
    assert "?alt=sse&key=[REDACTED]" in str(model_line["exception"])


async def test_a_key_the_vault_opens_is_redacted_from_then_on(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "porter.db")
    try:
        vault = Vault(KeyRing.generate(), store)
        await vault.put(7, {"ANTHROPIC_API_KEY": USER_KEY})
        out = io.StringIO()
        with logging_to(out, "json"):
            assert (await vault.open(7))["ANTHROPIC_API_KEY"] == USER_KEY
            logging.getLogger("porter.gateway").warning("upstream refused key %s", USER_KEY)
    finally:
        await store.close()
    [line] = ours(out)
    assert line["message"] == "upstream refused key [REDACTED]"


async def test_a_gateway_answer_cut_upstream_is_logged_with_its_run_and_task(
        tmp_path: Path, pem: str) -> None:
    out = io.StringIO()
    with logging_to(out, "json"):
        async with gateway_world(tmp_path, pem) as gw:
            task_id, caller = await gw.world.started()
            token = gw.token(caller.run_id)
            gw.provider.push("anthropic",
                             Reply.sse(anthropic_events([Text("abc")]), drop_after=2))
            with contextlib.suppress(httpx.RemoteProtocolError):
                async with gw.client.stream("POST", "/llm/anthropic/v1/messages",
                                            headers={"x-api-key": token},
                                            json={"stream": True}) as answer:
                    async for _ in answer.aiter_raw():
                        pass
    [cut] = [line for line in ours(out) if "broke off" in str(line["message"])]
    assert cut["run_id"] == caller.run_id and cut["task_id"] == task_id
    assert token not in out.getvalue()


def ours(out: io.StringIO) -> list[dict[str, object]]:
    return [line for line in json_lines(out) if str(line["logger"]).startswith("porter.")]
