"""The fake Fly Machines API's apps resource and its accounts: tokens that each reach their own
organizations and apps, app names unique across Fly, machines kept in the app that made them."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.fakes.fly import FakeFly

APP = "porter-runs"
ALICE = "fm2_alice,fo1_alice"  # a macaroon bundle: sent as FlyV1
BOB = "plainBobToken123"  # a plain token: sent as Bearer
SLEEP = [sys.executable, "-c", "import time; time.sleep(30)"]
MACHINE = {"region": "ams", "config": {"image": "registry.fly.io/agent:1", "auto_destroy": False}}


@pytest.fixture
async def fly() -> AsyncIterator[FakeFly]:
    fake = FakeFly(token=ALICE, app=APP, command=SLEEP)
    fake.add_token(BOB, orgs=["bob-co"])
    async with fake.serve():
        yield fake


def client(fly: FakeFly, authorization: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": authorization} if authorization else {}
    return httpx.AsyncClient(base_url=fly.url, headers=headers)


def alice(fly: FakeFly) -> httpx.AsyncClient:
    return client(fly, f"FlyV1 {ALICE}")


def bob(fly: FakeFly) -> httpx.AsyncClient:
    return client(fly, f"Bearer {BOB}")


async def test_get_app_and_its_refusals(fly: FakeFly) -> None:
    async with alice(fly) as http:
        found = await http.get(f"/v1/apps/{APP}")
        missing = await http.get("/v1/apps/no-such-app")
    assert found.status_code == 200
    body = found.json()
    assert set(body) == {"id", "name", "status", "organization"}
    assert (body["name"], body["status"]) == (APP, "deployed")
    assert body["organization"] == {"name": "personal", "slug": "personal"}
    assert body["id"] == fly.apps[APP].id
    assert (missing.status_code, missing.json()) == (404, {"error": "app not found"})
    for authorization in (None, f"Bearer {ALICE}", "Bearer wrong", f"FlyV1 {BOB}"):
        async with client(fly, authorization) as http:
            refused = await http.get(f"/v1/apps/{APP}")
        assert (refused.status_code, refused.json()) == (401, {"error": "unauthorized"})
    assert [r.status for r in fly.requests_to("GET", r"^/v1/apps/")] == [200, 404] + [401] * 4


async def test_create_and_list_apps(fly: FakeFly) -> None:
    async with alice(fly) as http:
        made = await http.post(
            "/v1/apps",
            json={"app_name": "alice-web", "org_slug": "personal", "network": "web-net"},
        )
        assert made.status_code == 201
        assert set(made.json()) == {"id", "created_at"}
        assert isinstance(made.json()["created_at"], int) and made.json()["created_at"] > 1e12
        fresh = (await http.get("/v1/apps/alice-web")).json()
        assert fresh["id"] == made.json()["id"] and fresh["status"] == "pending"

        listed = await http.get("/v1/apps", params={"org_slug": "personal"})
        assert listed.status_code == 200
        assert listed.json()["total_apps"] == 2
        by_name = {a["name"]: a for a in listed.json()["apps"]}
        assert by_name["alice-web"] == {
            "id": made.json()["id"],
            "name": "alice-web",
            "machine_count": 0,
            "network": "web-net",
        }

        taken = await http.post("/v1/apps", json={"app_name": APP, "org_slug": "personal"})
        assert taken.status_code == 422 and taken.json()["status"] == "name_taken"
        assert "taken" in taken.json()["error"]
        nowhere = await http.post("/v1/apps", json={"app_name": "x1", "org_slug": "nope"})
        assert (nowhere.status_code, nowhere.json()) == (404, {"error": "organization not found"})
        for bad in (
            {"org_slug": "personal"},
            {"app_name": "x2"},
            {"app_name": "Not_Valid", "org_slug": "personal"},
        ):
            assert (await http.post("/v1/apps", json=bad)).status_code == 422
        assert (await http.get("/v1/apps")).status_code == 400
    assert sorted(fly.apps) == ["alice-web", APP]


async def test_two_accounts_see_only_their_own_apps_and_machines(fly: FakeFly) -> None:
    async with bob(fly) as b, alice(fly) as a:
        made = await b.post("/v1/apps", json={"app_name": "bob-runs", "org_slug": "bob-co"})
        assert made.status_code == 201
        # Names are unique across all of Fly, whoever asks.
        clash = await a.post("/v1/apps", json={"app_name": "bob-runs", "org_slug": "personal"})
        assert clash.status_code == 422 and clash.json()["status"] == "name_taken"
        # Neither reaches the other's organization or apps.
        assert (
            await a.post("/v1/apps", json={"app_name": "sneaky", "org_slug": "bob-co"})
        ).status_code == 404
        assert (await a.get("/v1/apps", params={"org_slug": "bob-co"})).status_code == 404
        assert (await a.get("/v1/apps/bob-runs")).json() == {"error": "app not found"}
        assert (await b.get(f"/v1/apps/{APP}")).status_code == 404
        assert (await b.get(f"/v1/apps/{APP}/machines")).status_code == 404

        bobs = await b.post("/v1/apps/bob-runs/machines", json={**MACHINE, "name": "same"})
        alices = await a.post(f"/v1/apps/{APP}/machines", json={**MACHINE, "name": "same"})
        assert (bobs.status_code, alices.status_code) == (200, 200)  # names are per app
        bob_id, alice_id = bobs.json()["id"], alices.json()["id"]
        assert [m.id for m in fly.machines_in("bob-runs")] == [bob_id]
        assert [m.id for m in fly.machines_in(APP)] == [alice_id]
        assert [m["id"] for m in (await a.get(f"/v1/apps/{APP}/machines")).json()] == [alice_id]
        assert [m["id"] for m in (await b.get("/v1/apps/bob-runs/machines")).json()] == [bob_id]
        # A machine id is found only under its own app.
        assert (await a.get(f"/v1/apps/bob-runs/machines/{bob_id}")).status_code == 404
        assert (await b.get(f"/v1/apps/bob-runs/machines/{alice_id}")).json() == {
            "error": "machine not found"
        }
        assert (await b.get("/v1/apps/bob-runs")).json()["status"] == "deployed"
        listed = await b.get("/v1/apps", params={"org_slug": "bob-co"})
        assert listed.json()["total_apps"] == 1
        assert listed.json()["apps"][0]["machine_count"] == 1
        for who, app, machine in ((a, APP, alice_id), (b, "bob-runs", bob_id)):
            gone = await who.delete(f"/v1/apps/{app}/machines/{machine}", params={"force": "true"})
            assert gone.status_code == 200
        listed = await b.get("/v1/apps", params={"org_slug": "bob-co"})
        assert listed.json()["apps"][0]["machine_count"] == 0


async def test_an_app_scoped_token_reaches_that_app_only(fly: FakeFly) -> None:
    fly.add_app("elsewhere", org="personal")
    fly.add_token("deployToken1", orgs=[], apps=[APP])
    async with client(fly, "Bearer deployToken1") as http:
        assert (await http.get(f"/v1/apps/{APP}")).status_code == 200
        assert (await http.get(f"/v1/apps/{APP}/machines")).json() == []
        assert (await http.get("/v1/apps/elsewhere")).status_code == 404
        assert (await http.get("/v1/apps", params={"org_slug": "personal"})).status_code == 404
        made = await http.post("/v1/apps", json={"app_name": "new-one", "org_slug": "personal"})
        assert made.status_code == 404
    with pytest.raises(ValueError, match="already exists"):
        fly.add_app("elsewhere")


async def test_helpers_register_apps_in_named_orgs() -> None:
    fake = FakeFly(token=ALICE, app=APP)
    fake.add_org("acme", name="Acme Inc")
    fake.add_token("acmeToken", orgs=["acme"], apps=["acme-runs"])
    assert (fake.apps["acme-runs"].org, fake.orgs["acme"].name) == ("acme", "Acme Inc")
    async with fake.serve(), client(fake, "Bearer acmeToken") as http:
        found: dict[str, Any] = (await http.get("/v1/apps/acme-runs")).json()
    assert found["organization"] == {"name": "Acme Inc", "slug": "acme"}
