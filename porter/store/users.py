"""People of the web app: users, their sealed secrets, their sessions, and the audit log.

The store never sees a plaintext secret: callers seal before they write and open after they
read (porter/vault.py), so a value can only reach the database as AES-GCM ciphertext.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from porter.models import AuditEntry, Session, User
from porter.store.base import StoreBase, matching

# The user id under which the App credentials that /setup obtained are sealed.
APP_OWNER = 0
USER_COLUMNS = ("default_agent", "default_model", "fly_app", "token_expires_at")


def _to_user(row: sqlite3.Row) -> User:
    return User(id=row["id"], login=row["login"], name=row["name"],
                avatar_url=row["avatar_url"], default_agent=row["default_agent"],
                default_model=row["default_model"], fly_app=row["fly_app"],
                token_expires_at=row["token_expires_at"], created_at=row["created_at"],
                last_sign_in_at=row["last_sign_in_at"])


def _to_audit(row: sqlite3.Row) -> AuditEntry:
    return AuditEntry(id=row["id"], at=row["at"], actor=row["actor"], actor_id=row["actor_id"],
                      action=row["action"], target=row["target"], source=row["source"],
                      address=row["address"], detail=json.loads(row["detail"]))


class UserStore(StoreBase):
    async def sign_in(self, *, user_id: int, login: str, name: str | None,
                      avatar_url: str | None, secrets: dict[str, tuple[str, str]],
                      token_expires_at: float | None, session_hash: str, csrf: str,
                      session_expires_at: float) -> User:
        """Create or refresh the user, store their sealed GitHub tokens and open a session, in
        one transaction. `secrets` maps a name to (sealed, last4)."""
        now = self._clock()

        def work(db: sqlite3.Connection) -> User:
            db.execute(
                "INSERT INTO users (id, login, name, avatar_url, token_expires_at, created_at,"
                " updated_at, last_sign_in_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET login = excluded.login, name = excluded.name,"
                " avatar_url = excluded.avatar_url, token_expires_at = excluded.token_expires_at,"
                " updated_at = excluded.updated_at, last_sign_in_at = excluded.last_sign_in_at",
                (user_id, login, name, avatar_url, token_expires_at, now, now, now))
            _put_secrets(db, user_id, secrets, now)
            db.execute("INSERT INTO sessions (id_hash, user_id, csrf, created_at, expires_at)"
                       " VALUES (?, ?, ?, ?, ?)",
                       (session_hash, user_id, csrf, now, session_expires_at))
            db.execute("DELETE FROM sessions WHERE expires_at < ?", (now,))
            row = db.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
            return _to_user(row)

        return await self._write(work)

    async def get_user(self, user_id: int) -> User | None:
        rows = list(await self._read(
            "SELECT * FROM users WHERE id = ?", (user_id,)))
        return _to_user(rows[0]) if rows else None

    async def update_user(self, user_id: int, **values: Any) -> None:
        """Set the named columns (default agent, model, Fly app, token expiry)."""
        unknown = set(values) - set(USER_COLUMNS)
        if unknown:
            raise ValueError(f"not a user setting: {sorted(unknown)}")
        if not values:
            return
        now = self._clock()
        assignments = ", ".join(f"{name} = ?" for name in values)
        await self._write(lambda db: db.execute(
            f"UPDATE users SET {assignments}, updated_at = ? WHERE id = ?",
            [*values.values(), now, user_id]))

    # -- sessions --------------------------------------------------------------------------

    async def session(self, session_hash: str) -> Session | None:
        rows = list(await self._read(
            "SELECT user_id, csrf, expires_at FROM sessions WHERE id_hash = ? AND expires_at > ?",
            (session_hash, self._clock())))
        return Session(rows[0][0], rows[0][1], rows[0][2]) if rows else None

    async def end_session(self, session_hash: str) -> None:
        await self._write(lambda db: db.execute(
            "DELETE FROM sessions WHERE id_hash = ?", (session_hash,)))

    # -- sealed secrets --------------------------------------------------------------------

    async def put_secrets(self, user_id: int, secrets: dict[str, tuple[str, str]],
                          *, remove: tuple[str, ...] = ()) -> None:
        """Write sealed secrets (name → (sealed, last4)) and remove others, in one commit."""
        now = self._clock()

        def work(db: sqlite3.Connection) -> None:
            _put_secrets(db, user_id, secrets, now)
            for name in remove:
                db.execute("DELETE FROM user_secrets WHERE user_id = ? AND name = ?",
                           (user_id, name))

        await self._write(work)

    async def sealed_secrets(self, user_id: int) -> dict[str, tuple[str, str]]:
        """name → (sealed, last4) of one user's secrets."""
        rows = await self._read(
            "SELECT name, sealed, last4 FROM user_secrets WHERE user_id = ?", (user_id,))
        return {row[0]: (row[1], row[2]) for row in rows}

    async def all_sealed(self) -> list[tuple[int, str, str]]:
        """(user id, name, sealed) of every secret, for re-sealing under a new key."""
        rows = await self._read(
            "SELECT user_id, name, sealed FROM user_secrets ORDER BY user_id, name")
        return [(row[0], row[1], row[2]) for row in rows]

    async def replace_sealed(self, user_id: int, name: str, old: str, new: str) -> bool:
        """Compare-and-set one secret's ciphertext: a concurrent change wins over a re-seal."""
        return bool(await self._write(lambda db: db.execute(
            "UPDATE user_secrets SET sealed = ? WHERE user_id = ? AND name = ? AND sealed = ?",
            (new, user_id, name, old)).rowcount))

    # -- audit -----------------------------------------------------------------------------

    async def audit(self, *, actor: str, actor_id: int | None, action: str, target: str = "",
                    source: str, address: str = "", detail: dict[str, Any] | None = None
                    ) -> None:
        now = self._clock()
        await self._write(lambda db: db.execute(
            "INSERT INTO audit_log (at, actor, actor_id, action, target, source, address,"
            " detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (now, actor, actor_id, action, target, source, address,
             json.dumps(detail or {}))))

    async def audit_entries(self, *, actor: str | None = None, action: str | None = None,
                            before: int | None = None, limit: int = 100) -> list[AuditEntry]:
        """Newest first, keyset-paged by id."""
        clause, params = matching({"actor = ?": actor, "action = ?": action, "id < ?": before})
        rows = await self._read(
            f"SELECT * FROM audit_log{clause} ORDER BY id DESC LIMIT ?",
            [*params, max(1, min(limit, 500))])
        return [_to_audit(row) for row in rows]


def _put_secrets(db: sqlite3.Connection, user_id: int, secrets: dict[str, tuple[str, str]],
                 now: float) -> None:
    for name, (sealed, last4) in secrets.items():
        db.execute(
            "INSERT INTO user_secrets (user_id, name, sealed, last4, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT(user_id, name) DO UPDATE SET"
            " sealed = excluded.sealed, last4 = excluded.last4, updated_at = excluded.updated_at",
            (user_id, name, sealed, last4, now))
