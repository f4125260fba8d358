"""Comment text → a command, or a reply for the requester. Pure; never raises on user input.

Grammar (docs/design.md "Comments Porter understands"):

    @porter <instruction>
    @porter <agent> [--model <m>] <instruction>
    @porter cancel | retry | status | help

The mention counts only at the start of a line, outside block quotes and code (fenced or indented),
so quoting an earlier request never re-triggers it, and outside HTML comments, which GitHub does not
show: nobody could see the request or what it asks. What a comment hides is left out of the
instruction too.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from porter.payloads import Payload

CONTROL_WORDS = ("cancel", "retry", "status", "help")
MAX_INSTRUCTION_CHARS = 20_000
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,99}")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_WORD = re.compile(r"\S+")
_MARKUP = re.compile(r"<!--|`+")
_TICKS = re.compile(r"`+")

ControlAction = Literal["cancel", "retry", "status", "help"]


@dataclass(frozen=True)
class Run:
    """Start an agent on an instruction. `agent` None means the default agent."""

    instruction: str
    agent: str | None = None
    model: str | None = None


@dataclass(frozen=True)
class ControlCommand:
    """Cancel, retry, report on or explain the task of the thread (porter/control.py does it)."""

    action: ControlAction


@dataclass(frozen=True)
class Reply:
    """The comment addressed Porter but could not be understood; tell the requester why."""

    text: str


Command = Run | ControlCommand | Reply


@lru_cache(maxsize=8)
def _mention(handle: str) -> re.Pattern[str]:
    # ASCII case-folding only: GitHub does not read "@\u212ait" (a Kelvin sign) as a mention of
    # "kit", and the webhook's raw-bytes pre-filter (webhooks.may_mention) would not find it.
    return re.compile(rf" {{0,3}}@{re.escape(handle)}(?![A-Za-z0-9_-])(?:[:,])?",
                      re.IGNORECASE | re.ASCII)


@lru_cache(maxsize=8)
def _lowered(agents: frozenset[str]) -> frozenset[str]:
    return frozenset(name.lower() for name in agents)


def find_mention(body: str, handle: str) -> str | None:
    """The text after the first live mention (rest of its line and the lines below), or None."""
    mention = _mention(handle)
    lines = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    shown = list(_shown_lines(lines))
    for index, (line, live) in enumerate(shown):
        match = mention.match(line) if live and line is not None else None
        if line is None or match is None:
            continue
        after = line[match.end() :]
        if after and not after[0].isspace() and line[match.end() - 1] not in ":,":
            continue
        rest = [text for text, _ in shown[index + 1 :] if text is not None]
        return "\n".join([after.strip(), *rest]).strip()
    return None


def _shown_lines(lines: list[str]) -> Iterator[tuple[str | None, bool]]:
    """Each line as GitHub shows it, without HTML comments (None: a comment took all of it), and
    whether a mention may start it (it is not code and does not begin inside a comment)."""
    fence: str | None = None
    hidden = False
    for line in lines:
        if hidden:
            # A comment ends at the first "-->" wherever it is, even inside backticks.
            end = line.find("-->")
            if end < 0:
                yield None, False
                continue
            text, hidden = _without_comments(line[end + 3 :])
            yield text if text.strip() else None, False
            continue
        fence_match = _FENCE.match(line)
        if fence is not None:
            marker = fence_match.group(1) if fence_match else ""
            closes = marker and marker[0] == fence[0] and len(marker) >= len(fence)
            if closes and not line.strip().strip(marker[0]):
                fence = None
            yield line, False
            continue
        if fence_match:
            fence = fence_match.group(1)
            yield line, False
            continue
        text, hidden = _without_comments(line)
        yield text if text.strip() or not line.strip() else None, True


def _without_comments(line: str) -> tuple[str, bool]:
    """``line`` with each HTML comment replaced by a space, and whether the last one is still
    open at its end. The space keeps "@por<!-- -->ter" from becoming a mention GitHub never
    linked (and that the raw-bytes pre-filter, webhooks.may_mention, rightly never finds).

    A ``<!--`` inside a code span is shown as text. Of two readings, the one that hides more
    wins: ``<!-->`` and ``<!--->`` open a comment here (a browser would close them at once), so
    that what Porter acts on is never hidden, at the price of ignoring a visible request.
    """
    if "<!--" not in line:
        return line, False
    # A backtick run opens a code span if a later run of the same length closes it.
    closers: dict[int, int] = {}
    later: dict[int, int] = {}
    for run in reversed(list(_TICKS.finditer(line))):
        length = run.end() - run.start()
        if length in later:
            closers[run.start()] = later[length]
        later[length] = run.end()
    pieces: list[str] = []
    shown_from = at = 0
    while (token := _MARKUP.search(line, at)) is not None:
        if token.group() == "<!--":
            pieces += [line[shown_from : token.start()], " "]
            end = line.find("-->", token.end())
            if end < 0:
                return "".join(pieces), True
            shown_from = at = end + 3
        else:  # a code span is skipped whole; a backtick run nobody closes is text
            at = closers.get(token.start(), token.end())
    pieces.append(line[shown_from:])
    return "".join(pieces), False


def parse_comment(body: str, *, handle: str, agents: Collection[str]) -> Command | None:
    """None when the comment does not address Porter; otherwise what to do or what to say."""
    text = find_mention(body, handle)
    if text is None:
        return None
    first_line, _, more = text.partition("\n")
    words = list(_WORD.finditer(first_line))
    if not words:
        if not more.strip():
            return ControlCommand("help")
        return Run(instruction=_bounded(more.strip()))

    known = _lowered(agents if isinstance(agents, frozenset) else frozenset(agents))
    head = words[0].group(0)
    lowered = head.lower().rstrip(".!?")
    alone = len(words) == 1 and not more.strip()

    if lowered in CONTROL_WORDS and len(words) == 1:
        return ControlCommand(lowered)  # type: ignore[arg-type]

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


@dataclass(frozen=True)
class CommandJob(Payload):
    """A control comment to answer (or a comment to reply to): written at intake with the
    delivery, read by porter/control.py."""

    kind = "command"
    repo: str
    issue_number: int
    comment_kind: str
    comment_id: int
    requester: str
    delivery_id: str
    action: str  # a ControlAction, or "reply"
    text: str | None = None  # what to reply, for "reply"

    @property
    def comment_key(self) -> str:
        return f"{self.comment_kind}:{self.comment_id}"
