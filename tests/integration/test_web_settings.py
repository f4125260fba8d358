"""/settings: keys added, replaced and removed; defaults; Fly credentials checked against the
Machines API (the fake Fly, tests/fakes/fly.py) before they are saved; and a saved key never
coming back in a page, an API answer, an error, a log line or the database's bytes."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from porter.keys import FLY_TOKEN
from tests.fakes.fly import FakeFly
from tests.fakes.world import ADMIN, World, open_world
from tests.settings_helpers import (
    ALICE_KEY,
    BOB_KEY,
    HTML,
    database_bytes,
    save,
    saved,
)
from tests.web_helpers import Browser, porter_client, signed_in

FLY_APP = "porter-runs"  # the operator's
ALICE_TOKEN = "fm2_aliceTokenQw8Er4Ty6Ui"
ALICE_APP = "alice-runs"
LABELS = ("Anthropic API key", "OpenAI API key", "Gemini API key", "Fly API token",
          "Fly app name")


@pytest.fixture
async def fly() -> AsyncIterator[FakeFly]:
    fake = FakeFly(token="fm2_operatorToken", app=FLY_APP)
    fake.add_token(ALICE_TOKEN, orgs=["alice-org"], apps=[ALICE_APP])
    async with fake.serve():
        yield fake


@pytest.fixture
async def world(tmp_path: Path, pem: str, fly: FakeFly) -> AsyncIterator[World]:
    async with open_world(tmp_path, pem, env={"PORTER_FLY_API_URL": fly.url}) as opened:
        yield opened


@pytest.fixture
async def alice(world: World) -> AsyncIterator[Browser]:
    browser = await signed_in(world, "alice")
    yield browser
    await browser.client.aclose()


async def page(browser: Browser) -> str:
    answer = await browser.client.get("/settings", headers=HTML)
    assert answer.status_code == 200, answer.text[:500]
    return answer.text


def key_state(html: str, name: str) -> str:
    found = re.search(rf'data-key="{name}">([^<]*)<', html)
    assert found is not None, html
    return found.group(1)


async def audit(world: World, action: str) -> list[tuple[str, str, dict[str, object]]]:
    return [(e.actor, e.target, e.detail) for e in reversed(await world.store.audit_entries())
            if e.action == action]


# -- the page --------------------------------------------------------------------------------


async def test_the_page_has_a_labelled_field_for_each_setting_and_a_save_button(
        alice: Browser) -> None:
    html = await page(alice)
    for label in LABELS:
        found = re.search(rf'<label for="([^"]+)">{label}</label>', html)
        assert found is not None, label
        assert f'id="{found.group(1)}"' in html
    assert re.search(r"<button[^>]*>Save</button>", html)
    assert key_state(html, "ANTHROPIC_API_KEY") == "not set"


async def test_settings_are_a_signed_in_persons(world: World) -> None:
    async with porter_client(world) as anonymous:
        assert (await anonymous.get("/settings", headers=HTML)).status_code == 401
        assert (await anonymous.get("/api/settings")).status_code == 401
        as_admin_token = await anonymous.get("/api/settings", headers=ADMIN)
        assert as_admin_token.status_code == 403


async def test_a_key_is_added_replaced_and_removed_and_shown_only_by_its_last_four(
        world: World, alice: Browser) -> None:
    await saved(alice, ANTHROPIC_API_KEY=ALICE_KEY)
    html = await page(alice)
    assert key_state(html, "ANTHROPIC_API_KEY") == f"set, ends in …{ALICE_KEY[-4:]}"
    assert key_state(html, "OPENAI_API_KEY") == "not set"
    api = (await alice.client.get("/api/settings")).json()
    assert api["keys"]["ANTHROPIC_API_KEY"] == {"set": True, "last4": f"…{ALICE_KEY[-4:]}"}
    assert api["keys"]["GEMINI_API_KEY"] == {"set": False, "last4": None}

    await saved(alice, ANTHROPIC_API_KEY=BOB_KEY)  # replaced
    assert key_state(await page(alice), "ANTHROPIC_API_KEY") == f"set, ends in …{BOB_KEY[-4:]}"
    await saved(alice, OPENAI_API_KEY=ALICE_KEY, ANTHROPIC_API_KEY="")  # empty: kept
    html = await page(alice)
    assert key_state(html, "ANTHROPIC_API_KEY") == f"set, ends in …{BOB_KEY[-4:]}"
    assert key_state(html, "OPENAI_API_KEY") == f"set, ends in …{ALICE_KEY[-4:]}"

    removed = await alice.client.post("/settings/remove", data={
        "csrf": alice.csrf, "name": "ANTHROPIC_API_KEY"}, headers=HTML)
    assert removed.status_code == 303
    assert key_state(await page(alice), "ANTHROPIC_API_KEY") == "not set"

    alice_id = world.fake.user("alice").id
    assert await audit(world, "key.set") == [
        ("alice", "ANTHROPIC_API_KEY", {"name": "ANTHROPIC_API_KEY"}),
        ("alice", "ANTHROPIC_API_KEY", {"name": "ANTHROPIC_API_KEY"}),
        ("alice", "OPENAI_API_KEY", {"name": "OPENAI_API_KEY"})]
    assert await audit(world, "key.remove") == [
        ("alice", "ANTHROPIC_API_KEY", {"name": "ANTHROPIC_API_KEY"})]
    entry = (await world.store.audit_entries(action="key.remove"))[0]
    assert entry.actor_id == alice_id and entry.source == "page" and entry.address


async def test_a_saved_key_never_comes_back_anywhere(
        world: World, alice: Browser, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    answers = [await save(alice, ANTHROPIC_API_KEY=ALICE_KEY),
               await save(alice, GEMINI_API_KEY=BOB_KEY, default_agent="no-such-agent"),
               await save(alice, OPENAI_API_KEY=f"{BOB_KEY} with spaces")]
    assert [a.status_code for a in answers] == [303, 400, 400]
    bodies = [answer.text for answer in answers]
    bodies += [await page(alice), (await alice.client.get("/api/settings")).text,
               (await alice.client.get("/settings")).text,  # JSON-preferring client
               (await alice.client.post("/settings/remove", data={
                   "csrf": alice.csrf, "name": "nonsense"})).text,
               (await world.client.get("/api/audit", headers=ADMIN)).text]
    # The database, its WAL and shared memory, read while Porter has them open.
    raw = database_bytes(world.settings.database)
    for secret in (ALICE_KEY, BOB_KEY):
        assert not [b for b in bodies if secret in b]
        assert secret not in caplog.text
        assert secret.encode() not in raw
    # The rejected ones were not saved at all; the good one was.
    api = (await alice.client.get("/api/settings")).json()
    assert [name for name, state in api["keys"].items() if state["set"]] == [
        "ANTHROPIC_API_KEY"]


async def test_a_form_without_a_valid_csrf_token_is_refused(
        world: World, alice: Browser) -> None:
    for csrf in (None, "", "forged"):
        form = {"ANTHROPIC_API_KEY": ALICE_KEY, "fly_org": "alice-org", "name": "fly",
                "fly_app": ALICE_APP}
        if csrf is not None:
            form["csrf"] = csrf
        for path in ("/settings", "/settings/remove", "/settings/fly/create"):
            answer = await alice.client.post(path, data=form, headers=HTML)
            assert answer.status_code == 403, (path, answer.status_code)
            assert "CSRF" in answer.text and ALICE_KEY not in answer.text
    assert (await alice.client.get("/api/settings")).json()["keys"]["ANTHROPIC_API_KEY"][
        "set"] is False
    assert await world.store.audit_entries(action="key.set") == []


async def test_defaults_are_checked_and_saved(world: World, alice: Browser) -> None:
    refused = await save(alice, default_agent="cluade")
    assert refused.status_code == 400 and "no agent called" in refused.text
    refused = await save(alice, default_model="opus; rm -rf /")
    assert refused.status_code == 400
    await saved(alice, default_agent="codex", default_model="o3")
    html = await page(alice)
    assert '<option value="codex" selected>' in html and 'value="o3"' in html
    assert await audit(world, "settings.update") == [
        ("alice", "defaults", {"default_agent": "codex", "default_model": "o3"})]
    await saved(alice, default_agent="", default_model="")  # back to Porter's
    user = await world.store.get_user(world.fake.user("alice").id)
    assert user is not None and (user.default_agent, user.default_model) == (None, None)


# -- Fly ------------------------------------------------------------------------------------


async def test_fly_credentials_are_saved_once_fly_shows_the_app(
        world: World, alice: Browser, fly: FakeFly) -> None:
    await saved(alice, FLY_API_TOKEN=ALICE_TOKEN, fly_app=ALICE_APP)
    [check] = fly.requests_to("GET", f"^/v1/apps/{ALICE_APP}$")
    assert check.auth_scheme == "FlyV1" and check.status == 200
    html = await page(alice)
    assert key_state(html, FLY_TOKEN) == f"set, ends in …{ALICE_TOKEN[-4:]}"
    assert f'value="{ALICE_APP}"' in html and ALICE_TOKEN not in html
    assert await audit(world, "fly.set") == [
        ("alice", ALICE_APP, {"app": ALICE_APP, "token": "replaced"})]
    assert ALICE_TOKEN.encode() not in database_bytes(world.settings.database)

    # Another app with the token already saved: checked with that token.
    fly.add_app("alice-two", org="alice-org")
    await saved(alice, fly_app="alice-two")
    assert [r.status for r in fly.requests_to("GET", "^/v1/apps/alice-two$")] == [200]
    assert (await audit(world, "fly.set"))[-1] == (
        "alice", "alice-two", {"app": "alice-two", "token": "kept"})

    removed = await alice.client.post("/settings/remove", data={"csrf": alice.csrf,
                                                                "name": "fly"})
    assert removed.status_code == 303
    assert key_state(await page(alice), FLY_TOKEN) == "not set"
    user = await world.store.get_user(world.fake.user("alice").id)
    assert user is not None and user.fly_app is None
    assert await audit(world, "fly.remove") == [("alice", "alice-two", {"app": "alice-two"})]


async def test_a_token_fly_refuses_is_not_saved(world: World, alice: Browser) -> None:
    answer = await save(alice, FLY_API_TOKEN="fm2_notAToken", fly_app=ALICE_APP,
                        ANTHROPIC_API_KEY=ALICE_KEY)
    assert answer.status_code == 400
    assert "Fly refused the token" in answer.text and "fm2_notAToken" not in answer.text
    api = (await alice.client.get("/api/settings")).json()
    assert api["fly"] == {"token": {"set": False, "last4": None}, "app": None}
    assert api["keys"]["ANTHROPIC_API_KEY"]["set"]  # the rest of the form was saved
    assert await world.store.audit_entries(action="fly.set") == []


async def test_a_missing_app_is_offered_and_created_in_the_chosen_organization(
        world: World, alice: Browser, fly: FakeFly) -> None:
    answer = await save(alice, FLY_API_TOKEN=ALICE_TOKEN, fly_app="alice-new")
    assert answer.status_code == 200
    assert "App alice-new does not exist" in answer.text
    assert '<label for="fly_org">Fly organization</label>' in answer.text
    assert ALICE_TOKEN not in answer.text  # the offer carries ciphertext only
    pending = re.search(r'name="pending" value="([^"]+)"', answer.text)
    assert pending is not None
    assert (await alice.client.get("/api/settings")).json()["fly"]["app"] is None

    # Not an organization this token is in: refused, offered again.
    wrong = await alice.client.post("/settings/fly/create", headers=HTML, data={
        "csrf": alice.csrf, "fly_app": "alice-new", "pending": pending.group(1),
        "fly_org": "personal"})
    assert wrong.status_code == 400 and "no organization personal" in wrong.text
    assert "alice-new" not in fly.apps

    created = await alice.client.post("/settings/fly/create", headers=HTML, data={
        "csrf": alice.csrf, "fly_app": "alice-new", "pending": pending.group(1),
        "fly_org": "alice-org"})
    assert created.status_code == 303, created.text[:1000]
    assert fly.apps["alice-new"].org == "alice-org"
    [create] = fly.requests_to("POST", "^/v1/apps$")[-1:]
    assert create.json == {"app_name": "alice-new", "org_slug": "alice-org"}
    api = (await alice.client.get("/api/settings")).json()
    assert api["fly"]["app"] == "alice-new" and api["fly"]["token"]["set"]
    assert [a for _, _, a in await audit(world, "fly.create_app")] == [
        {"app": "alice-new", "org": "alice-org"}]


async def test_the_offers_ciphertext_opens_for_no_other_person_or_app(
        world: World, alice: Browser, fly: FakeFly) -> None:
    answer = await save(alice, FLY_API_TOKEN=ALICE_TOKEN, fly_app="alice-new")
    pending = re.search(r'name="pending" value="([^"]+)"', answer.text)
    assert pending is not None
    bob = await signed_in(world, "bob")
    for who, app in ((bob, "alice-new"), (alice, "alice-other")):
        stolen = await who.client.post("/settings/fly/create", headers=HTML, data={
            "csrf": who.csrf, "fly_app": app, "pending": pending.group(1),
            "fly_org": "alice-org"})
        assert stolen.status_code == 400 and "expired" in stolen.text
    assert fly.requests_to("POST", "^/v1/apps$") == []
    await bob.client.aclose()


async def test_an_app_name_that_is_taken_says_so(world: World, alice: Browser,
                                                 fly: FakeFly) -> None:
    answer = await save(alice, FLY_API_TOKEN=ALICE_TOKEN, fly_app=FLY_APP)  # not hers
    pending = re.search(r'name="pending" value="([^"]+)"', answer.text)
    assert pending is not None
    taken = await alice.client.post("/settings/fly/create", headers=HTML, data={
        "csrf": alice.csrf, "fly_app": FLY_APP, "pending": pending.group(1),
        "fly_org": "alice-org"})
    assert taken.status_code == 400 and "is taken on Fly" in taken.text
