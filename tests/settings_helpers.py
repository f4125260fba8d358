"""Saving a person's settings as their browser does: the /settings form, with its CSRF token."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import httpx

from tests.web_helpers import Browser

HTML = {"Accept": "text/html"}
# Shaped like no real key: only knowing the value can find it.
ALICE_KEY = "sk-alice-Vq3Nw8Zr5Tb2Lm7Kd4Hx"
BOB_KEY = "sk-bob-Jp6Yc1Qs9Fg3Wn8Rv2Tk"
OPERATOR_KEY = "sk-operator-Ze4Ua7Ni2Ox5Pb8Mc"


async def save(browser: Browser, **fields: str) -> httpx.Response:
    """POST /settings as the settings page does; fields by their form names."""
    return await browser.client.post("/settings", data={"csrf": browser.csrf, **fields},
                                     headers=HTML)


async def saved(browser: Browser, **fields: str) -> None:
    answer = await save(browser, **fields)
    assert answer.status_code == 303, answer.text[:2000]
    assert answer.headers["location"] == "/settings?done=saved"


def database_bytes(path: Path) -> bytes:
    """The database file and its -wal and -shm, as they are on disk right now."""
    return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*"))
                    if p.is_file())


def swap_sealed(path: Path, first: int, second: int, name: str) -> None:
    """Exchange two users' ciphertexts of one secret, as someone with the database file could."""
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        rows = dict(db.execute("SELECT user_id, sealed FROM user_secrets WHERE name = ?"
                               " AND user_id IN (?, ?)", (name, first, second)).fetchall())
        assert set(rows) == {first, second}, rows
        for user_id, other in ((first, second), (second, first)):
            db.execute("UPDATE user_secrets SET sealed = ? WHERE user_id = ? AND name = ?",
                       (rows[other], user_id, name))
