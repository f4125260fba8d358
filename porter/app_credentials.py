"""The GitHub App's credentials that /setup obtained through the manifest flow.

They are kept sealed in the database (under user id 0, porter/store/users.py) and fill in the
settings the environment leaves unset when Porter starts or is reconfigured; the environment
always wins, so an operator can override a stored value without touching the database.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from collections.abc import Mapping
from typing import Any

import psycopg

from porter.crypto import open_sealed
from porter.errors import PorterError
from porter.logs import remember_secret
from porter.runtime import load_keyring
from porter.settings import Secret, Settings
from porter.store.users import APP_OWNER
from porter.vault import Vault

# Settings field → name of the sealed value.
STORED = {
    "github_app_id": "GITHUB_APP_ID",
    "github_client_id": "GITHUB_CLIENT_ID",
    "github_client_secret": "GITHUB_CLIENT_SECRET",
    "github_private_key": "GITHUB_PRIVATE_KEY",
    "github_webhook_secret": "GITHUB_WEBHOOK_SECRET",
}
SECRET_FIELDS = frozenset({"github_client_secret", "github_private_key",
                           "github_webhook_secret"})
# Also kept, for the setup page's "install the App" link.
APP_SLUG = "GITHUB_APP_SLUG"
APP_URL = "GITHUB_APP_URL"


def stored_app_in_file(settings: Settings) -> dict[str, str]:
    """What /setup stored, read from the database by a command beside the server (doctor,
    serve's first line). Creates nothing: no database or key ring yet means nothing stored."""
    if settings.secret_keys is None and not settings.keys_file.exists():
        return {}
    try:
        rows = _sealed_rows(settings)
        if rows is None:
            return {}
        ring = load_keyring(settings)
        return {name: open_sealed(ring, sealed, user_id=str(APP_OWNER), name=name)
                for name, sealed in rows}
    except (sqlite3.Error, psycopg.Error, PorterError):
        return {}  # an older database, or a ring that no longer opens them: doctor says so


def _sealed_rows(settings: Settings) -> list[tuple[str, str]] | None:
    """The App's sealed values, read-only; None when there is no database yet."""
    query = "SELECT name, sealed FROM user_secrets WHERE user_id = {}"
    if (path := settings.database_file) is None:
        url = settings.store_location
        assert isinstance(url, str)
        with psycopg.connect(url, connect_timeout=5) as pg:
            pg.read_only = True
            return [(str(name), str(sealed)) for name, sealed in
                    pg.execute(query.format("%s"), (APP_OWNER,)).fetchall()]
    if not path.exists():
        return None
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return [(str(name), str(sealed)) for name, sealed in
                db.execute(query.format("?"), (APP_OWNER,)).fetchall()]


async def stored_app(vault: Vault) -> dict[str, str]:
    """name → value of what /setup stored; empty before setup."""
    return await vault.open(APP_OWNER)


def overlay(settings: Settings, stored: Mapping[str, str]) -> Settings:
    """`settings` with each App setting the environment left unset taken from `stored`."""
    remember_secret(*(stored.get(STORED[field]) for field in SECRET_FIELDS))
    changes: dict[str, Any] = {}
    for field, name in STORED.items():
        value = stored.get(name)
        if value and not getattr(settings, field):
            changes[field] = Secret(value) if field in SECRET_FIELDS else value
    # A private key file given in the environment counts as a key: never replace it.
    if settings.github_private_key_file is not None:
        changes.pop("github_private_key", None)
    return dataclasses.replace(settings, **changes) if changes else settings


async def save_conversion(vault: Vault, conversion: Mapping[str, Any]) -> None:
    """Store the answer of `POST /app-manifests/{code}/conversions`."""
    values = {
        "GITHUB_APP_ID": str(conversion["id"]),
        "GITHUB_CLIENT_ID": str(conversion["client_id"]),
        "GITHUB_CLIENT_SECRET": str(conversion["client_secret"]),
        "GITHUB_PRIVATE_KEY": str(conversion["pem"]),
        APP_SLUG: str(conversion.get("slug") or ""),
        APP_URL: str(conversion.get("html_url") or ""),
    }
    if conversion.get("webhook_secret"):
        values["GITHUB_WEBHOOK_SECRET"] = str(conversion["webhook_secret"])
    await vault.put(APP_OWNER, dict(values))
