"""How each setting's text becomes a value; a ValueError's text says what was expected."""

from __future__ import annotations

import hmac
import math
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from porter import standard_webhooks

MASK = "**********"


class Secret:
    """A string that prints masked, so it cannot leak through a log line, an f-string or a repr."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def text(raw: str) -> str:
    return raw


def whole(raw: str) -> int:
    try:
        value = int(raw, 10)
    except ValueError:
        raise ValueError("a whole number") from None
    if value < 0:
        raise ValueError("a whole number ≥ 0")
    return value


def positive(raw: str) -> int:
    value = whole(raw)
    if value == 0:
        raise ValueError("a whole number ≥ 1")
    return value


def money(raw: str) -> float:
    """An amount in US dollars, `5` or `5.00` (a leading `$` is allowed), ≥ 0."""
    try:
        value = float(raw.strip().removeprefix("$"))
    except ValueError:
        raise ValueError("an amount in US dollars, such as 5.00") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError("an amount in US dollars ≥ 0, such as 5.00")
    return value


def port(raw: str) -> int:
    value = int(raw) if raw.isdigit() else -1
    if not 0 < value < 65536:
        raise ValueError("a port number from 1 to 65535")
    return value


def flag(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("true or false")


def url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError("an http:// or https:// URL")
    return raw.rstrip("/")


def path(raw: str) -> Path:
    return Path(raw).expanduser()


def secret(raw: str) -> Secret:
    return Secret(raw)


def secret_url(raw: str) -> Secret:
    """A URL that is itself a credential (a Slack incoming webhook's): checked, then masked."""
    return Secret(url(raw))


def webhook_secret(raw: str) -> Secret:
    """A Standard Webhooks signing secret, `whsec_<base64>` (porter/standard_webhooks.py)."""
    standard_webhooks.decode_secret(raw)
    return Secret(raw)


def handle(raw: str) -> str:
    name = raw.lstrip("@")
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})", name):
        raise ValueError("a GitHub handle such as porter (letters, digits, dashes)")
    return name.lower()


def choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError("one of " + ", ".join(options))
        return value

    return parse


def name_list(raw: str) -> tuple[str, ...]:
    items = tuple(item.strip().lower() for item in raw.split(",") if item.strip())
    for item in items:
        if not re.fullmatch(r"[a-z0-9._-]+(/[a-z0-9._-]+)?", item):
            raise ValueError("a comma-separated list of owners or owner/repo names")
    return items


def path_list(raw: str) -> tuple[Path, ...]:
    paths = tuple(Path(item.strip()).expanduser() for item in raw.split(":") if item.strip())
    if not all(p.is_absolute() for p in paths):
        raise ValueError("absolute paths separated by colons")
    return paths
