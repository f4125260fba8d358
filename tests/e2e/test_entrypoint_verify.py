"""The entrypoint's verification: the repository's `setup` commands before the agent and its
`verify` commands after it, run for real in the agent's sandbox against the same fake Porter,
bare git origin and scripted agent as tests/e2e/test_entrypoint.py."""

from __future__ import annotations

import base64
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from porter.verification import parse_report
from tests.e2e import test_entrypoint
from tests.e2e.test_entrypoint import (
    CANARY,
    RUN_GUARD_S,
    FakePorter,
    Origin,
    Script,
    files_of,
    make_spec,
    run_entrypoint,
)
from tests.fakes.sandbox import needs_bwrap, pids_running

pytestmark = needs_bwrap
# The same fixtures: a bare origin with a few files, and fake Porters closed after the test.
origin = test_entrypoint.origin
porter = test_entrypoint.porter

KEYS = {"phase", "command", "exit_code", "duration_s", "timed_out", "output_tail", "junit_xml"}
WRITES_NOTES: Script = [{"op": "write", "path": "NOTES.md", "text": "the agent's change\n"}]


def verified(
    origin: Origin, porter: Callable[..., FakePorter], tmp_path: Path, *,
    script: Script = WRITES_NOTES, keep: bool = False, **fields: Any,
) -> tuple[dict[str, Any], list[dict[str, Any]], FakePorter]:
    """Run the entrypoint with these spec fields; its result and verification commands."""
    fake = porter({**make_spec(origin, script), **fields})
    ran = run_entrypoint(fake, tmp_path, **({"PORTER_KEEP_WORKSPACE": "1"} if keep else {}))
    assert ran.code == 0, ran.stderr
    result = fake.result
    commands = result["verification"]["commands"]
    assert all(set(c) == KEYS for c in commands)
    parse_report(result["verification"], redact=lambda text: text)  # Porter takes it as is
    return result, commands, fake


def test_passing_verify_is_reported_and_leaves_nothing_in_the_changeset(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    result, commands, fake = verified(
        origin, porter, tmp_path,
        setup=["mkdir -p .venv/lib && echo made > .venv/lib/marker && echo setup-ran"],
        verify=["test -f NOTES.md && echo verified-ok && touch verify-leftover.txt"],
    )

    assert result["status"] == "succeeded"
    # Only the agent's file: not setup's virtualenv, not what verify wrote.
    assert sorted(files_of(result)) == ["NOTES.md"]
    setup, verify = commands
    assert (setup["phase"], setup["exit_code"], setup["timed_out"]) == ("setup", 0, False)
    assert "setup-ran" in setup["output_tail"]
    assert (verify["phase"], verify["exit_code"], verify["timed_out"]) == ("verify", 0, False)
    assert verify["command"].startswith("test -f NOTES.md")
    assert "verified-ok" in verify["output_tail"]
    assert verify["junit_xml"] is None
    stages = {hb["stage"] for hb in fake.heartbeats}
    assert {"setup", "verify"} <= stages


def test_failing_verify_records_its_exit_code_and_output_and_the_rest_still_run(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    result, commands, _ = verified(
        origin, porter, tmp_path,
        verify=["echo first-ok", "echo 'assertion broke' >&2; exit 3", "echo still-ran"],
    )

    assert result["status"] == "succeeded"  # the change is made; Porter judges the checks
    assert [c["exit_code"] for c in commands] == [0, 3, 0]
    assert "assertion broke" in commands[1]["output_tail"]  # stderr is kept with stdout
    assert "still-ran" in commands[2]["output_tail"]
    assert parse_report(result["verification"], redact=str).outcome == "failed"


def test_a_failed_setup_stops_setup_and_verify_is_not_run(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    result, commands, _ = verified(
        origin, porter, tmp_path, keep=True,
        setup=["echo cannot install >&2; exit 4", "echo >/tmp/second-setup-ran"],
        verify=["echo >/tmp/verify-ran"],
    )

    assert [(c["phase"], c["exit_code"]) for c in commands] == [
        ("setup", 4), ("setup", None), ("verify", None)]
    assert "cannot install" in commands[0]["output_tail"]
    assert commands[2]["duration_s"] == 0 and commands[2]["output_tail"] == ""
    tmp = sandbox_file_dir(tmp_path)
    assert not (tmp / "second-setup-ran").exists()
    assert not (tmp / "verify-ran").exists()
    assert sorted(files_of(result)) == ["NOTES.md"]  # the agent still ran
    assert parse_report(result["verification"], redact=str).outcome == "error"


def sandbox_file_dir(tmp_path: Path) -> Path:
    """The run's private /tmp, kept on the host (PORTER_KEEP_WORKSPACE)."""
    found = list((tmp_path / "ws").glob("porter-run-*/tmp"))
    assert len(found) == 1, found
    return found[0]


def test_a_command_over_the_time_limit_is_killed_and_the_rest_of_the_phase_not_run(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    tag = f"verify-sleeper-{uuid.uuid4().hex}"
    # Sleeps far longer than RUN_GUARD_S: the run ends in time only if it was killed.
    sleeper = f"{sys.executable} -c 'import time; time.sleep({10 * RUN_GUARD_S})' {tag}"
    result, commands, _ = verified(
        origin, porter, tmp_path, verify_timeout_s=2,
        verify=[f"echo before-sleep; {sleeper}", "echo after"],
    )

    slow, after = commands
    assert (slow["timed_out"], slow["exit_code"]) == (True, None)
    assert "before-sleep" in slow["output_tail"]
    assert (after["timed_out"], after["exit_code"], after["duration_s"]) == (False, None, 0)
    assert pids_running(tag) == []
    assert result["status"] == "succeeded"


def test_the_output_tail_is_bounded_to_its_last_bytes(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    _, commands, _ = verified(
        origin, porter, tmp_path,
        verify=["yes 'a long line of output' | head -c 3000000; echo; echo THE-END"],
    )

    tail = commands[0]["output_tail"]
    assert len(tail.encode()) <= 8 * 1024
    assert tail.endswith("THE-END\n")
    assert "a long line of output" in tail


def test_a_secret_a_command_prints_is_redacted_and_commands_do_not_get_the_agents_keys(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    encoded = base64.b64encode(CANARY.encode()).decode()  # the command itself holds no secret
    result, commands, fake = verified(
        origin, porter, tmp_path,
        verify=[f"echo {encoded} | base64 -d; echo; exit 1", "env"],
    )

    assert "[REDACTED]" in commands[0]["output_tail"]
    assert CANARY not in fake.everything()
    environment = commands[1]["output_tail"]
    assert "PORTER_JUNIT_XML=" in environment
    assert "ANTHROPIC_API_KEY" not in environment and "[REDACTED]" not in environment
    assert result["status"] == "succeeded"


TINY_TESTS = """\
def test_adds():
    assert 1 + 1 == 2


def test_breaks():
    assert 1 + 1 == 3, "arithmetic is broken"
"""


def test_a_junit_file_written_to_porter_junit_xml_is_attached(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    script: Script = [{"op": "write", "path": "test_tiny.py", "text": TINY_TESTS}]
    pytest_cmd = (f"{sys.executable} -m pytest -q -p no:cacheprovider "
                  '--junitxml="$PORTER_JUNIT_XML" test_tiny.py')
    result, commands, _ = verified(
        origin, porter, tmp_path, script=script,
        setup=["echo no junit here"], verify=[pytest_cmd, "echo no junit either"],
    )

    setup, tests, plain = commands
    assert tests["exit_code"] == 1
    assert "1 failed, 1 passed" in tests["output_tail"]
    assert tests["junit_xml"] is not None and "<testsuite" in tests["junit_xml"]
    assert setup["junit_xml"] is None
    assert plain["junit_xml"] is None  # the earlier command's file is not this one's
    report = parse_report(result["verification"], redact=str)
    junit = report.results[1].junit
    assert junit is not None
    assert (junit.tests, junit.failures) == (2, 1)
    assert [f.name for f in junit.failing] == ["test_tiny.test_breaks"]


def test_no_verification_without_setup_or_verify_in_the_spec(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    fake = porter(make_spec(origin, WRITES_NOTES))
    ran = run_entrypoint(fake, tmp_path)

    assert ran.code == 0, ran.stderr
    assert "verification" not in fake.result
    assert not {"setup", "verify"} & {hb["stage"] for hb in fake.heartbeats}



def test_a_malformed_verify_field_fails_the_run_naming_it(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    fake = porter({**make_spec(origin, WRITES_NOTES), "verify": "python -m pytest -q"})
    ran = run_entrypoint(fake, tmp_path)

    assert ran.code == 0, ran.stderr
    assert fake.result["status"] == "failed"
    assert "spec field verify must be a list of commands" in fake.result["error"]["message"]


# An agent that tries to pass verification with files its change does not hold: one hidden from
# the changeset by .git/info/exclude, one in its home directory, one in tmp.
PLANTS: Script = [
    {"op": "write", "path": "NOTES.md", "text": "the agent's change\n"},
    {"op": "write", "path": "hidden_conftest.py", "text": "planted\n"},
    {"op": "write", "path": ".git/info/exclude", "text": "hidden_conftest.py\n"},
    {"op": "write", "path": "/home/agent/.local/planted.py", "text": "planted\n"},
    {"op": "write", "path": "/tmp/planted", "text": "planted\n"},
]


def test_verify_sees_the_change_and_what_setup_made_not_what_the_agent_hid(
    tmp_path: Path, origin: Origin, porter: Callable[..., FakePorter]
) -> None:
    result, commands, _ = verified(
        origin, porter, tmp_path, script=PLANTS,
        setup=["mkdir -p build && echo made > build/setup.txt && echo kept > $HOME/setup.txt"],
        verify=["test -f NOTES.md && test -f build/setup.txt && test -f $HOME/setup.txt",
                "test ! -e hidden_conftest.py", "test ! -e $HOME/.local/planted.py",
                "test ! -e /tmp/planted"],
    )

    assert result["status"] == "succeeded"
    # The hidden file was never published (the agent's own exclude file replaced setup's, so
    # what setup built is part of its change: the agent's choice, and shown in the diff).
    assert "NOTES.md" in files_of(result) and "hidden_conftest.py" not in files_of(result)
    verify = [c for c in commands if c["phase"] == "verify"]
    assert [c["exit_code"] for c in verify] == [0, 0, 0, 0], verify
