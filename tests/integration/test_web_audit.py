"""The audit log: admins read it, by page or API; nobody else does."""

from __future__ import annotations

from pathlib import Path

from tests.fakes.world import ADMIN_TOKEN, open_world
from tests.web_helpers import porter_client, signed_in

HTML = {"Accept": "text/html"}


async def test_admins_read_the_audit_log_and_others_are_refused(
        tmp_path: Path, store_database: Path | str) -> None:
    async with open_world(tmp_path, env={"PORTER_ADMIN_LOGINS": "Boss"},
                          database=store_database) as world:
        alice = await signed_in(world, "alice")
        boss = await signed_in(world, "boss")
        await alice.client.post("/logout", data={"csrf": alice.csrf})

        page = await boss.client.get("/audit", headers=HTML)
        assert page.status_code == 200
        rows = page.text.split("<tbody>", 1)[1]
        assert rows.index("sign-out") < rows.index("sign-in")  # newest first
        assert rows.count("sign-in") == 2 and "alice" in rows and "boss" in rows

        answer = await boss.client.get("/api/audit")
        entries = answer.json()["entries"]
        assert [(e["actor"], e["action"], e["source"]) for e in entries] == [
            ("alice", "sign-out", "page"), ("boss", "sign-in", "page"),
            ("alice", "sign-in", "page")]
        assert all(e["at"] > 0 for e in entries)

        async with porter_client(world) as token_holder:
            by_token = await token_holder.get(
                "/api/audit?action=sign-in&limit=1",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            body = by_token.json()
            assert [e["actor"] for e in body["entries"]] == ["boss"]
            older = await token_holder.get(
                f"/api/audit?action=sign-in&limit=1&cursor={body['next_cursor']}",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            assert [e["actor"] for e in older.json()["entries"]] == ["alice"]
            assert (await token_holder.get("/api/audit")).status_code == 401

        carol = await signed_in(world, "carol")
        assert (await carol.client.get("/audit", headers=HTML)).status_code == 403
        assert (await carol.client.get("/api/audit")).status_code == 403
        for browser in (alice, boss, carol):
            await browser.client.aclose()
