"""What each `.porter.yml` key accepts: one reader per key (FIELDS), and the rules its value
follows once YAML is out of the way (durations, branch prefix, path patterns). Pure."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from yaml import Node, SequenceNode

from porter.agents import MODEL_PATTERN

if TYPE_CHECKING:
    from porter.repo_config import FileReader

MAX_COMMANDS = 50
MAX_COMMAND_CHARS = 4096
MAX_PATTERNS = 100
MAX_INSTRUCTIONS_CHARS = 8192
MAX_PREFIX_CHARS = 40
MAX_PATTERN_CHARS = 256

# ASCII digits only (re.ASCII): `\d` would also take Arabic-Indic and other digits. The digit
# counts bound the number long before int() could be slow.
_SECONDS = re.compile(r"[0-9]{1,9}", re.ASCII)
_DURATION = re.compile(r"(?:([0-9]{1,6})h)?(?:([0-9]{1,6})m)?(?:([0-9]{1,9})s)?", re.ASCII)
# git check-ref-format: no space, control character, DEL, `~ ^ : ? * [ \`.
_REF_FORBIDDEN = " ~^:?*[\\"
# A reader's answer when it reported a problem instead of a value.
MISSING = object()


def parse_duration(text: str) -> int | None:
    """`900`, `45s`, `30m`, `2h` or `1h30m` → seconds; None when it is none of these."""
    compact = text.strip().lower()
    if _SECONDS.fullmatch(compact):
        return int(compact)
    match = _DURATION.fullmatch(compact)
    if not compact or match is None:
        return None
    hours, minutes, seconds = (int(group or 0) for group in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def format_duration(seconds: int) -> str:
    """Seconds as the shortest text `parse_duration` reads back: 5400 → `1h30m`."""
    if seconds <= 0:
        return "0s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n)


def branch_prefix_problem(prefix: str) -> str | None:
    """Why `prefix` cannot be the first component of a branch name, or None.

    git check-ref-format's rules for one component, plus what Porter needs on top: no `/` (the
    prefix is one component; Porter adds `/<task>-<slug>`), no leading `-` (a branch that reads
    as an option), printable ASCII only (it lands in URLs, logs and comments), bounded length.
    """
    if not prefix:
        return "must not be empty"
    if len(prefix) > MAX_PREFIX_CHARS:
        return f"is {len(prefix)} characters long; at most {MAX_PREFIX_CHARS}"
    for char in prefix:
        if not " " <= char <= "~":
            return "may hold only printable ASCII characters"
        if char in _REF_FORBIDDEN:
            return f"may not contain {_named(char)} (git refuses it in a branch name)"
        if char == "/":
            return "must be one name without '/' (Porter adds /<task>-<title> after it)"
    if ".." in prefix or "@{" in prefix:
        found = ".." if ".." in prefix else "@{"
        return f"may not contain '{found}' (git refuses it in a branch name)"
    if prefix == "@":
        return "may not be '@' alone (git refuses it as a branch name)"
    if prefix[0] in ".-":
        return f"may not start with '{prefix[0]}'"
    if prefix.endswith((".", ".lock")):
        return "may not end with '.' or '.lock' (git refuses it in a branch name)"
    return None


def path_pattern_problem(pattern: str) -> str | None:
    """Why `pattern` is not a glob relative to the repository root, or None."""
    if not pattern.strip():
        return "must not be empty"
    if len(pattern) > MAX_PATTERN_CHARS:
        return f"is {len(pattern)} characters long; at most {MAX_PATTERN_CHARS}"
    if any(ord(char) < 32 or ord(char) == 127 for char in pattern):
        return "may not contain control characters"
    if pattern.startswith("/"):
        return "must be relative to the repository root (no leading '/')"
    if "\\" in pattern:
        return "must use '/' between directories, not '\\'"
    parts = pattern.removesuffix("/").split("/")
    if ".." in parts:
        return "may not contain '..' (patterns stay inside the repository)"
    if "." in parts or "" in parts:
        return "must be written without './' or '//'"
    return None


def _named(char: str) -> str:
    return "a space" if char == " " else f"'{char}'"


# -- one reader per key ---------------------------------------------------------------------


def _agent_name(reader: FileReader, node: Node, key: str) -> object:
    name = reader.text(node, key, 100)
    if not isinstance(name, str):
        return name
    by_lower = {agent.lower(): agent for agent in reader.bounds.agents}
    if name.lower() in by_lower:
        return by_lower[name.lower()]
    known = ", ".join(sorted(reader.bounds.agents)) or "none"
    return reader.problem(node, key, f"{shown(name)} is not an agent this Porter runs "
                          f"(it runs: {known})")


def _agents(reader: FileReader, node: Node, key: str) -> object:
    if not isinstance(node, SequenceNode) or not node.value:
        return reader.problem(node, key, "must be a list of agent names, such as [claude]")
    if len(node.value) > MAX_COMMANDS:
        return reader.problem(node, key, f"has {len(node.value)} agents; at most {MAX_COMMANDS}")
    names = [_agent_name(reader, item, f"{key}[{index}]")
             for index, item in enumerate(node.value)]
    if any(name is MISSING for name in names):
        return MISSING
    return tuple(dict.fromkeys(str(name) for name in names))  # listed twice: once is enough


def _model(reader: FileReader, node: Node, key: str) -> object:
    model = reader.text(node, key, 100)
    if isinstance(model, str) and not MODEL_PATTERN.fullmatch(model):
        return reader.problem(node, key, f"{shown(model)} is not a model name (letters, digits "
                              "and . _ : / @ + -, such as claude-sonnet-4-5)")
    return model


def _commands(reader: FileReader, node: Node, key: str) -> object:
    return reader.texts(node, key, MAX_COMMANDS, MAX_COMMAND_CHARS, "command")


def _timeout(reader: FileReader, node: Node, key: str) -> object:
    value = reader.scalar(node, key)
    if value is MISSING:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        seconds: int | None = value
    elif isinstance(value, str):
        seconds = parse_duration(value)
    else:
        seconds = None
    if seconds is None or seconds <= 0:
        return reader.problem(node, key, f"{shown(value)} is not a duration (use 30m, 2h or "
                              "seconds)")
    most = reader.bounds.max_timeout_s
    if seconds > most:
        return reader.problem(node, key, f"{format_duration(seconds)} is above this Porter's "
                              f"maximum of {format_duration(most)} ({most} seconds)")
    return seconds


def _budget(reader: FileReader, node: Node, key: str) -> object:
    value = reader.scalar(node, key)
    if value is MISSING:
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or value <= 0:
        return reader.problem(node, key, f"{shown(value)} is not an amount in US dollars "
                              "above 0, such as 2.50")
    most = reader.bounds.max_budget_usd
    if most is not None and value > most:
        return reader.problem(node, key, f"{value:.2f} USD is above this Porter's maximum of "
                              f"{most:.2f} USD per run")
    return float(value)


def _branch_prefix(reader: FileReader, node: Node, key: str) -> object:
    prefix = reader.text(node, key, 1000)
    if not isinstance(prefix, str):
        return prefix
    problem = branch_prefix_problem(prefix)
    return reader.problem(node, key, f"{shown(prefix)} {problem}") if problem else prefix


def _draft(reader: FileReader, node: Node, key: str) -> object:
    value = reader.scalar(node, key)
    if value is MISSING or isinstance(value, bool):
        return value
    return reader.problem(node, key, f"must be true or false, not {described(value)}")


def _protected_paths(reader: FileReader, node: Node, key: str) -> object:
    patterns = reader.texts(node, key, MAX_PATTERNS, 1000, "pattern")
    if not isinstance(patterns, tuple):
        return patterns
    for index, pattern in enumerate(patterns):
        problem = path_pattern_problem(pattern)
        if problem:
            reader.problem(node.value[index], f"{key}[{index}]", f"{shown(pattern)} {problem}")
    return patterns


def _instructions(reader: FileReader, node: Node, key: str) -> object:
    return reader.text(node, key, MAX_INSTRUCTIONS_CHARS)


FIELDS: dict[str, Callable[[FileReader, Node, str], object]] = {
    "agent": _agent_name,
    "model": _model,
    "agents": _agents,
    "setup": _commands,
    "verify": _commands,
    "timeout": _timeout,
    "verify_timeout": _timeout,
    "budget_usd": _budget,
    "branch_prefix": _branch_prefix,
    "draft": _draft,
    "protected_paths": _protected_paths,
    "instructions": _instructions,
}


# -- wording ------------------------------------------------------------------------------


def shown(value: object, limit: int = 60) -> str:
    """A value quoted for a message, cut short: it comes from the file and goes on a comment."""
    text = value if isinstance(value, str) else json.dumps(value)
    cut = text[:limit] + ("…" if len(text) > limit else "")
    return json.dumps(cut, ensure_ascii=False)


def described(value: object) -> str:
    if isinstance(value, bool):
        return f"{str(value).lower()} (put it in quotes to make it text)"
    if isinstance(value, int | float):
        return f"the number {value} (put it in quotes to make it text)"
    return f"{shown(value)}"
