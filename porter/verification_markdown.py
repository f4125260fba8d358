"""The verification table of a pull request's body and a Check Run's output, in GitHub's Markdown.
Pure.

Every text in it came from the machine (a command, its output, a test's name), so each is
neutralised by the caller's function and placed where Markdown cannot end it early: code spans
with a longer backtick run than any inside, table cells with every pipe escaped, fences longer
than any backtick run in the output.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from porter.neutralize import one_line
from porter.status import duration
from porter.verification import CommandResult, Verification

MAX_MARKDOWN = 65_535  # GitHub's limit for a check run's summary
SHOWN_COMMAND = 120  # characters of a command in its table cell
SHOWN_TAIL = 3_000  # characters of a failed command's output shown under the table
_BACKTICKS = re.compile(r"`+")
_JOINER = "\u2060"


def markdown_table(verification: Verification, *, neutralize: Callable[[str], str],
                   limit: int = MAX_MARKDOWN) -> str:
    """The verification table for the pull request body and the Check Run summary, then the
    output of each failed command; at most `limit` characters, cut with a note."""
    if not verification.results:
        return "_No verification commands are configured._"
    header = "| Phase | Command | Result | Duration | Tests |\n|---|---|---|---|---|"
    rows = [_row(r, neutralize) for r in verification.results]
    blocks = [_output(r, neutralize) for r in verification.results if r.ran and not r.passed]
    note = "\n\n_… cut short: the run's verification artifact has it all._"
    body, budget = header, limit - len(note) - 40  # 40: room for "… and N more commands"
    for i, row in enumerate(rows):
        if len(body) + 1 + len(row) > budget:
            return body + f"\n\n_… and {len(rows) - i} more commands._" + note
        body += "\n" + row
    for block in blocks:
        if len(body) + 2 + len(block) > budget:
            return body + note
        body += "\n\n" + block
    return body


def _row(result: CommandResult, neutralize: Callable[[str], str]) -> str:
    if result.timed_out:
        mark = "⏱ timed out"
    elif result.exit_code is None:
        mark = "➖ not run"
    else:
        mark = "✅" if result.passed else f"❌ exit {result.exit_code}"
    tests = _cell(neutralize(result.junit.counts())) if result.junit else "—"
    took = duration(result.duration_s) if result.ran else "—"
    span = code_span(result.command, neutralize)
    return f"| {result.phase} | {span} | {mark} | {took} | {tests} |"


def code_span(text: str, neutralize: Callable[[str], str], limit: int = SHOWN_COMMAND, *,
              cell: bool = True) -> str:
    """`text` on one line as a code span, whatever backticks, pipes or backslashes it holds:
    the delimiter is a longer backtick run than any inside, and in a table `cell` every pipe
    is escaped so that GitHub's table parser cannot end the cell at it."""
    line = neutralize(one_line(text, limit))
    line = _cell(line) if cell else line
    runs = [len(run) for run in _BACKTICKS.findall(line)]
    fence = "`" * (max(runs, default=0) + 1)
    if not line:
        return "` `"  # `` would be a bare backtick run, not an empty span
    # A span that starts or ends with a backtick needs a space, which CommonMark strips again.
    pad = " " if line.startswith("`") or line.endswith("`") else ""
    return f"{fence}{pad}{line}{pad}{fence}"


def _cell(text: str) -> str:
    """`text` safe in a table cell: GitHub splits a row at each pipe not escaped by a backslash,
    even inside code, so a pipe gets one, and a backslash already before it is parted from it
    by an invisible joiner (else `\\|` would read as an escaped backslash, then a bare pipe)."""
    return text.replace("\\|", "\\" + _JOINER + "|").replace("|", "\\|")


def _output(result: CommandResult, neutralize: Callable[[str], str]) -> str:
    tail = neutralize(result.output_tail.rstrip())
    cut = len(tail) > SHOWN_TAIL
    if cut:
        tail = "…" + tail[-SHOWN_TAIL:]
    runs = [len(run) for run in _BACKTICKS.findall(tail)]
    fence = "`" * max(3, max(runs, default=0) + 1)
    title = f"**Output of {code_span(result.command, neutralize, cell=False)}**" \
        + (" (last lines)" if cut else "")
    lines = [title]
    if result.junit and result.junit.failing:
        lines += [f"- {code_span(f.name, neutralize, cell=False)}: {neutralize(f.message)}"
                  for f in result.junit.failing]
    return "\n".join(lines) + f"\n\n{fence}\n{tail or '(no output)'}\n{fence}"

