"""Verification results: the machine's report validated, JUnit files summarised safely, and the
table the pull request and the Check Run show, which untrusted text cannot break."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from porter import verification as v
from porter.neutralize import JOINER, neutralize
from porter.verification import (
    BadJunit,
    BadReport,
    CommandResult,
    JunitSummary,
    Verification,
    check_conclusion,
    parse_report,
    summarize_junit,
)
from porter.verification_markdown import MAX_MARKDOWN, markdown_table

LONE_SUITE = b"""<?xml version="1.0"?>
<testsuite name="unit" tests="4" time="1.5">
  <testcase classname="app.Cart" name="adds"/>
  <testcase classname="app.Cart" name="totals"><failure message="expected 3, got 4"/></testcase>
  <testcase classname="app.Cart" name="saves"><error>IOError: disk full
at save()</error></testcase>
  <testcase classname="app.Cart" name="later"><skipped/></testcase>
</testsuite>"""


def command(**changes: Any) -> dict[str, Any]:
    item = {"phase": "verify", "command": "pytest -q", "exit_code": 0, "duration_s": 3.5,
            "timed_out": False, "output_tail": "2 passed", "junit_xml": None}
    return {**item, **changes}


def result(phase: str = "verify", exit_code: int | None = 0, *, timed_out: bool = False,
           command: str = "make test", tail: str = "", junit: JunitSummary | None = None,
           ) -> CommandResult:
    return CommandResult(phase=phase, command=command, exit_code=exit_code,  # type: ignore[arg-type]
                         duration_s=2.0, timed_out=timed_out, output_tail=tail, junit=junit)


def no_redaction(text: str) -> str:
    return text


# -- the report -------------------------------------------------------------------------------


def test_a_good_report_is_read_and_every_machine_text_is_redacted() -> None:
    report = {"commands": [
        command(phase="setup", command="pip install -e . # token sekrit", output_tail="ok"),
        command(exit_code=1, output_tail="FAILED: sekrit leaked", junit_xml=LONE_SUITE.decode()),
    ]}
    parsed = parse_report(report, redact=lambda text: text.replace("sekrit", "[redacted]"))
    setup, verify = parsed.results
    assert (setup.phase, setup.exit_code, setup.duration_s) == ("setup", 0, 3.5)
    assert setup.command == "pip install -e . # token [redacted]"
    assert verify.output_tail == "FAILED: [redacted] leaked"
    assert verify.junit is not None and verify.junit.failures == 1
    assert parsed.outcome == "failed"


@pytest.mark.parametrize(("change", "named"), [
    ({"phase": "build"}, "phase"),
    ({"command": 42}, "command"),
    ({"command": "x" * 4097}, "command"),
    ({"command": "é" * 2049}, "command"),  # 4098 bytes in UTF-8
    ({"exit_code": "0"}, "exit_code"),
    ({"exit_code": True}, "exit_code"),
    ({"exit_code": 2**40}, "exit_code"),
    ({"duration_s": -1}, "duration_s"),
    ({"duration_s": float("nan")}, "duration_s"),
    ({"duration_s": float("inf")}, "duration_s"),
    ({"duration_s": "3"}, "duration_s"),
    ({"timed_out": 1}, "timed_out"),
    ({"timed_out": True, "exit_code": 137}, "exit_code"),
    ({"output_tail": None}, "output_tail"),
    ({"output_tail": "x" * 8193}, "output_tail"),
    ({"junit_xml": b"<testsuite/>"}, "junit_xml"),
    ({"junit_xml": "x" * (1024 * 1024 + 1)}, "junit_xml"),
    ({"stdout": "…"}, "stdout"),
])
def test_each_bad_field_is_refused_by_name(change: dict[str, Any], named: str) -> None:
    with pytest.raises(BadReport, match=rf"commands\[1\]\.?.*{named}"):
        parse_report({"commands": [command(), command(**change)]}, redact=no_redaction)


def test_a_missing_field_is_refused_by_name() -> None:
    item = command()
    del item["duration_s"]
    with pytest.raises(BadReport, match=r"commands\[0\] is missing duration_s"):
        parse_report({"commands": [item]}, redact=no_redaction)


@pytest.mark.parametrize("report", [
    None, [], {"commands": "pytest"}, {"commands": [], "extra": 1},
    {"commands": [command()] * 51}, {"commands": ["pytest"]},
])
def test_a_report_of_the_wrong_shape_is_refused(report: object) -> None:
    with pytest.raises(BadReport, match="verification"):
        parse_report(report, redact=no_redaction)


def test_a_junit_file_porter_refuses_leaves_the_command_without_a_summary() -> None:
    bomb = '<!DOCTYPE x [<!ENTITY a "aaaa">]><testsuite tests="1">&a;</testsuite>'
    parsed = parse_report({"commands": [command(junit_xml=bomb)]}, redact=no_redaction)
    assert parsed.results[0].junit is None
    assert parsed.outcome == "passed"


# -- JUnit ------------------------------------------------------------------------------------


def test_a_real_pytest_junit_file_is_summarised(tmp_path: Path) -> None:
    (tmp_path / "test_tiny.py").write_text(
        "def test_ok():\n    assert 1\n\n"
        "def test_bad():\n    assert 1 == 2, 'one is not two'\n")
    junit = tmp_path / "junit.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    "-p", "no:xdist", f"--junitxml={junit}", "test_tiny.py"],
                   cwd=tmp_path, capture_output=True, check=False, timeout=120)
    assert junit.read_bytes().lstrip().startswith(b"<?xml")
    assert b"<testsuites" in junit.read_bytes()  # pytest's shape: a suite inside testsuites
    summary = summarize_junit(junit.read_bytes())
    assert (summary.tests, summary.failures, summary.errors, summary.skipped) == (2, 1, 0, 0)
    assert summary.time_s is not None and summary.time_s >= 0
    [failing] = summary.failing
    assert failing.name == "test_tiny.test_bad"
    assert "one is not two" in failing.message and "\n" not in failing.message
    assert summary.counts() == "1 passed, 1 failed"


def test_a_lone_testsuite_is_summarised() -> None:
    summary = summarize_junit(LONE_SUITE)
    assert (summary.tests, summary.failures, summary.errors, summary.skipped) == (4, 1, 1, 1)
    assert summary.time_s == 1.5
    assert [(f.name, f.message) for f in summary.failing] == [
        ("app.Cart.totals", "expected 3, got 4"), ("app.Cart.saves", "IOError: disk full")]


def test_only_the_first_failing_tests_are_named() -> None:
    cases = "".join(f'<testcase name="t{i}"><failure message="m{i}"/></testcase>'
                    for i in range(30))
    summary = summarize_junit(f"<testsuites><testsuite>{cases}</testsuite></testsuites>".encode())
    assert summary.failures == 30
    assert [f.name for f in summary.failing] == [f"t{i}" for i in range(v.MAX_FAILING)]


@pytest.mark.parametrize("xml", [
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
    b"<testsuite><testcase name='&lol2;'/></testsuite>",
    b'<!doctype testsuite SYSTEM "file:///etc/passwd"><testsuite/>',
    b"<testsuite><!ENTITY x 'y'></testsuite>",
    # UTF-16 would hide the declaration from a search of the raw bytes.
    '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY b "c">]><testsuite/>'
    .encode("utf-16"),
])
def test_dtds_and_entities_are_refused(xml: bytes) -> None:
    with pytest.raises(BadJunit):
        summarize_junit(xml)


@pytest.mark.parametrize("xml", [
    b"<testsuite>" + b" " * (5 * 1024 * 1024) + b"</testsuite>",  # over the size cap
    b"<a>" * 100 + b"</a>" * 100,  # deeper than any JUnit file
    b"<html><body/></html>",
    b"<testsuite><testcase>",
    b"",
])
def test_oversize_deep_or_foreign_files_are_refused(xml: bytes) -> None:
    with pytest.raises(BadJunit):
        summarize_junit(xml)


def test_test_cases_past_the_cap_are_not_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(v, "MAX_TESTCASES", 3)
    cases = '<testcase name="t"/>' * 10
    summary = summarize_junit(f"<testsuite>{cases}</testsuite>".encode())
    assert (summary.tests, summary.cut) == (3, True)
    assert summary.counts() == "3 passed (first tests only)"


# -- the table --------------------------------------------------------------------------------


def cells(row: str) -> list[str]:
    """A table row split as GitHub splits it: at each pipe no backslash escapes."""
    found, cell, i = [], "", 0
    while i < len(row):
        if row[i] == "\\" and i + 1 < len(row):
            cell, i = cell + row[i:i + 2], i + 2
            continue
        if row[i] == "|":
            found.append(cell)
            cell = ""
        else:
            cell += row[i]
        i += 1
    found.append(cell)
    assert found[0] == "" and found[-1] == "", "a row starts and ends with a pipe"
    return [c.strip() for c in found[1:-1]]


def span_text(cell: str, *, table: bool = True) -> str:
    """What exactly one code span shows (in a table cell, whose `\\|` GitHub reads as `|`);
    fails when the span ends early."""
    opening = re.match("`+", cell)
    assert opening is not None, f"no code span: {cell!r}"
    n = len(opening.group())
    assert len(cell) >= 2 * n and cell.endswith("`" * n) and cell[-n - 1] != "`"
    inner = cell[n:-n]
    assert all(len(run) != n for run in re.findall("`+", inner)), "the span closes early"
    if inner.startswith(" ") and inner.endswith(" ") and inner.strip(" "):
        inner = inner[1:-1]
    return (inner.replace("\\|", "|") if table else inner).replace(JOINER, "")


def test_backticks_and_pipes_in_a_command_stay_inside_its_code_span() -> None:
    cmd = "echo `date` | grep ``x`` \\| tr a b`"
    table = markdown_table(Verification((result(command=cmd),)), neutralize=neutralize)
    header, _, row = table.splitlines()
    assert len(cells(header)) == 5
    phase, span, mark, _, tests = cells(row)
    assert (phase, mark, tests) == ("verify", "✅", "—")
    assert span_text(span) == cmd

    failed = markdown_table(Verification((result(exit_code=1, command=cmd),)),
                            neutralize=neutralize)
    title = next(line for line in failed.splitlines() if line.startswith("**Output of "))
    # Outside a table a backslash stays literal in code, so the pipe must not get one.
    assert span_text(title.removeprefix("**Output of ").removesuffix("**"), table=False) == cmd


def test_a_failed_commands_output_cannot_end_its_fence() -> None:
    tail = "ok\n```\n@octocat <!-- hidden\n````\nFAILED test_x\n"
    verify = result(exit_code=1, command="make check", tail=tail,
                    junit=summarize_junit(LONE_SUITE))
    table = markdown_table(Verification((result(phase="setup"), verify)), neutralize=neutralize)
    lines = table.splitlines()
    assert cells(lines[3])[2] == "❌ exit 1" and cells(lines[3])[4] == "1 passed, 1 failed, " \
        "1 errors, 1 skipped"
    start = next(i for i, line in enumerate(lines) if re.fullmatch("`{3,}", line))
    fence = lines[start]
    end = next(i for i in range(start + 1, len(lines))
               if re.fullmatch(rf" {{0,3}}`{{{len(fence)},}}\s*", lines[i]))
    shown = "\n".join(lines[start + 1:end])
    assert shown.replace(JOINER, "") == tail.rstrip()
    assert "@" + JOINER in shown and "<" + JOINER in shown  # no ping, no hidden rest
    assert end == len(lines) - 1  # the fence closes at the end, with nothing swallowed
    assert "`app.Cart.totals`: expected 3, got 4" in table


def test_a_large_report_is_cut_to_the_bound_with_a_note() -> None:
    big = tuple(result(exit_code=2, command=f"step {i}", tail=("x" * 79 + "\n") * 100)
                for i in range(50))
    table = markdown_table(Verification(big), neutralize=neutralize)
    assert len(table) <= MAX_MARKDOWN
    assert table.endswith("the run's verification artifact has it all._")
    assert len(table.split("\n| verify |")) == 51  # every row is there; some outputs are not
    fences = [line for line in table.splitlines() if re.fullmatch("`{3,}", line)]
    assert fences and len(fences) % 2 == 0  # no block is left open

    short = markdown_table(Verification(big), neutralize=neutralize, limit=1_000)
    assert len(short) <= 1_000
    assert re.search(r"_… and \d+ more commands\._", short)


HOSTILE = st.lists(st.sampled_from(["`", "``", "```", "|", "\\", " ", "\n", "@a", "<", "&", "x"])
                   | st.text(max_size=3), max_size=30).map("".join)


@given(HOSTILE)
def test_any_command_stays_inside_its_code_span(cmd: str) -> None:
    cmd = cmd.replace(JOINER, "")
    row = markdown_table(Verification((result(command=cmd),)),
                         neutralize=neutralize).splitlines()[2]
    assert len(cells(row)) == 5
    assert span_text(cells(row)[1]) == (" ".join(cmd.split()) or " ")


# -- outcomes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("results", "outcome", "conclusion"), [
    ((result("setup"), result(), result()), "passed", "success"),
    ((result("setup"), result(), result(exit_code=1)), "failed", "failure"),
    ((result(exit_code=None, timed_out=True),), "failed", "failure"),
    ((result("setup"),), "not_run", "neutral"),
    ((), "not_run", "neutral"),
    ((result("setup", exit_code=1), result(exit_code=None)), "error", "failure"),
    ((result("setup", exit_code=None, timed_out=True),), "error", "failure"),
    ((result(), result(exit_code=None)), "error", "failure"),  # verification stopped halfway
])
def test_outcomes_and_check_conclusions(results: tuple[CommandResult, ...], outcome: str,
                                        conclusion: str) -> None:
    verification = Verification(results)
    assert verification.outcome == outcome
    assert check_conclusion(verification) == conclusion


def test_the_artifact_holds_the_outcome_and_every_result_as_json() -> None:
    verification = Verification((result("setup"), result(exit_code=1, tail="boom",
                                                           junit=summarize_junit(LONE_SUITE))))
    artifact = json.loads(json.dumps(verification.dump()))
    assert artifact["outcome"] == "failed"
    assert [r["phase"] for r in artifact["results"]] == ["setup", "verify"]
    assert artifact["results"][1]["output_tail"] == "boom"
    assert artifact["results"][1]["junit"]["failing"][0]["name"] == "app.Cart.totals"


def test_commands_that_did_not_run_say_so() -> None:
    table = markdown_table(Verification((result("setup", exit_code=None, timed_out=True),
                                         result(exit_code=None))), neutralize=neutralize)
    marks = [cells(row)[2] for row in table.splitlines()[2:4]]
    assert marks == ["⏱ timed out", "➖ not run"]
    assert markdown_table(Verification(()), neutralize=neutralize) == \
        "_No verification commands are configured._"
