"""The `.env` file format Porter reads (the CLI merges it under the environment)."""

from __future__ import annotations

import re

from porter.errors import ConfigError


def parse_dotenv(text: str) -> dict[str, str]:
    """Read KEY=VALUE lines; # comments, optional `export`, single or double quotes."""
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export "):
            stripped = stripped[len("export ") :].lstrip()
        key, sep, value = stripped.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ConfigError(f".env line {number}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
            if stripped.partition("=")[2].strip().startswith('"'):
                value = value.replace("\\n", "\n")
        else:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values
