"""Comment text → a command, or a reply for the requester. Pure; never raises on user input.

Grammar (DESIGN.md "Comments Porter understands"):

    @porter <instruction>
    @porter <agent> [--model <m>] <instruction>
    @porter cancel | retry | status | help

The mention counts only at the start of a line, outside block quotes and code (fenced or indented),
so quoting an earlier request never re-triggers it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

CONTROL_WORDS = ("cancel", "retry", "status", "help")
MAX_INSTRUCTION_CHARS = 20_000
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,99}")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_WORD = re.compile(r"\S+")

ControlAction = Literal["cancel", "retry", "status", "help"]


@dataclass(frozen=True)
class Run:
    """Start an agent on an instruction. `agent` None means the default agent."""

    instruction: str
    agent: str | None = None
    model: str | None = None


@dataclass(frozen=True)
class Control:
    action: ControlAction


@dataclass(frozen=True)
class Reply:
    """The comment addressed Porter but could not be understood; tell the requester why."""

    text: str


Command = Run | Control | Reply


@lru_cache(maxsize=8)
def _mention(handle: str) -> re.Pattern[str]:
    return re.compile(rf" {{0,3}}@{re.escape(handle)}(?![A-Za-z0-9_-])(?:[:,])?", re.IGNORECASE)


@lru_cache(maxsize=8)
def _lowered(agents: frozenset[str]) -> frozenset[str]:
    return frozenset(name.lower() for name in agents)


def find_mention(body: str, handle: str) -> str | None:
    """The text after the first live mention (rest of its line and the lines below), or None."""
    mention = _mention(handle)
    lines = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    fence: str | None = None
    for index, line in enumerate(lines):
        fence_match = _FENCE.match(line)
        if fence is not None:
            marker = fence_match.group(1) if fence_match else ""
            closes = marker and marker[0] == fence[0] and len(marker) >= len(fence)
            if closes and not line.strip().strip(marker[0]):
                fence = None
            continue
        if fence_match:
            fence = fence_match.group(1)
            continue
        match = mention.match(line)
        if match is None:
            continue
        after = line[match.end() :]
        if after and not after[0].isspace() and line[match.end() - 1] not in ":,":
            continue
        return "\n".join([after.strip(), *lines[index + 1 :]]).strip()
    return None


def parse_comment(body: str, *, handle: str, agents: Collection[str]) -> Command | None:
    """None when the comment does not address Porter; otherwise what to do or what to say."""
    text = find_mention(body, handle)
    if text is None:
        return None
    first_line, _, more = text.partition("\n")
    words = list(_WORD.finditer(first_line))
    if not words:
        return Control("help") if not more.strip() else Run(instruction=_bounded(more.strip()))

    known = _lowered(agents if isinstance(agents, frozenset) else frozenset(agents))
    head = words[0].group(0)
    lowered = head.lower().rstrip(".!?")
    alone = len(words) == 1 and not more.strip()

    if lowered in CONTROL_WORDS and len(words) == 1:
        return Control(lowered)  # type: ignore[arg-type]

    agent: str | None = None
    position = 0
    if head.lower() in known:
        agent = head.lower()
        position = 1
    elif not head.startswith("--"):
        reply = _typo_reply(head, words, alone, known, handle)
        if reply is not None:
            return reply

    model: str | None = None
    while position < len(words) and words[position].group(0).startswith("--"):
        flag, _, value = words[position].group(0).partition("=")
        position += 1
        if flag != "--model":
            return Reply(
                f"I don't know the option `{_shown(flag)}`. "
                "The only option is `--model <name>`.\n\n" + usage(handle, known)
            )
        if not value:
            if position >= len(words):
                return Reply("`--model` needs a model name, e.g. `--model sonnet`.")
            value = words[position].group(0)
            position += 1
        if not _MODEL.fullmatch(value):
            return Reply(f"`{_shown(value)}` doesn't look like a model name.")
        model = value

    rest = first_line[words[position].start() :] if position < len(words) else ""
    instruction = "\n".join(part for part in (rest.strip(), more.strip()) if part)
    if not instruction:
        who = f"`{agent}`" if agent else "the agent"
        return Reply(
            f"What should {who} do? Add an instruction after the command.\n\n"
            + usage(handle, known)
        )
    return Run(instruction=_bounded(instruction), agent=agent, model=model)


def _typo_reply(
    head: str, words: list[re.Match[str]], alone: bool, known: frozenset[str], handle: str
) -> Reply | None:
    """Catch a mistyped agent or command word without mistaking ordinary instructions for one."""
    word = head.lower().rstrip(".!?:,")
    followed_by_flag = len(words) > 1 and words[1].group(0).startswith("--")
    if alone:
        close = difflib.get_close_matches(word, [*CONTROL_WORDS, *sorted(known)], n=1, cutoff=0.75)
        if close:
            return Reply(f"I don't know `{_shown(word)}`. Did you mean `{close[0]}`?\n\n"
                         + usage(handle, known))
        return None
    if followed_by_flag:
        close = difflib.get_close_matches(word, sorted(known), n=1, cutoff=0.6)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        return Reply(f"I don't know an agent called `{_shown(word)}`.{hint}\n\n"
                     + usage(handle, known))
    for name in sorted(known):
        if _is_transposition(word, name):
            return Reply(f"I don't know an agent called `{_shown(word)}`. Did you mean `{name}`?"
                         "\n\n" + usage(handle, known))
    return None


def _is_transposition(word: str, name: str) -> bool:
    """Two adjacent letters swapped: the typo that almost never spells a real word."""
    if len(word) != len(name) or word == name or len(name) < 4:
        return False
    diffs = [i for i, (a, b) in enumerate(zip(word, name, strict=True)) if a != b]
    return (
        len(diffs) == 2
        and diffs[1] == diffs[0] + 1
        and word[diffs[0]] == name[diffs[1]]
        and word[diffs[1]] == name[diffs[0]]
    )


def usage(handle: str, agents: Collection[str]) -> str:
    names = ", ".join(f"`{name}`" for name in sorted(agents)) or "none configured"
    return (
        "Usage:\n"
        f"- `@{handle} <instruction>`: the default agent works on it\n"
        f"- `@{handle} <agent> [--model <name>] <instruction>`: pick the agent ({names})\n"
        f"- `@{handle} cancel`, `@{handle} retry`, `@{handle} status`, `@{handle} help`"
    )


def _bounded(instruction: str) -> str:
    if len(instruction) <= MAX_INSTRUCTION_CHARS:
        return instruction
    return instruction[:MAX_INSTRUCTION_CHARS]


def _shown(text: str) -> str:
    """User text echoed back in a reply: short, no backticks or newlines to break the markup."""
    cleaned = re.sub(r"[`\s]+", " ", text).strip()
    return cleaned if len(cleaned) <= 40 else cleaned[:37] + "..."
