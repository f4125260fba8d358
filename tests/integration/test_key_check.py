"""Every Porter process of a database holds the same key ring: one started with another ring
refuses to start, and a rotation (new key in front, older keys kept) never does
(porter/key_check.py)."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
from pathlib import Path

import pytest

from porter.check import Check
from porter.crypto import KeyRing
from porter.diagnostics import database_checks
from porter.errors import ConfigError
from porter.key_check import reconcile
from porter.runtime import Runtime
from porter.settings import Settings
from porter.store import Store
from tests.e2e.server import ServerProcess

REFUSAL = ("this Porter's key ring is not the one the other Porter processes of this database "
           "use")
ADVICE = "set PORTER_SECRET_KEYS to the same value on every replica (docs/operator.md)"


def key(byte: int) -> bytes:
    return bytes([byte]) * 32


def ring(*entries: tuple[str, int]) -> KeyRing:
    return KeyRing([(kid, key(byte)) for kid, byte in entries])


# -- the rules --------------------------------------------------------------------------------


def test_nothing_stored_stores_ours() -> None:
    ours = {"a": "1", "b": "2"}
    assert reconcile(None, ours) == ours
    assert reconcile({}, ours) == ours


def test_the_same_ring_passes_unchanged() -> None:
    assert reconcile({"a": "1"}, {"a": "1"}) == {"a": "1"}


def test_a_kid_known_with_another_key_is_refused() -> None:
    problem = reconcile({"a": "1", "b": "2"}, {"c": "3", "b": "9"})
    assert problem == "its key id b holds another key than theirs"


def test_a_ring_with_no_kid_in_common_is_refused() -> None:
    problem = reconcile({"a": "1"}, {"c": "3"})
    assert isinstance(problem, str)
    assert problem == "none of its key ids (c) is theirs (a)"


def test_a_rotation_is_remembered_so_the_new_key_alone_then_passes() -> None:
    rotated = reconcile({"old": "1"}, {"new": "2", "old": "1"})
    assert rotated == {"new": "2", "old": "1"}
    assert isinstance(rotated, dict)
    assert reconcile(rotated, {"new": "2"}) == rotated
    # A replica not restarted yet, with the old ring only, still starts.
    assert reconcile(rotated, {"old": "1"}) == rotated


def test_fingerprints_tell_keys_apart_without_showing_them() -> None:
    one, other = ring(("k", 1)), ring(("k", 2))
    assert one.fingerprints() == ring(("k", 1)).fingerprints()
    assert one.fingerprints() != other.fingerprints()
    fingerprint = one.fingerprints()["k"]
    assert key(1).hex() not in fingerprint
    assert base64.b64encode(key(1)).decode() not in fingerprint
    # No subkey the ring derives for another purpose is published as a fingerprint.
    assert fingerprint not in {one.derive(p).hex() for p in ("run-token", "web-cookies")}


# -- on both stores ---------------------------------------------------------------------------


async def stored(where: Path | str) -> dict[str, str]:
    store = await Store.open(where)
    try:
        return await store.key_fingerprints()
    finally:
        await store.close()


async def record(where: Path | str, keys: KeyRing) -> None:
    """What a Porter process does at start: open the database and check its ring."""
    store = await Store.open(where)
    try:
        await store.record_key_ring(keys.fingerprints())
    finally:
        await store.close()


async def refused(where: Path | str, keys: KeyRing) -> str:
    with pytest.raises(ConfigError) as caught:
        await record(where, keys)
    message = caught.value.message
    for entry in keys.serialize().split(","):  # the message names key ids, never keys
        secret = entry.split(":")[1]
        assert secret not in message
        assert base64.b64decode(secret).hex() not in message
    return message


async def test_the_first_start_records_the_ring_and_the_same_ring_passes(
        store_database: Path | str) -> None:
    keys = ring(("k1", 1))
    await record(store_database, keys)
    assert await stored(store_database) == keys.fingerprints()
    await record(store_database, keys)
    assert await stored(store_database) == keys.fingerprints()


async def test_a_generated_ring_of_another_host_is_refused(store_database: Path | str) -> None:
    first, other = KeyRing.generate(), KeyRing.generate()
    await record(store_database, first)
    message = await refused(store_database, other)
    assert message.startswith(REFUSAL) and message.endswith(ADVICE)
    assert other.current_kid in message
    assert await stored(store_database) == first.fingerprints()


async def test_a_known_kid_with_another_key_is_refused(
        store_database: Path | str) -> None:
    await record(store_database, ring(("k1", 1)))
    message = await refused(store_database, ring(("k1", 2)))
    assert "(its key id k1 holds another key than theirs)" in message
    assert message.endswith(ADVICE)
    assert await stored(store_database) == ring(("k1", 1)).fingerprints()


async def test_a_rotated_ring_passes_and_then_its_new_key_alone(
        store_database: Path | str) -> None:
    old = ring(("old", 1))
    rotated = ring(("new", 2), ("old", 1))
    await record(store_database, old)
    await record(store_database, rotated)
    await record(store_database, ring(("new", 2)))  # the operator dropped the old key
    assert await stored(store_database) == rotated.fingerprints()
    # A ring with none of those keys is still another ring.
    await refused(store_database, ring(("other", 3)))


async def test_of_two_processes_starting_at_once_with_other_rings_one_is_refused(
        store_database: Path | str) -> None:
    await (await Store.open(store_database)).close()  # migrated: the two race on the ring only
    one, other = ring(("k1", 1)), ring(("k2", 2))
    outcomes = await asyncio.gather(record(store_database, one), record(store_database, other),
                                    return_exceptions=True)
    assert sorted(type(outcome).__name__ for outcome in outcomes) == ["ConfigError", "NoneType"]
    winner = one if outcomes[0] is None else other
    assert await stored(store_database) == winner.fingerprints()


async def test_runtime_start_refuses_another_ring_before_any_work(
        store_database: Path | str, tmp_path: Path) -> None:
    def settings(keys: KeyRing) -> Settings:
        return Settings.from_mapping({"PORTER_DATABASE": str(store_database),
                                      "PORTER_DATA_DIR": str(tmp_path / "data"),
                                      "PORTER_SECRET_KEYS": keys.serialize()})

    store = await Store.open(store_database)
    try:
        first = Runtime(settings(ring(("k1", 1))), store)
        await first.start()
        await first.stop()
        assert await stored(store_database) == ring(("k1", 1)).fingerprints()
        second = Runtime(settings(ring(("k2", 2))), store)
        with pytest.raises(ConfigError, match=REFUSAL):
            await second.start()
        assert second._tasks == []  # nothing was started
    finally:
        await store.close()


async def test_rotate_keys_records_the_rotated_ring(tmp_path: Path) -> None:
    """`porter rotate-keys --new-key` adds a key to the key file: a replica given that file
    starts, and so does one given only the new key after the old one is dropped."""
    from porter.rotation import rotate_keys

    database = tmp_path / "porter.db"
    settings = Settings.from_mapping({"PORTER_DATABASE": str(database)})
    await record(database, KeyRing.parse(_key_file(settings)))
    rotation = await rotate_keys(settings, new_key=True)
    rotated = KeyRing.parse(_key_file(settings))
    assert rotated.kids[0] == rotation.kid and len(rotated.kids) == 2
    newest_only = KeyRing.parse(rotated.serialize().split(",")[0])
    await record(database, newest_only)
    assert await stored(database) == rotated.fingerprints()


def _key_file(settings: Settings) -> str:
    from porter.runtime import load_keyring

    return load_keyring(settings).serialize()


# -- end to end -------------------------------------------------------------------------------


def test_a_second_serve_with_another_ring_exits_with_one_line(
        tmp_path: Path, postgres_database: str) -> None:
    env = {"PORTER_DATABASE": postgres_database, "PORTER_ADMIN_TOKEN": "test-admin-token",
           "PORTER_LOG_FORMAT": "text"}
    first_keys, second_keys = ring(("k1", 1)), ring(("k2", 2))
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    server = ServerProcess({**env, "PORTER_SECRET_KEYS": first_keys.serialize()},
                           cwd=tmp_path / "one").start()
    try:
        second = ServerProcess({**env, "PORTER_SECRET_KEYS": second_keys.serialize()},
                               cwd=tmp_path / "two")
        result = subprocess.run(
            [sys.executable, "-m", "porter.cli", "serve"], env=second.env, cwd=second.cwd,
            capture_output=True, text=True, timeout=60, check=False)
    finally:
        server.kill()
    assert result.returncode != 0
    assert result.stdout == ""  # it never said it was listening
    assert result.stderr.splitlines() == [
        f"porter: {REFUSAL} (none of its key ids (k2) is theirs (k1)); {ADVICE}"]
    for secret in (second_keys.serialize(), first_keys.serialize()):
        assert secret.split(":")[1] not in result.stderr


def test_a_serve_that_would_generate_its_own_ring_exits_without_writing_one(
        tmp_path: Path, postgres_database: str) -> None:
    """The case of each host generating its key file on first start: the second host's Porter
    refuses before it writes one, so the operator has nothing to clean up."""
    env = {"PORTER_DATABASE": postgres_database, "PORTER_ADMIN_TOKEN": "test-admin-token",
           "PORTER_LOG_FORMAT": "text"}
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    ServerProcess(env, cwd=tmp_path / "one").start().kill()
    assert (tmp_path / "one" / "porter-data" / "porter.keys").is_file()
    second = ServerProcess(env, cwd=tmp_path / "two")
    result = subprocess.run(
        [sys.executable, "-m", "porter.cli", "serve"], env=second.env, cwd=second.cwd,
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert result.stderr.splitlines() == [
        f"porter: {REFUSAL} (it has none: PORTER_SECRET_KEYS is not set and there is no key "
        f"file porter-data/porter.keys); {ADVICE}"]
    assert not (tmp_path / "two" / "porter-data" / "porter.keys").exists()


async def test_doctor_says_whether_the_ring_is_the_databases(store_database: Path | str,
                                                             tmp_path: Path) -> None:
    await record(store_database, ring(("k1", 1)))

    async def key_ring_check(keys: str | None) -> Check:
        settings = Settings.from_mapping({
            "PORTER_DATABASE": str(store_database), "PORTER_DATA_DIR": str(tmp_path / "data"),
            **({"PORTER_SECRET_KEYS": keys} if keys else {})})
        [check] = [c for c in await database_checks(settings, None) if c.name == "key ring"]
        return check

    same = await key_ring_check(ring(("k1", 1)).serialize())
    assert same.ok is True
    other = await key_ring_check(ring(("k9", 9)).serialize())
    assert other.ok is False and other.blocks
    assert other.detail.startswith(REFUSAL) and "k9" in other.detail
    assert base64.b64encode(key(9)).decode() not in other.detail
    none = await key_ring_check(None)  # would generate its own at start
    assert none.ok is False and "PORTER_SECRET_KEYS is not set" in none.detail
    assert not (tmp_path / "data" / "porter.keys").exists()  # doctor wrote none
    assert await stored(store_database) == ring(("k1", 1)).fingerprints()  # nor recorded
