"""Porter with its LLM gateway pointed at a fake provider, served on a real socket.

    async with gateway_world(tmp_path, pem) as gw:
        task_id, caller = await gw.world.started()
        token = gw.token(caller.run_id)
        answer = await gw.client.post("/llm/anthropic/v1/messages", headers={"x-api-key": token},
                                      json={...})
        gw.provider.requests[-1].headers["x-api-key"]  # the operator's key

The world is tests/fakes/world.py's (Porter whole, in-process, background off); its app is also
served by uvicorn on loopback inside the test's event loop, because streaming, back-pressure and
disconnects only exist on a real connection (httpx's ASGI transport buffers whole answers). The
operator has a key for each provider, and the world's agent ("tester") takes all three.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from porter.tokens import GATEWAY_SUBKEY, gateway_token
from tests.fakes.llm_provider import FakeProvider
from tests.fakes.world import World, open_world
from tests.loopback import served

OPERATOR_KEYS = {"ANTHROPIC_API_KEY": "sk-ant-operator-Hq4Tz8Lw2Vn6",
                 "OPENAI_API_KEY": "sk-oai-operator-Pm3Xr7Ks1Bd5",
                 "GEMINI_API_KEY": "gm-operator-Yc9Fj2Nu6Ew4"}
ALL_KEYS = {"PORTER_AGENT_TESTER_KEYS": ",".join(OPERATOR_KEYS),
            **{f"PORTER_SECRET_{name}": value for name, value in OPERATOR_KEYS.items()}}


@dataclass
class GatewayWorld:
    world: World
    provider: FakeProvider
    url: str  # Porter on loopback
    client: httpx.AsyncClient  # at `url`

    def token(self, run_id: str) -> str:
        return gateway_token(self.world.runtime.keyring.derive(GATEWAY_SUBKEY), run_id)

    async def raw(self, head: bytes) -> tuple[int, bytes]:
        """One request sent byte for byte (no client normalizes its path): status and body."""
        host, port = self.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(head)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()
        status = int(answer[9:12])
        return status, answer.partition(b"\r\n\r\n")[2]


@contextlib.asynccontextmanager
async def gateway_world(tmp_path: Path, pem: str, env: Mapping[str, str] | None = None,
                        *, provider: FakeProvider | None = None,
                        database: Path | str | None = None) -> AsyncIterator[GatewayWorld]:
    fake = provider or FakeProvider()
    with fake.serve() as upstream:
        settings = {"PORTER_LLM_ANTHROPIC_URL": upstream, "PORTER_LLM_OPENAI_URL": upstream,
                    "PORTER_LLM_GEMINI_URL": upstream, **ALL_KEYS, **(env or {})}
        async with open_world(tmp_path, pem, env=settings, database=database) as world:
            app = world.client._transport.app  # type: ignore[attr-defined]
            async with served(app) as url, httpx.AsyncClient(base_url=url,
                                                              timeout=20) as client:
                yield GatewayWorld(world, fake, url, client)
