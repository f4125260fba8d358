"""PORTER_DATABASE: a SQLite file (a path, or `sqlite:` and a path) or a PostgreSQL URL.

A URL may carry a password (`postgresql://porter:PASSWORD@host/porter`). `DatabaseUrl` keeps it
for the driver and shows the URL with the password masked, and `without_password` masks any
`scheme://user:password@` in a text (the settings' error lines), so no message or log line
prints it.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

POSTGRES_SCHEMES = ("postgresql", "postgres")
HIDDEN = "***"
EXPECTED = "a SQLite file path, sqlite:PATH, or a postgresql://USER:PASSWORD@HOST/NAME URL"
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*):[^@/\s]*@")
_USER_PASSWORD = re.compile(r"(?P<head>[^:@/\s]+):[^@/\s]*@")  # user:password@, no scheme://
_PASSWORD_PARAM = re.compile(r"(?i)(?P<head>[?&]password=)[^&#\s]*")


def without_password(text: str) -> str:
    """`text` with the password of every `scheme://user:password@`, `user:password@` and
    `password=` masked."""
    masked = _CREDENTIALS.sub(lambda m: f"{m['head']}:{HIDDEN}@", text)
    masked = _USER_PASSWORD.sub(lambda m: f"{m['head']}:{HIDDEN}@", masked)
    return _PASSWORD_PARAM.sub(lambda m: m["head"] + HIDDEN, masked)


class DatabaseUrl:
    """A PostgreSQL URL: `get()` for the driver; `str`, `repr` and f-strings mask the password."""

    __slots__ = ("_url",)

    def __init__(self, url: str) -> None:
        self._url = url

    def get(self) -> str:
        return self._url

    def redact(self, text: str) -> str:
        """`text` (a driver's error, say) with this URL's password masked wherever it appears."""
        password = urlsplit(self._url).password
        masked = without_password(text)
        return masked.replace(password, HIDDEN) if password else masked

    def __str__(self) -> str:
        return without_password(self._url)

    def __repr__(self) -> str:
        return f"DatabaseUrl({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DatabaseUrl) and other._url == self._url

    def __hash__(self) -> int:
        return hash(self._url)


def parse_database(raw: str) -> Path | DatabaseUrl:
    """A path or `sqlite:PATH` (`sqlite:///abs/path` too) is a SQLite file; a `postgresql://`
    or `postgres://` URL a PostgreSQL database; any other `scheme:` is refused."""
    value = raw.strip()
    scheme = _SCHEME.match(value)
    if scheme is None or (len(scheme[1]) == 1 and not value.startswith(scheme[0] + "//")):
        return Path(value).expanduser()  # a path (C:\… on a drive letter is a path too)
    name = scheme[1].lower()
    if name == "sqlite":
        rest = value[len(scheme[0]):]
        rest = rest[2:] if rest.startswith("//") else rest
        if not rest:
            raise ValueError(EXPECTED + " (a path after sqlite:)")
        return Path(rest).expanduser()
    if name in POSTGRES_SCHEMES and value[len(scheme[0]):].startswith("//"):
        try:
            urlsplit(value).port  # noqa: B018 - raises ValueError on a port that is not one
        except ValueError:
            raise ValueError(EXPECTED + " (its port is not a number from 0 to 65535)") from None
        return DatabaseUrl(value)
    raise ValueError(EXPECTED)
