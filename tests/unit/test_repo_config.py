from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from porter.repo_config import (
    MAX_FILE_BYTES,
    Bounds,
    ConfigProblems,
    Problem,
    RepoConfig,
    parse_repo_config,
)
from porter.repo_config_schema import format_duration, parse_duration
from tests.conftest import ROOT

BOUNDS = Bounds(max_timeout_s=2 * 3600, max_budget_usd=10.0,
                agents=frozenset({"claude", "codex", "aider"}), default_branch_prefix="porter",
                default_agent="claude")

FULL = """\
# Porter's settings for this repository
agent: codex
model: gpt-5
agents: [codex, Claude]
setup:
  - pip install -e .
verify:
  - python -m pytest -q
  - ruff check .
timeout: 45m
verify_timeout: 600
budget_usd: 2.5
branch_prefix: bots
draft: true
protected_paths:
  - .github/**
  - migrations/
instructions: |
  Keep the public API stable.
"""


def parse(text: str | bytes, bounds: Bounds = BOUNDS) -> RepoConfig | ConfigProblems:
    return parse_repo_config(text, bounds=bounds)


def problems(text: str | bytes, bounds: Bounds = BOUNDS) -> list[str]:
    result = parse(text, bounds)
    assert isinstance(result, ConfigProblems), result
    return [str(problem) for problem in result.problems]


def test_a_full_file_becomes_its_config() -> None:
    assert parse(FULL) == RepoConfig(
        agent="codex", model="gpt-5", agents=("codex", "claude"),
        setup=("pip install -e .",), verify=("python -m pytest -q", "ruff check ."),
        timeout_s=45 * 60, verify_timeout_s=600, budget_usd=2.5, branch_prefix="bots",
        draft=True, protected_paths=(".github/**", "migrations/"),
        instructions="Keep the public API stable.\n")


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing here yet\n# verify: [pytest]\n", b"",
                                  "\ufeff# a BOM first\n"])
def test_an_empty_or_comment_only_file_is_the_operators_defaults(text: str | bytes) -> None:
    assert parse(text) == RepoConfig(branch_prefix="porter")


def test_a_key_with_no_value_keeps_its_default() -> None:
    assert parse("verify:\n  # - pytest\ntimeout:\n") == RepoConfig()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("draft: false\ntimeout: 3 days\n",
         '.porter.yml line 2: timeout: "3 days" is not a duration (use 30m, 2h or seconds)'),
        ("verify:\n  - pytest\n  - ruff check .\n  - 7\n",
         ".porter.yml line 4: verify[2]: must be text, not the number 7 "
         "(put it in quotes to make it text)"),
        ("setup:\n  - make\n\n  - ''\n", ".porter.yml line 4: setup[1]: is an empty command"),
        ("verify: pytest -q\n",
         '.porter.yml line 1: verify: must be a list of commands, such as ["…"]'),
        ("\n\ndraft: sometimes\n",
         '.porter.yml line 3: draft: must be true or false, not "sometimes"'),
        ("model: 4.5\n", ".porter.yml line 1: model: must be text, not the number 4.5 "
                         "(put it in quotes to make it text)"),
        ("instructions:\n  first: do this\n",
         ".porter.yml line 2: instructions: must be a single value, not a mapping"),
        ("budget_usd: lots\n",
         '.porter.yml line 1: budget_usd: "lots" is not an amount in US dollars above 0, '
         "such as 2.50"),
        ("timeout: 1\ntimeout: 2\n", ".porter.yml line 2: timeout: is set twice (also on line 1)"),
        ("timeout: !env TIMEOUT\n",
         '.porter.yml line 1: timeout: uses the YAML tag "!env", which .porter.yml does not read'),
    ],
)
def test_each_problem_names_its_line_and_key(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_problems_deep_in_lists_name_the_item_and_come_in_line_order() -> None:
    text = ("protected_paths:\n"
            "  - docs/**\n"
            "  - ../secrets\n"
            "branch_prefix: my bots\n"
            "verify:\n"
            "  - pytest\n"
            "  - [nested]\n")
    assert problems(text) == [
        '.porter.yml line 3: protected_paths[1]: "../secrets" may not contain \'..\' '
        "(patterns stay inside the repository)",
        '.porter.yml line 4: branch_prefix: "my bots" may not contain a space '
        "(git refuses it in a branch name)",
        ".porter.yml line 7: verify[1]: must be a single value, not a list",
    ]


def test_an_unknown_key_is_an_error_with_a_suggestion() -> None:
    assert problems("verify: [pytest]\nverfy_timeout: 10m\ncolour: blue\n") == [
        ".porter.yml line 2: verfy_timeout: is not a .porter.yml key; did you mean "
        "`verify_timeout`?",
        ".porter.yml line 3: colour: is not a .porter.yml key; see docs/repo-config.md for keys",
    ]


def test_operator_bounds_cap_what_a_repository_asks_for() -> None:
    text = "timeout: 3h\nverify_timeout: 2h\nbudget_usd: 25\nagent: gemini\n"
    assert problems(text) == [
        ".porter.yml line 1: timeout: 3h is above this Porter's maximum of 2h (7200 seconds)",
        '.porter.yml line 3: budget_usd: 25.00 USD is above this Porter\'s maximum of 10.00 USD '
        "per run",
        '.porter.yml line 4: agent: "gemini" is not an agent this Porter runs '
        "(it runs: aider, claude, codex)",
    ]


def test_without_an_operator_budget_any_positive_budget_is_allowed() -> None:
    unbounded = Bounds(max_timeout_s=3600, max_budget_usd=None, agents=frozenset({"claude"}))
    assert parse("budget_usd: 250\n", unbounded) == RepoConfig(budget_usd=250.0)
    assert problems("budget_usd: 0\n", unbounded) == [
        '.porter.yml line 1: budget_usd: "0" is not an amount in US dollars above 0, such as 2.50']


def test_allowed_agents_must_hold_the_agent_that_runs_by_default() -> None:
    assert problems("agents: [codex]\n") == [
        ".porter.yml line 1: agents: leaves out claude, this Porter's default agent: also set "
        "`agent:` to one of them"]
    assert problems("agent: aider\nagents: [codex]\n") == [
        ".porter.yml line 1: agent: aider is not among the `agents:` this file allows"]
    assert parse("agent: codex\nagents: [codex]\n") == RepoConfig(agent="codex", agents=("codex",))
    assert problems("agent:\nagents: [codex]\n") == [
        ".porter.yml line 2: agents: leaves out claude, this Porter's default agent: also set "
        "`agent:` to one of them"]


@pytest.mark.parametrize("text", ["a: [1,\n  2\nb: 3\n", "verify:\n  - pytest\n - ruff\n"])
def test_a_yaml_syntax_error_names_its_line(text: str) -> None:
    (problem,) = problems(text)
    assert problem.startswith(".porter.yml line 3: the file is not valid YAML: ")


def test_a_top_level_that_is_not_a_mapping_is_refused_on_line_1() -> None:
    assert problems("- pytest\n- ruff\n") == [
        ".porter.yml line 1: the file must be a mapping of keys such as `verify:`, not a list"]
    assert problems("just some text\n") == [
        '.porter.yml line 1: the file must be a mapping of keys such as `verify:`, '
        'not the value "just some text"']


def test_an_alias_bomb_is_refused_without_expanding_it() -> None:
    levels = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for level in range(1, 9):  # 10**9 values once expanded
        refs = ", ".join([f"*a{level - 1}"] * 10)
        levels.append(f"a{level}: &a{level} [{refs}]")
    (problem,) = problems("\n".join(levels) + "\n")
    assert "expands to more than 10,000 values through anchors and aliases; refused" in problem


def test_a_self_referencing_anchor_is_refused() -> None:
    (problem,) = problems("verify: &loop [*loop]\n")
    assert "through anchors and aliases; refused" in problem


def test_deep_nesting_is_refused_before_the_parser_recurses() -> None:
    (problem,) = problems("[" * 30_000)
    assert problem == ".porter.yml line 1: the file nests more than 20 levels deep; refused"


def test_an_oversize_file_is_refused_before_parsing() -> None:
    text = "instructions: ok\n" + "#" * MAX_FILE_BYTES
    assert problems(text) == [".porter.yml line 1: the file is 65,553 bytes; at most 65,536"]


def test_lists_and_texts_are_bounded() -> None:
    many = "verify:\n" + "".join(f"  - echo {n}\n" for n in range(51))
    assert problems(many) == [".porter.yml line 2: verify: has 51 commands; at most 50"]
    long_command = f"setup: [\"{'x' * 4097}\"]\n"
    assert problems(long_command) == [
        ".porter.yml line 1: setup[0]: is 4,097 characters long; at most 4,096"]
    long_text = f"instructions: \"{'y' * 8193}\"\n"
    assert problems(long_text) == [
        ".porter.yml line 1: instructions: is 8,193 characters long; at most 8,192"]


@pytest.mark.parametrize(
    ("prefix", "why"),
    [("-rf", "may not start with '-'"), (".hidden", "may not start with '.'"),
     ("bots.lock", "may not end with '.' or '.lock'"), ("a/b", "must be one name without '/'"),
     ("x@{1}", "may not contain '@{'"), ("\"tab\\there\"", "may hold only printable ASCII"),
     ("wip~1", "may not contain '~'"), ("'@'", "may not be '@' alone"),
     ("\"\"", "must not be empty"),
     ("x" * 41, "is 41 characters long; at most 40")],
)
def test_a_branch_prefix_follows_gits_rules_for_a_ref_component(prefix: str, why: str) -> None:
    (problem,) = problems(f"branch_prefix: {prefix}\n")
    assert why in problem


def test_a_branch_prefix_git_accepts_is_kept() -> None:
    assert parse("branch_prefix: ai-bot_2.0\n") == RepoConfig(branch_prefix="ai-bot_2.0")


def test_other_safety_refusals() -> None:
    assert problems(b"verify: [\"caf\xe9\"]\n") == [
        ".porter.yml line 1: the file is not UTF-8 text"]
    assert problems("a: 1\nb: \x07\n") == [
        ".porter.yml line 2: the file is not valid YAML: character U+0007 is not allowed"]
    assert problems('verify: ["a\\0b"]\n') == [
        ".porter.yml line 1: verify[0]: may not contain a NUL character"]
    # A Python tag under a known key is never constructed.
    assert problems("model: !!python/object/apply:os.system [id]\n") == [
        ".porter.yml line 1: model: must be a single value, not a list"]


@pytest.mark.parametrize(("text", "seconds"),
                         [("900", 900), ("45s", 45), ("30m", 1800), ("2h", 7200),
                          ("1h30m", 5400), (" 10M ", 600)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "3 days", "1.5h", "-5", "m", "30mh", "٣٠m"])
def test_not_durations(text: str) -> None:
    assert parse_duration(text) is None


@given(st.integers(min_value=1, max_value=999_999 * 3600))
def test_any_duration_reads_back_as_its_seconds(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.text(max_size=300) | st.binary(max_size=300))
def test_junk_never_raises_only_reports(junk: str | bytes) -> None:
    result = parse(junk)
    if isinstance(result, ConfigProblems):
        assert result.problems
        assert all(isinstance(p, Problem) and p.line >= 1 for p in result.problems)


def test_a_long_list_of_problems_is_cut_short() -> None:
    text = "verify:\n" + "".join(f"  - {n}\n" for n in range(30))
    result = parse(text)
    assert isinstance(result, ConfigProblems)
    assert len(result.problems) == 20 and result.more == 10
    assert str(result).endswith("\n… and 10 more")


def test_the_example_in_the_docs_is_valid() -> None:
    page = (ROOT / "docs" / "repo-config.md").read_text(encoding="utf-8")
    example = page.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = parse(example)
    assert isinstance(config, RepoConfig)
    assert config.verify == ("python -m pytest -q", "ruff check .")
