"""A run's verification results: the repository's `setup` and `verify` commands as the machine
ran them, validated, summarised and rendered for the pull request and the Check Run. Pure.

Everything here comes from the machine, so it is untrusted: the commands are the repository's
(`.porter.yml`), their output and JUnit files were written inside the agent's sandbox.

The completion report carries them under `"verification"` (any other key is refused)::

    {"commands": [                       # at most 50, in the order they ran
        {"phase": "setup" | "verify",
         "command": str,                 # as configured, at most 4 KiB (UTF-8)
         "exit_code": int | null,        # null: timed out, or not run (setup failed before it)
         "duration_s": number,           # finite, >= 0 (0 when not run)
         "timed_out": bool,              # true requires exit_code null
         "output_tail": str,             # last bytes of stdout+stderr, at most 8 KiB (UTF-8)
         "junit_xml": str | null}]}      # the JUnit file the command wrote, at most 1 MiB

All keys are required. Porter, not the machine, summarises the JUnit XML (`summarize_junit`), so
the summary's shape is Porter's own; a JUnit file Porter refuses leaves the command without one.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from porter.errors import BadRequest
from porter.neutralize import one_line

Phase = Literal["setup", "verify"]
Outcome = Literal["passed", "failed", "not_run", "error"]
Conclusion = Literal["success", "failure", "neutral"]
# How the pull request, the check run and the status comment say each outcome.
HEADLINES: dict[Outcome, str] = {
    "passed": "✅ passed", "failed": "❌ failed", "error": "⚠️ did not finish",
    "not_run": "➖ not run",
}

MAX_COMMANDS = 50
MAX_COMMAND_BYTES = 4 * 1024
MAX_TAIL_BYTES = 8 * 1024
MAX_REPORT_JUNIT = 1024 * 1024
MAX_JUNIT_BYTES = 5 * 1024 * 1024
MAX_TESTCASES = 100_000  # counted; the rest of a bigger file is ignored (`JunitSummary.cut`)
MAX_DEPTH = 32  # JUnit nests two or three levels; a deeper file is not JUnit
MAX_FAILING = 10
MAX_NAME = 200
MAX_MESSAGE = 200
_KEYS = {"phase", "command", "exit_code", "duration_s", "timed_out", "output_tail", "junit_xml"}
# Entity expansion (billion laughs) and external entities both need a document type declaration;
# JUnit files have none, so any is refused before the parser sees the text. defusedxml is not a
# dependency of Porter, so this guard stands in for it.
_DTD = re.compile(r"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)


class BadReport(BadRequest):
    """The machine's verification report does not have the documented shape."""


class BadJunit(BadRequest):
    """The JUnit file is not one Porter reads."""


@dataclass(frozen=True)
class FailingTest:
    name: str
    message: str


@dataclass(frozen=True)
class JunitSummary:
    tests: int
    failures: int
    errors: int
    skipped: int
    time_s: float | None
    failing: tuple[FailingTest, ...] = ()  # the first MAX_FAILING failures and errors
    cut: bool = False  # more than MAX_TESTCASES test cases: the counts cover the first ones

    @property
    def passed(self) -> int:
        return max(0, self.tests - self.failures - self.errors - self.skipped)

    def counts(self) -> str:
        """`12 passed, 1 failed, 2 skipped`: only the non-zero ones."""
        parts = [(self.passed, "passed"), (self.failures, "failed"), (self.errors, "errors"),
                 (self.skipped, "skipped")]
        text = ", ".join(f"{n} {word}" for n, word in parts if n) or "no tests"
        return text + (" (first tests only)" if self.cut else "")


@dataclass(frozen=True)
class CommandResult:
    phase: Phase
    command: str
    exit_code: int | None
    duration_s: float
    timed_out: bool
    output_tail: str
    junit: JunitSummary | None = None

    @property
    def ran(self) -> bool:
        return self.timed_out or self.exit_code is not None

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


@dataclass(frozen=True)
class Verification:
    results: tuple[CommandResult, ...]

    @property
    def outcome(self) -> Outcome:
        """`error` when a setup command did not pass (so verify did not run) or verification
        stopped partway, `not_run` when no verify command ran, `failed` when one did not pass,
        else `passed`."""
        if any(not r.passed for r in self.results if r.phase == "setup"):
            return "error"
        verify = [r for r in self.results if r.phase == "verify"]
        if not any(r.ran for r in verify):
            return "not_run"
        if any(r.ran and not r.passed for r in verify):
            return "failed"
        return "passed" if all(r.ran for r in verify) else "error"

    def dump(self) -> dict[str, Any]:
        """The run's verification artifact, as JSON-ready data."""
        return {"outcome": self.outcome, "results": [asdict(r) for r in self.results]}

    @classmethod
    def load(cls, data: Mapping[str, Any]) -> Verification:
        """What `dump` gave, read back from Porter's own store (a publish job's payload)."""
        results = []
        for item in data["results"]:
            junit = item.get("junit")
            if junit is not None:
                failing = tuple(FailingTest(**f) for f in junit.get("failing", ()))
                junit = JunitSummary(**{**junit, "failing": failing})
            results.append(CommandResult(**{**item, "junit": junit}))
        return cls(tuple(results))


def check_conclusion(verification: Verification) -> Conclusion:
    """The Check Run's conclusion: neutral when nothing was verified."""
    outcome = verification.outcome
    return "success" if outcome == "passed" else "neutral" if outcome == "not_run" \
        else "failure"


# -- the report -------------------------------------------------------------------------------


def parse_report(obj: object, *, redact: Callable[[str], str]) -> Verification:
    """The report's `verification` object, validated; `redact` (the run's redactor) is applied to
    every text the machine sent, before anything else sees it. Raises BadReport."""
    if not isinstance(obj, dict) or set(obj) != {"commands"}:
        raise BadReport("verification must be an object with exactly one key, commands")
    commands = obj["commands"]
    if not isinstance(commands, list) or len(commands) > MAX_COMMANDS:
        raise BadReport(f"verification.commands must be a list of at most {MAX_COMMANDS}")
    return Verification(tuple(_command(i, item, redact) for i, item in enumerate(commands)))


def _command(index: int, item: object, redact: Callable[[str], str]) -> CommandResult:
    where = f"verification.commands[{index}]"
    if not isinstance(item, dict):
        raise BadReport(f"{where} must be an object")
    if unknown := sorted(str(k)[:40] for k in set(item) - _KEYS):
        raise BadReport(f"{where} has unknown keys: {', '.join(unknown)}")
    if missing := sorted(_KEYS - set(item)):
        raise BadReport(f"{where} is missing {', '.join(missing)}")
    phase = item["phase"]
    if phase not in ("setup", "verify"):
        raise BadReport(f"{where}.phase must be setup or verify")
    command = _string(item, "command", MAX_COMMAND_BYTES, where)
    tail = _string(item, "output_tail", MAX_TAIL_BYTES, where)
    exit_code, timed_out, seconds = item["exit_code"], item["timed_out"], item["duration_s"]
    if exit_code is not None and (not isinstance(exit_code, int) or isinstance(exit_code, bool)
                                  or not -(2**31) <= exit_code < 2**32):
        raise BadReport(f"{where}.exit_code must be an integer or null")
    if not isinstance(timed_out, bool):
        raise BadReport(f"{where}.timed_out must be true or false")
    if timed_out and exit_code is not None:
        raise BadReport(f"{where}.exit_code must be null when timed_out is true")
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) \
            or not math.isfinite(seconds) or seconds < 0:
        raise BadReport(f"{where}.duration_s must be a finite number >= 0")
    junit = None
    if item["junit_xml"] is not None:
        xml = _string(item, "junit_xml", MAX_REPORT_JUNIT, where)
        try:
            junit = _redacted(summarize_junit(xml.encode()), redact)
        except BadJunit:
            junit = None  # the repository's test run wrote it: not the machine's fault
    return CommandResult(phase=phase, command=redact(command), exit_code=exit_code,
                         duration_s=float(seconds), timed_out=timed_out,
                         output_tail=redact(tail), junit=junit)


def _string(item: Mapping[str, Any], key: str, limit: int, where: str) -> str:
    value = item[key]
    if not isinstance(value, str) or len(value.encode(errors="replace")) > limit:
        raise BadReport(f"{where}.{key} must be a string of at most {limit} bytes")
    return value


def _redacted(summary: JunitSummary, redact: Callable[[str], str]) -> JunitSummary:
    failing = tuple(FailingTest(redact(f.name), redact(f.message)) for f in summary.failing)
    return JunitSummary(summary.tests, summary.failures, summary.errors, summary.skipped,
                        summary.time_s, failing, summary.cut)


# -- JUnit ------------------------------------------------------------------------------------


def summarize_junit(xml_bytes: bytes) -> JunitSummary:
    """Counts and the first failing tests of a JUnit file (`<testsuites>` or a lone
    `<testsuite>`). The file is untrusted: size, DTDs, depth and test cases are bounded."""
    if len(xml_bytes) > MAX_JUNIT_BYTES:
        raise BadJunit(f"the JUnit file is over {MAX_JUNIT_BYTES} bytes")
    try:
        # Decoded here, so a UTF-16 file cannot hide a DOCTYPE from the guard; the parser is
        # fed text, which makes it ignore the encoding the file declares.
        text = xml_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise BadJunit("the JUnit file is not UTF-8") from None
    if _DTD.search(text):
        raise BadJunit("the JUnit file declares a DTD or entities")
    parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("start", "end"))
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failing: list[FailingTest] = []
    root: ET.Element | None = None
    depth, cut = 0, False
    try:
        for item in _events(parser, text):
            event, *rest = item
            element = rest[0] if rest else None
            if not isinstance(element, ET.Element):  # only start and end were asked for
                continue
            if event == "start":
                depth += 1
                root = element if root is None else root
                if depth > MAX_DEPTH:
                    raise BadJunit("the JUnit file nests too deep")
                continue
            depth -= 1
            if element.tag != "testcase":
                continue
            if counts["tests"] >= MAX_TESTCASES:
                cut = True
            else:
                _count(element, counts, failing)
            element.clear()  # its children are counted; only the suite's attributes matter
    except ET.ParseError as exc:
        raise BadJunit(f"the JUnit file is not well-formed XML: {exc}") from None
    if root is None or root.tag not in ("testsuites", "testsuite"):
        raise BadJunit("the JUnit file's root is neither testsuites nor testsuite")
    return JunitSummary(failing=tuple(failing), time_s=_time(root), cut=cut, **counts)


def _events(parser: ET.XMLPullParser[ET.Element], text: str) -> Iterator[Any]:
    """The parser's events, fed in chunks so that a bad file stops early and counted test
    cases are cleared before the rest is read."""
    for start in range(0, len(text), 65_536):
        parser.feed(text[start:start + 65_536])
        yield from parser.read_events()
    parser.close()
    yield from parser.read_events()


def _count(case: ET.Element, counts: dict[str, int], failing: list[FailingTest]) -> None:
    counts["tests"] += 1
    problem = None
    for child in case:
        if child.tag in ("failure", "error"):
            counts["failures" if child.tag == "failure" else "errors"] += 1
            problem = problem if problem is not None else child
        elif child.tag == "skipped":
            counts["skipped"] += 1
    if problem is not None and len(failing) < MAX_FAILING:
        name = ".".join(p for p in (case.get("classname", ""), case.get("name", "")) if p)
        message = problem.get("message") or (problem.text or "").strip().split("\n")[0]
        failing.append(FailingTest(one_line(name or "(unnamed test)", MAX_NAME),
                                   one_line(message, MAX_MESSAGE)))


def _time(root: ET.Element) -> float | None:
    """The run's time: the root's `time`, else the sum of its suites' (pytest writes it on the
    suite inside `<testsuites>`)."""
    own = _seconds(root.get("time"))
    if own is not None or root.tag == "testsuite":
        return own
    times = [_seconds(suite.get("time")) for suite in root.findall("testsuite")]
    known = [t for t in times if t is not None]
    return sum(known) if known else None


def _seconds(value: str | None) -> float | None:
    try:
        seconds = float(value or "")
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None

