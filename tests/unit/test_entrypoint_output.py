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


# -- plain text, API errors and final messages --------------------------------------------------

# What `opencode run` printed in §E.2, colours and all, with TERM=dumb and NO_COLOR=1.
OPENCODE_OUTPUT = (
    "\x1b[0m\n\x1b[94m\x1b[1m| \x1b[0m\x1b[90m Read     \x1b[0mREADME.md\n"
    "\x1b[0m\x1b[92m\x1b[1m| \x1b[0m\x1b[90m Edit     \x1b[0mREADME.md\n\x1b[0m\n"
    "\x1b]0;opencode\x07Fixed the typo: \x1b[1m\x1b[96m\"Teh\"\x1b[0m is now \"The\".\r\n"
    "\x1b[2K\x1b[1Gthinking...\rDone.\n"
)


def test_a_summary_holds_no_escape_sequences_or_control_characters() -> None:
    summary = output.interpret_output("text", OPENCODE_OUTPUT).summary
    assert summary == ('|  Read     README.md\n|  Edit     README.md\n'
                       'Fixed the typo: "Teh" is now "The".\nDone.')
    assert not any((ord(c) < 32 and c not in "\n\t") or 0x7f <= ord(c) <= 0x9f for c in summary)


def test_clean_text_keeps_what_a_terminal_would_show() -> None:
    assert output.clean_text("a\tb\x00\x07\x08c\x9b\n") == "a\tbc\n"
    assert output.clean_text("50%\r100%\r\nend\r") == "100%\nend"
    assert output.clean_text("\x1bP+q544e\x1b\\ok \x1b(Bplain \x1b7x\x1b8") == "ok plain x"


# Codex's stdout and stderr as the transcript holds them: banner and the whole prompt on stderr.
PROMPT = "Porter task: fix the typo in the README\n\nIssue #12 says Teh.\nDo not touch tests."
CODEX_OUTPUT = (
    "[2026-12-01T10:00:00] OpenAI Codex v0.169.0 (research preview)\n--------\n"
    "workdir: /workspace\nmodel: gpt-5-codex\nprovider: porter\nsandbox: workspace-write\n"
    f"--------\n[2026-12-01T10:00:00] User instructions:\n{PROMPT}\n\n"
    "[2026-12-01T10:00:05] thinking\nLooking at README.md\n"
    "[2026-12-01T10:00:09] apply_patch README.md\n[2026-12-01T10:00:10] codex\n"
    "Fixed the typo in README.md.\n[2026-12-01T10:00:10] tokens used: 5120\n"
    "Fixed the typo in README.md.\n"
)


def test_the_final_message_is_the_summary_when_the_agent_wrote_one() -> None:
    report = output.interpret_output("text", CODEX_OUTPUT, prompt=PROMPT,
                                     final_message="\x1b[1mFixed the typo in README.md.\x1b[0m\n")
    assert report == output.AgentReport(summary="Fixed the typo in README.md.", structured=True)
    assert output.commit_message(report, PROMPT) == "Fixed the typo in README.md."


@pytest.mark.parametrize("final", [None, "", "  \n"])
def test_without_a_final_message_the_summary_never_holds_the_prompt(final: str | None) -> None:
    report = output.interpret_output("text", CODEX_OUTPUT, prompt=PROMPT, final_message=final)
    assert not report.structured
    assert "Do not touch tests" not in report.summary and "Issue #12" not in report.summary
    assert report.summary.endswith("Fixed the typo in README.md.")


def test_a_huge_final_message_is_cut_at_a_character() -> None:
    report = output.interpret_output("text", "", final_message="€" * 10_000)
    assert len(report.summary.encode()) <= output.SUMMARY_RESULT_BYTES
    assert set(report.summary) == {"€"}


# A Claude Code run whose API calls all failed (§E.2): exit 1, is_error, subtype "success".
CLAUDE_API_FAILURE = {
    "type": "result", "subtype": "success", "is_error": True, "duration_ms": 181234,
    "num_turns": 1, "result": "API Error: Connection error.", "session_id": "1a2b",
    "total_cost_usd": 0, "usage": {"input_tokens": 0, "output_tokens": 0},
}


def test_a_claude_api_failure_says_so_instead_of_reported_an_error_success() -> None:
    report = output.interpret_output("claude-json", json.dumps(CLAUDE_API_FAILURE))
    assert report.error == "Claude Code stopped on an API error: Connection error."
    auth = {**CLAUDE_API_FAILURE, "result": "Invalid API key · Fix external API key"}
    assert output.interpret_output("claude-json", json.dumps(auth)).error == (
        "Claude Code stopped on an API error: Invalid API key · Fix external API key")
    bare = {**CLAUDE_API_FAILURE, "result": ""}
    assert output.interpret_output("claude-json", json.dumps(bare)).error == (
        "Claude Code stopped on an API error: no detail given")


AIDER_BANNER = (
    "Aider v0.86.2\nMain model: anthropic/claude-sonnet-4-5 with diff edit format\n"
    "Weak model: anthropic/claude-3-5-haiku-20241022\nGit repo: .git with 3 files\n"
    "Repo-map: using 4096 tokens, auto refresh\n"
)
AIDER_AUTH = AIDER_BANNER + (
    'litellm.AuthenticationError: AnthropicException - {"type":"error","error":'
    '{"type":"authentication_error","message":"invalid x-api-key"}}\n'
    "The API provider is not able to authenticate you. Check your API key.\n"
)
AIDER_GAVE_UP = AIDER_BANNER + "".join(
    "litellm.InternalServerError: AnthropicException - Internal server error\n"
    "The API provider's servers are down or overloaded.\n"
    f"Retrying in {delay} seconds...\n" for delay in ("0.2", "0.5", "1.0")
) + ("litellm.InternalServerError: AnthropicException - Internal server error\n"
     "The API provider's servers are down or overloaded.\n")
AIDER_RECOVERED = AIDER_BANNER + (
    "litellm.InternalServerError: AnthropicException - Internal server error\n"
    "The API provider's servers are down or overloaded.\n"
    "Retrying in 0.2 seconds...\n"
    "The README already says The; nothing to change.\n"
    "Tokens: 2.1k sent, 30 received. Cost: $0.0070 message, $0.0070 session.\n"
)


@pytest.mark.parametrize(("text", "expected"), [
    (AIDER_AUTH, 'litellm.AuthenticationError: AnthropicException - {"type":"error","error":'
                 '{"type":"authentication_error","message":"invalid x-api-key"}}'),
    (AIDER_GAVE_UP, "litellm.InternalServerError: AnthropicException - Internal server error"),
    ("\x1b[31mlitellm.APIConnectionError: OpenAIException - Connection error.\x1b[0m\n",
     "litellm.APIConnectionError: OpenAIException - Connection error."),
    ("The API provider has rate limited you. Try again later or check your quotas.\n",
     "The API provider has rate limited you. Try again later or check your quotas."),
    (AIDER_RECOVERED, None),  # it retried and went on: not the end of the run
    (AIDER_AUTH + "".join(f"more work {i}\n" for i in range(12)), None),
    (AIDER_BANNER + "Applied edit to README.md\n", None),
    ("I mention litellm.AuthenticationError: in prose\n", None),  # not at a line's start
    ("", None),
])
def test_an_api_error_is_found_only_where_the_output_ends_on_it(
    text: str, expected: str | None,
) -> None:
    assert output.api_error(text) == expected


def test_an_api_error_line_is_cut_short() -> None:
    found = output.api_error("litellm.APIError: " + "x" * 1000 + "\n")
    assert found is not None and len(found) == output.API_ERROR_CHARS and found.endswith("…")
