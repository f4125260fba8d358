"""A task's artifacts on its page, in its JSON and downloaded, over a real socket: the stored
bytes exactly, as an attachment no browser runs, to those who see the task and to nobody else.

Porter is served by uvicorn on loopback (tests/loopback.py); people sign in through the fake
GitHub's OAuth flow, and their session cookie then rides on a plain HTTP client to that socket.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from porter.artifacts import MAX_BYTES
from porter.web.viewer import SESSION_COOKIE
from tests.fakes.world import ADMIN, OTHER_REPO, REPO, World, open_world
from tests.loopback import served
from tests.web_helpers import signed_in

HTML = {"Accept": "text/html"}
VERIFICATION = json.dumps({"outcome": "failed", "results": [
    {"phase": "verify", "command": "pytest -q", "exit_code": 1}]}).encode()
# A diff whose text would be a page with a script in it, were it ever rendered as HTML.
HOSTILE = (b"--- a/index.html\n+++ b/index.html\n@@ -1 +1 @@\n-<p>hi</p>\n"
           b"+<script>document.title='owned'</script><img src=x onerror=alert(1)>\n")


@dataclass
class Served:
    world: World
    url: str

    async def person(self, login: str) -> httpx.AsyncClient:
        """`login`, signed in, talking to the socket."""
        browser = await signed_in(self.world, login)
        session = browser.client.cookies.get(SESSION_COOKIE)
        await browser.client.aclose()
        assert session
        return httpx.AsyncClient(base_url=self.url,
                                 headers={"Cookie": f"{SESSION_COOKIE}={session}"})

    def anonymous(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url)

    async def task_with_run(self, body: str, **where: object) -> tuple[int, str]:
        task_id, _machine = await self.world.started(body, **where)
        return task_id, (await self.world.run(task_id)).id


@pytest.fixture
async def porter(tmp_path: Path, pem: str) -> AsyncIterator[Served]:
    async with open_world(tmp_path, pem) as world, served(world.app) as url:
        world.fake.set_permission(REPO, "carol", "read")  # sees octo/hello, not acme/widgets
        world.fake.add_user("mallory")  # reaches no repository
        yield Served(world, url)


def listed(page: str) -> list[dict[str, str]]:
    """The artifact rows of a task page: name, attempt, size and link as a person reads them."""
    rows = re.findall(r'<tr id="artifact-(\d+)">(.*?)</tr>', page, re.S)
    found = []
    for artifact_id, row in rows:
        cells = dict(re.findall(r'<td class="(\w+)">(.*?)</td>', row, re.S))
        href = re.search(r'<a class="download" href="([^"]+)"', row)
        found.append({"id": artifact_id, "name": cells["name"],
                      "attempt": re.sub(r"<[^>]+>|\s+", " ", cells["attempt"]).strip(),
                      "size": re.sub(r"<[^>]+>", "", cells["size"]),
                      "href": href.group(1) if href else ""})
    return found


async def test_the_page_lists_a_tasks_artifacts_and_each_downloads_as_stored(
        porter: Served) -> None:
    store = porter.world.store
    task_id, run_id = await porter.task_with_run("@porter fix the typo")
    log_bytes = b"\xe2\x9c\x93 cloned\n" + b"step\n" * (MAX_BYTES // 5 + 100)  # over the bound
    ids = {
        "log": await store.put_artifact(task_id, run_id, "log", None, log_bytes),
        "verification": await store.put_artifact(task_id, run_id, "verification",
                                                 "application/json", VERIFICATION),
        "changeset": await store.put_artifact(task_id, run_id, "changeset", None, HOSTILE),
    }
    carol = await porter.person("carol")  # a reader of the repository

    page = await carol.get(f"/tasks/{task_id}", headers=HTML)
    assert page.status_code == 200
    rows = listed(page.text)
    assert [r["name"] for r in rows] == ["log", "verification", "changeset"]
    assert all(r["attempt"].startswith("attempt 1") for r in rows)
    sizes = {r["name"]: r["size"] for r in rows}
    assert sizes["log"] == "10.0 MiB (cut to 10.0 MiB)"  # given, then what was kept
    assert sizes["verification"] == f"{len(VERIFICATION)} B"
    assert "cut to" not in sizes["changeset"]
    # The hostile diff's text is not on the page at all, escaped or not.
    assert "owned" not in page.text and "onerror" not in page.text

    expected = {"log": ("text/plain; charset=utf-8", "log"),
                "verification": ("application/json", "json"),
                "changeset": ("text/x-diff; charset=utf-8", "diff")}
    for row in rows:
        name = row["name"]
        assert row["href"] == f"/tasks/{task_id}/artifacts/{ids[name]}"
        stored = await store.artifact(ids[name])
        assert stored is not None
        got = await carol.get(row["href"])
        assert got.status_code == 200
        assert got.content == stored.content
        media, ext = expected[name]
        assert got.headers["content-type"] == media
        assert got.headers["content-disposition"] == \
            f'attachment; filename="task-{task_id}-{name}.{ext}"'
        assert got.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in got.headers["content-security-policy"].split(";")[0]
        etag = got.headers["etag"]
        assert etag == f'"{hashlib.sha256(got.content).hexdigest()}"'
        again = await carol.get(row["href"], headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
    log = await carol.get(f"/tasks/{task_id}/artifacts/{ids['log']}")
    assert len(log.content) <= MAX_BYTES and log.content.startswith(b"[porter: cut to the last")

    # The JSON API describes the same three, with the same links.
    described = (await carol.get(f"/api/tasks/{task_id}")).json()["artifacts"]
    assert [(a["name"], a["url"], a["attempt"], a["truncated"]) for a in described] == [
        (r["name"], r["href"], 1, r["name"] == "log") for r in rows]
    assert described[0]["size"] == len(log_bytes) and described[0]["stored"] == len(log.content)
    await carol.aclose()


async def test_a_task_without_artifacts_says_so(porter: Served) -> None:
    task_id = await porter.world.request("@porter fix the typo")  # queued: never ran
    carol = await porter.person("carol")
    page = await carol.get(f"/tasks/{task_id}", headers=HTML)
    assert listed(page.text) == []
    assert "None yet" in page.text
    assert (await carol.get(f"/api/tasks/{task_id}")).json()["artifacts"] == []
    await carol.aclose()


async def test_an_artifact_is_reached_only_through_its_own_task(porter: Served) -> None:
    store = porter.world.store
    first, first_run = await porter.task_with_run("@porter fix the typo")
    second, second_run = await porter.task_with_run("@porter fix another", number=2)
    own = await store.put_artifact(first, first_run, "log", None, b"first's log\n")
    other = await store.put_artifact(second, second_run, "log", None, b"second's log\n")
    alice = await porter.person("alice")

    assert (await alice.get(f"/tasks/{first}/artifacts/{own}")).content == b"first's log\n"
    crossed = await alice.get(f"/tasks/{first}/artifacts/{other}")
    assert crossed.status_code == 404 and b"second's log" not in crossed.content
    # Ids that name nothing are 404s too, never a server error.
    for path in (f"/tasks/{first}/artifacts/abc", f"/tasks/{first}/artifacts/{own}x",
                 f"/tasks/{first}/artifacts/{'9' * 40}", f"/tasks/{first}/artifacts/\u0663",
                 f"/tasks/{first}/artifacts/{own + 1000}", f"/tasks/x{first}/artifacts/{own}",
                 f"/tasks/{'9' * 40}/artifacts/{own}", f"/tasks/{second + 1000}/artifacts/{own}"):
        answer = await alice.get(path)
        assert answer.status_code == 404, (path, answer.status_code, answer.text)
        assert b"first's log" not in answer.content
    await alice.aclose()


async def test_only_those_who_see_the_task_may_download_its_artifacts(porter: Served) -> None:
    store = porter.world.store
    mine, mine_run = await porter.task_with_run("@porter fix the typo")
    theirs, theirs_run = await porter.task_with_run("@porter make the widgets green",
                                                    repo=OTHER_REPO, installation_id=43)
    readable = await store.put_artifact(mine, mine_run, "log", None, b"octo's log\n")
    hidden = await store.put_artifact(theirs, theirs_run, "log", None, b"acme's secret log\n")
    carol, mallory = await porter.person("carol"), await porter.person("mallory")

    assert (await carol.get(f"/tasks/{mine}/artifacts/{readable}")).status_code == 200
    # Outside their repositories, an artifact answers exactly as a task that does not exist.
    missing = theirs + 1000
    for who, task_id, artifact_id in ((carol, theirs, hidden), (mallory, mine, readable)):
        refused = await who.get(f"/tasks/{task_id}/artifacts/{artifact_id}")
        absent = await who.get(f"/tasks/{missing}/artifacts/{artifact_id}")
        assert refused.status_code == absent.status_code == 404
        assert refused.json()["error"] == \
            absent.json()["error"].replace(str(missing), str(task_id))
        assert b"log" not in refused.content
        page = await who.get(f"/tasks/{task_id}", headers=HTML)
        assert page.status_code == 404
    # Signed out: what the task page says, and nothing of the artifact.
    async with porter.anonymous() as nobody:
        for path in (f"/tasks/{mine}/artifacts/{readable}", f"/tasks/{mine}"):
            answer = await nobody.get(path)
            assert answer.status_code == 401 and b"octo's log" not in answer.content
    # The operator's token reaches every task's artifacts, as it reaches every task.
    async with porter.anonymous() as operator:
        got = await operator.get(f"/tasks/{theirs}/artifacts/{hidden}", headers=ADMIN)
        assert got.content == b"acme's secret log\n"
    for who in (carol, mallory):
        await who.aclose()


async def test_an_artifact_holding_html_is_an_inert_attachment(porter: Served) -> None:
    task_id, run_id = await porter.task_with_run("@porter fix the typo")
    artifact_id = await porter.world.store.put_artifact(task_id, run_id, "changeset",
                                                        "text/html", HOSTILE)
    alice = await porter.person("alice")
    # Asked for as a browser asks for a page: still the diff, as a file, in a sandbox.
    got = await alice.get(f"/tasks/{task_id}/artifacts/{artifact_id}", headers=HTML)
    assert got.status_code == 200 and got.content == HOSTILE
    assert got.headers["content-type"] == "text/x-diff; charset=utf-8"  # not the given text/html
    assert got.headers["content-disposition"].startswith("attachment;")
    assert got.headers["x-content-type-options"] == "nosniff"
    policy = [d.strip() for d in got.headers["content-security-policy"].split(";")]
    assert "sandbox" in policy and "default-src 'none'" in policy
    await alice.aclose()
