"""Which of a change's paths a repository's `protected_paths` forbid the agent to touch. Pure.

Patterns are relative to the repository's root (docs/repo-config.md): `*` and `?` match within
one path component, `**` across components, and a pattern that matches a directory protects
everything below it, so `migrations`, `migrations/` and `migrations/**` all mean the same.
Matching is exact about case, as git is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

_TOKENS = re.compile(r"\*\*/|/\*\*$|\*\*|\*|\?|[^*?/]+|/")


# Glob token → regex; anything else is matched literally.
_GLOBS = {"**/": "(?:[^/]+/)*", "/**": "(?:/.*)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
    body = pattern.rstrip("/") or pattern
    return re.compile("".join(_GLOBS.get(part) or re.escape(part)
                              for part in _TOKENS.findall(body)))


def protected(path: str, patterns: Sequence[str]) -> str | None:
    """The first pattern that protects `path` (or a directory above it), else None."""
    segments = path.split("/")
    prefixes = ["/".join(segments[:n]) for n in range(len(segments), 0, -1)]
    for pattern in patterns:
        compiled = _compiled(pattern)
        if any(compiled.fullmatch(prefix) for prefix in prefixes):
            return pattern
    return None


def violations(paths: Iterable[str], patterns: Sequence[str]) -> list[tuple[str, str]]:
    """(path, pattern) for each path a pattern protects, in the order given."""
    if not patterns:
        return []
    found = []
    for path in paths:
        pattern = protected(path, patterns)
        if pattern is not None:
            found.append((path, pattern))
    return found
