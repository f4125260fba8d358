"""What the entrypoint reads from the agent's output (container/porter_entrypoint/output.py)."""

from __future__ import annotations

import json

import pytest

from tests.fakes.entrypoint_module import load

output = load("output")

RESULT = {"type": "result", "subtype": "success", "is_error": False,
          "result": "Added a --verbose flag\n\nIt prints each step.", "total_cost_usd": 0.42,
          "usage": {"input_tokens": 1200, "output_tokens": 300}}


# -- last_json_result ---------------------------------------------------------------------------


def test_claudes_result_object_wins_over_later_json() -> None:
    text = "\n".join([
        "starting",
        json.dumps({"type": "system", "subtype": "init"}),
        json.dumps(RESULT, indent=2),
        json.dumps({"type": "log", "n": 1}),
    ])
    assert output.last_json_result(text) == RESULT


def test_without_a_result_object_the_last_json_object_is_taken() -> None:
    text = '{"a": 1}\nnoise {"not": "at a line start"}\n  {"b": 2}\ntrailing words\n'
    assert output.last_json_result(text) == {"b": 2}


@pytest.mark.parametrize("text", ["", "plain text only\n", "[1, 2]\n", '{"broken": \n'])
def test_no_json_object_is_none(text: str) -> None:
    assert output.last_json_result(text) is None


# -- text_summary and interpret_output ----------------------------------------------------------


def test_a_text_summary_is_the_last_non_blank_lines() -> None:
    text = "\n".join(f"line {i}   " for i in range(100)) + "\n\n   \n"
    summary = output.text_summary(text)
    assert summary.splitlines() == [f"line {i}" for i in range(60, 100)]


def test_a_text_summary_is_bounded_in_bytes_without_a_broken_character() -> None:
    summary = output.text_summary("é" * 10_000)
    assert len(summary.encode()) <= output.SUMMARY_TEXT_BYTES
    assert set(summary) == {"é"}


def test_claude_json_gives_summary_cost_and_usage() -> None:
    report = output.interpret_output("claude-json", "noise\n" + json.dumps(RESULT) + "\n")
    assert report == output.AgentReport(
        summary=RESULT["result"], structured=True, cost_usd=0.42, usage=RESULT["usage"])


def test_claude_reporting_an_error_is_an_error_with_its_first_line() -> None:
    failed = {"type": "result", "subtype": "error_max_turns", "is_error": True,
              "result": "\nRan out of turns\nmore", "total_cost": 1, "usage": "n/a"}
    report = output.interpret_output("claude-json", json.dumps(failed))
    assert report.error == "the agent reported an error (error_max_turns): Ran out of turns"
    assert (report.cost_usd, report.usage) == (1.0, None)
    bare = output.interpret_output("claude-json", json.dumps({"type": "result", "is_error": True,
                                                              "total_cost_usd": True}))
    assert (bare.error, bare.summary, bare.cost_usd) == (
        "the agent reported an error (error)", "", None)


def test_a_huge_claude_result_is_cut_at_a_character() -> None:
    report = output.interpret_output("claude-json", json.dumps({"type": "result",
                                                                 "result": "€" * 10_000}))
    assert len(report.summary.encode()) <= output.SUMMARY_RESULT_BYTES
    assert set(report.summary) == {"€"}


def test_text_output_and_claude_without_json_fall_back_to_the_text() -> None:
    for kind in ("text", "claude-json"):
        report = output.interpret_output(kind, "did things\nall done\n")
        assert report == output.AgentReport(summary="did things\nall done")
    json_in_text = output.interpret_output("text", json.dumps(RESULT))
    assert not json_in_text.structured


# -- exits and the commit message ---------------------------------------------------------------


@pytest.mark.parametrize(("returncode", "described", "code"), [
    (0, "the agent (claude) exited with code 0", 0),
    (3, "the agent (claude) exited with code 3", 3),
    (-9, "the agent (claude) was killed by SIGKILL (9)", 137),
    (-15, "the agent (claude) was killed by SIGTERM (15)", 143),
    (-200, "the agent (claude) was killed by signal 200 (200)", 328),
])
def test_an_exit_is_described_and_reported_as_a_shell_would(
    returncode: int, described: str, code: int
) -> None:
    assert output.describe_exit("claude", returncode) == described
    assert output.exit_code_of(returncode) == code


def test_no_return_code_is_no_exit_code() -> None:
    assert output.exit_code_of(None) is None


def test_the_commit_subject_is_the_agents_own_first_line_when_it_gave_one() -> None:
    report = output.AgentReport(summary="\n  Added a --verbose flag  \nbody", structured=True)
    assert output.commit_message(report, "Add a flag") == "Added a --verbose flag"


def test_otherwise_the_commit_subject_is_the_prompts_first_line() -> None:
    text_report = output.AgentReport(summary="Added a flag", structured=False)
    assert output.commit_message(text_report, "\nAdd a flag\n\nDetails") == "Porter: Add a flag"
    empty = output.AgentReport(summary="", structured=True)
    assert output.commit_message(empty, "   \n") == "Porter: changes"


def test_a_long_commit_subject_is_cut_to_72_characters() -> None:
    subject = output.commit_message(output.AgentReport(summary="x" * 100, structured=True), "")
    assert subject == "x" * 71 + "…"
    assert len(subject) == 72


def test_first_and_last_lines_skip_blank_ones() -> None:
    assert output.first_line("\n \n  one \ntwo\n\n") == "one"
    assert output.last_line("\none\n two \n \n") == "two"
    assert output.first_line("") == output.last_line("  \n") == ""
