"""`porter rotate-keys`: every sealed secret re-sealed under the newest key, the ring loaded as the
server loads it, safe to interrupt and run again."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from porter import cli
from porter.crypto import KeyRing, needs_rotation, open_sealed
from porter.errors import CryptoError
from porter.rotation import rotate_keys
from porter.runtime import load_keyring
from porter.settings import Settings
from porter.store import Store
from porter.vault import Vault
from tests.settings_helpers import swap_sealed

SECRETS = {
    1: {"ANTHROPIC_API_KEY": "sk-one-Hq5Vb8Nm2Lp4", "FLY_API_TOKEN": "fm2_one-Xc7Zr3"},
    2: {"ANTHROPIC_API_KEY": "sk-two-Tw6Ks1Dj9Gf3", "OPENAI_API_KEY": "sk-two-Pe4Ya8Ru2"},
    3: {"GEMINI_API_KEY": "gm-three-Bn5Mq7Wx1"},
}
ROWS = sum(len(values) for values in SECRETS.values())


@pytest.fixture
def environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The CLI's environment: only this test's database (no .env, no outer PORTER_*)."""
    for name in list(os.environ):
        if name.startswith("PORTER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    env = {"PORTER_DATABASE": str(tmp_path / "porter.db")}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield env


def settings_of(env: dict[str, str]) -> Settings:
    return Settings.from_mapping(env)


async def populate(settings: Settings) -> KeyRing:
    """Secrets sealed as the server seals them, under the ring it loads (the key file)."""
    ring = load_keyring(settings)
    store = await Store.open(settings.database)
    try:
        vault = Vault(ring, store)
        for user_id, values in SECRETS.items():
            await vault.put(user_id, dict(values))
    finally:
        await store.close()
    return ring


async def rows(settings: Settings) -> list[tuple[int, str, str]]:
    store = await Store.open(settings.database)
    try:
        return await store.all_sealed()
    finally:
        await store.close()


def kids(found: list[tuple[int, str, str]]) -> list[str]:
    return [sealed.split(".")[1] for _, _, sealed in found]


def all_open(ring: KeyRing, found: list[tuple[int, str, str]]) -> None:
    for user_id, name, sealed in found:
        assert open_sealed(ring, sealed, user_id=str(user_id), name=name) == \
            SECRETS[user_id][name]


def test_a_new_key_goes_first_in_the_key_file_and_everything_is_resealed_under_it(
        environ: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    settings = settings_of(environ)
    old = asyncio.run(populate(settings))
    assert cli.main(["rotate-keys", "--new-key"]) == 0
    out = capsys.readouterr().out

    ring = load_keyring(settings)  # what the server loads at its next start
    assert ring.kids[1:] == old.kids and ring.current_kid != old.current_kid
    assert stat.S_IMODE(settings.keys_file.stat().st_mode) == 0o600
    assert not list(settings.keys_file.parent.glob(".*.tmp"))
    found = asyncio.run(rows(settings))
    assert kids(found) == [ring.current_kid] * ROWS
    all_open(ring, found)
    assert f"added key {ring.current_kid}" in out
    assert f"re-sealed {ROWS} secret(s) under key {ring.current_kid}; 0 already were" in out
    for values in SECRETS.values():  # counts and key ids only, never a value
        assert not [value for value in values.values() if value in out]

    assert cli.main(["rotate-keys"]) == 0  # again: nothing left to do
    assert f"re-sealed 0 secret(s) under key {ring.current_kid}; {ROWS} already were" in \
        capsys.readouterr().out
    assert kids(asyncio.run(rows(settings))) == [ring.current_kid] * ROWS


def test_an_interrupted_rotation_leaves_every_row_readable_and_a_second_run_finishes(
        environ: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_of(environ)
    asyncio.run(populate(settings))
    original = Store.replace_sealed
    calls = 0

    async def dies_after_two(self: Store, *args: object) -> bool:
        nonlocal calls
        calls += 1
        if calls > 2:
            raise KeyboardInterrupt  # the operator's ^C, or a crash, between two rows
        return await original(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Store, "replace_sealed", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(rotate_keys(settings, new_key=True))
    monkeypatch.setattr(Store, "replace_sealed", original)

    ring = load_keyring(settings)
    found = asyncio.run(rows(settings))
    assert sorted(kids(found)).count(ring.current_kid) == 2  # half done
    all_open(ring, found)  # and every row opens, under the old key or the new

    again = asyncio.run(rotate_keys(settings))
    assert (again.resealed, again.current, again.behind, again.failed) == (ROWS - 2, 2, 0, [])
    found = asyncio.run(rows(settings))
    assert kids(found) == [ring.current_kid] * ROWS
    all_open(ring, found)


def test_with_porter_secret_keys_the_operator_adds_the_key_and_the_cli_reseals(
        environ: dict[str, str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    old = KeyRing.generate("old")
    monkeypatch.setenv("PORTER_SECRET_KEYS", old.serialize())
    settings = settings_of({**environ, "PORTER_SECRET_KEYS": old.serialize()})
    asyncio.run(populate(settings))

    assert cli.main(["rotate-keys", "--new-key"]) == 1
    assert "PORTER_SECRET_KEYS is set: put a new kid:base64key entry first" in \
        capsys.readouterr().err
    assert not settings.keys_file.exists()

    newer = KeyRing([*KeyRing.generate("new")._keys.items(), *old._keys.items()])
    monkeypatch.setenv("PORTER_SECRET_KEYS", newer.serialize())
    assert cli.main(["rotate-keys"]) == 0
    found = asyncio.run(rows(settings))
    assert kids(found) == ["new"] * ROWS
    all_open(newer, found)
    with pytest.raises(CryptoError):  # the old key alone no longer opens them
        all_open(old, found)


def test_a_row_that_does_not_open_is_reported_and_the_rest_are_resealed(
        environ: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    settings = settings_of(environ)
    asyncio.run(populate(settings))
    asyncio.run(_put(settings, 3, {"ANTHROPIC_API_KEY": "sk-three-Aa1Bb2Cc3"}))
    swap_sealed(settings.database, 2, 3, "ANTHROPIC_API_KEY")

    assert cli.main(["rotate-keys", "--new-key"]) == 1
    out = capsys.readouterr().out
    assert "could not open user 2 ANTHROPIC_API_KEY" in out
    assert "could not open user 3 ANTHROPIC_API_KEY" in out
    ring = load_keyring(settings)
    found = asyncio.run(rows(settings))
    current = [(u, n) for u, n, sealed in found if not needs_rotation(ring, sealed)]
    assert len(current) == ROWS - 1  # all but the two swapped rows (one of them was new)
    assert (2, "ANTHROPIC_API_KEY") not in current and (3, "ANTHROPIC_API_KEY") not in current


def test_each_rotation_is_in_the_audit_log(environ: dict[str, str]) -> None:
    settings = settings_of(environ)
    asyncio.run(populate(settings))
    done = asyncio.run(rotate_keys(settings, new_key=True))

    async def entries() -> list[tuple[str, str, str, dict[str, object]]]:
        store = await Store.open(settings.database)
        try:
            return [(e.actor, e.action, e.source, e.detail)
                    for e in await store.audit_entries(action="key.rotate")]
        finally:
            await store.close()

    assert asyncio.run(entries()) == [("cli", "key.rotate", "cli", {
        "kid": done.kid, "added": True, "resealed": ROWS, "failed": 0, "behind": 0})]


async def _put(settings: Settings, user_id: int, values: dict[str, str | None]) -> None:
    store = await Store.open(settings.database)
    try:
        await Vault(load_keyring(settings), store).put(user_id, values)
    finally:
        await store.close()
