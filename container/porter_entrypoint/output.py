"""What the agent's output says: its summary, cost and usage (Claude's JSON result, or the tail
of its text), how it exited, and the commit message. Pure functions of strings.
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


def text_summary(text: str) -> str:
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()][-SUMMARY_LINES:]
    summary = "\n".join(lines)
    encoded = summary.encode()
    if len(encoded) > SUMMARY_TEXT_BYTES:
        summary = encoded[-SUMMARY_TEXT_BYTES:].decode("utf-8", "ignore")
    return summary


def interpret_output(output_kind: str, text: str) -> AgentReport:
    if output_kind == "claude-json":
        result = last_json_result(text)
        if result is not None:
            return _claude_report(result)
    return AgentReport(summary=text_summary(text))


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
        first = first_line(summary)
        report.error = f"the agent reported an error ({subtype})" + (f": {first}" if first else "")
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
