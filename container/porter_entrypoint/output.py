"""What the agent's output says: its summary, cost and usage (Claude's JSON result, the final
message it wrote to its summary file, or the tail of its text), an API error it stopped on, how
it exited, and the commit message. Pure functions of strings.

Text that becomes a summary or an error message is first made plain (`clean_text`): CLIs print
colours and cursor moves even with TERM=dumb and NO_COLOR (OpenCode does, §E.2).
"""

from __future__ import annotations

import json
import re
import signal
from dataclasses import dataclass
from typing import Any

SUMMARY_LINES = 40
SUMMARY_TEXT_BYTES = 8 * 1024
SUMMARY_RESULT_BYTES = 16 * 1024
COMMIT_SUBJECT_CHARS = 72
API_ERROR_WINDOW = 12  # an API error counts only among the output's last non-blank lines
API_ERROR_CHARS = 300

# ESC sequences: CSI (colours, cursor moves), OSC (titles, links), DCS/SOS/PM/APC strings, and
# the two- and three-byte ones; then every control character but newline and tab.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b[ -/]*[0-~]"
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Aider reports a failed model call through litellm, then exits 0 (§E.2): the exception line
# (`litellm.AuthenticationError: AnthropicException - …`) and aider's own hint for some.
_LITELLM_ERROR = re.compile(r"^litellm\.[A-Za-z]*Error:")
_API_HINTS = (
    "The API provider is not able to authenticate you",
    "The API provider's servers are down or overloaded",
    "The API provider has rate limited you",
    "Permission was denied. Check your API key",
)


@dataclass
class AgentReport:
    summary: str
    structured: bool = False  # the summary came from the agent's own result object
    cost_usd: float | None = None
    usage: dict[str, Any] | None = None
    error: str | None = None


def last_json_result(text: str) -> dict[str, Any] | None:
    """The last JSON object in the output, preferring Claude's `"type": "result"` object."""
    decoder = json.JSONDecoder()
    starts = [m.start() for m in re.finditer(r"(?m)^[ \t]*\{", text)]
    fallback: dict[str, Any] | None = None
    for start in reversed(starts[-200:]):
        try:
            obj, _ = decoder.raw_decode(text, text.index("{", start))
        except ValueError:
            continue
        if isinstance(obj, dict):
            if obj.get("type") == "result":
                return obj
            fallback = fallback or obj
    return fallback


def clean_text(text: str) -> str:
    """What a terminal would show, as plain text: escape sequences and control characters
    gone, and a carriage return's rewrite of a line kept instead of the line."""
    text = _ESCAPES.sub("", text).replace("\r\n", "\n")
    lines = []
    for line in text.split("\n"):
        rewrites = [part for part in line.split("\r") if part]
        lines.append(rewrites[-1] if rewrites else "")
    return _CONTROLS.sub("", "\n".join(lines))


def text_summary(text: str) -> str:
    lines = [ln.rstrip() for ln in clean_text(text).splitlines() if ln.strip()][-SUMMARY_LINES:]
    summary = "\n".join(lines)
    encoded = summary.encode()
    if len(encoded) > SUMMARY_TEXT_BYTES:
        summary = encoded[-SUMMARY_TEXT_BYTES:].decode("utf-8", "ignore")
    return summary


def interpret_output(output_kind: str, text: str, *, prompt: str = "",
                     final_message: str | None = None) -> AgentReport:
    """The report from the agent's own result object, else its final message (what it wrote
    to its summary file), else the tail of its output without the prompt in it: some CLIs echo
    the prompt they were given, and a summary is no place for it."""
    if output_kind == "claude-json":
        result = last_json_result(text)
        if result is not None:
            return _claude_report(result)
    final = clean_text(final_message or "").strip()
    if final:
        summary = final.encode()[:SUMMARY_RESULT_BYTES].decode("utf-8", "ignore")
        return AgentReport(summary=summary, structured=True)
    echoed = prompt.strip()
    if echoed:
        text = text.replace(echoed, "")
    return AgentReport(summary=text_summary(text))


def api_error(text: str) -> str | None:
    """The API error the agent's output ends on: its last litellm exception line (or aider's
    hint) among the last few lines; None otherwise. Conservative: aider prints "Retrying in …"
    after an error it will retry and not after the one it gives up on, so an error followed by
    that line, or by more than a few lines of anything, was not the end of the run."""
    lines = [ln.strip() for ln in clean_text(text).splitlines() if ln.strip()]
    window = lines[-API_ERROR_WINDOW:]
    errors = [i for i, ln in enumerate(window)
              if _LITELLM_ERROR.match(ln) or ln.startswith(_API_HINTS)]
    if not errors or any(ln.startswith("Retrying in") for ln in window[errors[-1]:]):
        return None
    exceptions = [window[i] for i in errors if _LITELLM_ERROR.match(window[i])]
    found = exceptions[-1] if exceptions else window[errors[-1]]
    return found if len(found) <= API_ERROR_CHARS else found[:API_ERROR_CHARS - 1] + "…"


def _claude_report(result: dict[str, Any]) -> AgentReport:
    summary = result.get("result")
    summary = summary if isinstance(summary, str) else ""
    summary = summary.encode()[:SUMMARY_RESULT_BYTES].decode("utf-8", "ignore")
    cost = result.get("total_cost_usd", result.get("total_cost"))
    usage = result.get("usage")
    report = AgentReport(
        summary=summary,
        structured=True,
        cost_usd=float(cost)
        if isinstance(cost, int | float) and not isinstance(cost, bool)
        else None,
        usage=usage if isinstance(usage, dict) else None,
    )
    if result.get("is_error") is True:
        subtype = str(result.get("subtype") or "error")
        first = first_line(clean_text(summary))
        if subtype == "success":
            # Claude Code's API failures: retries spent, it ends with is_error and "success".
            detail = re.sub(r"(?i)^api error:\s*", "", first) or "no detail given"
            report.error = f"Claude Code stopped on an API error: {detail}"
        else:
            report.error = (f"the agent reported an error ({subtype})"
                            + (f": {first}" if first else ""))
    return report


def first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


def last_line(text: str) -> str:
    return next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "")


def describe_exit(name: str, returncode: int) -> str:
    if returncode < 0:
        try:
            signame = signal.Signals(-returncode).name
        except ValueError:
            signame = f"signal {-returncode}"
        return f"the agent ({name}) was killed by {signame} ({-returncode})"
    return f"the agent ({name}) exited with code {returncode}"


def exit_code_of(returncode: int | None) -> int | None:
    if returncode is None:
        return None
    return 128 - returncode if returncode < 0 else returncode


def commit_message(report: AgentReport, prompt: str) -> str:
    subject = first_line(report.summary) if report.structured else ""
    if not subject:
        subject = "Porter: " + (first_line(prompt) or "changes")
    if len(subject) > COMMIT_SUBJECT_CHARS:
        subject = subject[: COMMIT_SUBJECT_CHARS - 1] + "…"
    return subject
