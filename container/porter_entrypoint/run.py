"""One run: spec → clone → agent → collect → complete. Whatever happens, it tries hard to
report: Porter must never lose a run silently.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
import threading
import traceback
from typing import Any

from porter_entrypoint import sandbox
from porter_entrypoint.agent import (
    SUMMARY_FILE_NAME,
    AgentRun,
    agent_environment,
    read_summary_file,
    run_agent,
    write_home_files,
)
from porter_entrypoint.callbacks import Callback, SpecUnavailable, fetch_spec
from porter_entrypoint.changeset import changeset_patch, collect_changeset
from porter_entrypoint.git import clone_repo
from porter_entrypoint.output import (
    api_error,
    clean_text,
    commit_message,
    describe_exit,
    exit_code_of,
    interpret_output,
    last_line,
    text_summary,
)
from porter_entrypoint.processes import Interrupted
from porter_entrypoint.redact import Redactor
from porter_entrypoint.result import Outcome, StageFailure, complete_payload, failed, post_complete
from porter_entrypoint.sandbox import Jail
from porter_entrypoint.spec import Config, Spec, parse_spec
from porter_entrypoint.strays import Listing, listing, set_aside
from porter_entrypoint.streams import Heartbeater, LogShipper, Transcript
from porter_entrypoint.verify import (
    Result,
    command_environment,
    ignore_untracked,
    not_run,
    run_commands,
)

EXIT_REPORTED = 0
EXIT_UNREPORTED = 1
EXIT_NO_SPEC = 2
EXIT_NO_SANDBOX = 3
MAX_REPORT_JUNIT = 4 * 1024 * 1024  # JUnit XML in one completion report, all commands together


class Run:
    """One run: spec → clone → agent → collect → complete."""

    def __init__(self, config: Config, terminate: threading.Event) -> None:
        self.config = config
        self.terminate = terminate
        self.callback = Callback(config.porter_url, config.run_id, config.run_token)
        self.transcript = Transcript()
        self.transcript.redactor = Redactor([config.run_token])
        self.heartbeat: Heartbeater | None = None
        self.stage = "clone"
        self.checks: list[Result] = []  # the setup and verify commands that ran, in order
        self.before_agent: dict[str, Listing] = {}  # what verify may see besides the change

    def interrupted(self) -> str | None:
        if self.heartbeat and self.heartbeat.cancel.is_set():
            return "cancelled"
        if self.terminate.is_set():
            return "terminated"
        return None

    def execute(self) -> int:
        base_backoff = self.config.backoff_s if self.config.backoff_s is not None else 1.0
        try:
            raw = fetch_spec(self.callback, base_backoff, self.terminate)
        except SpecUnavailable as exc:
            self.transcript.note(str(exc))
            return EXIT_NO_SPEC
        spec: Spec | None = None
        workspace: str | None = None
        try:
            spec = parse_spec(raw)
        except ValueError as exc:
            outcome = failed("clone", f"the run spec is malformed: {exc}")
        else:
            self._start_streams(spec)
            workspace, outcome = self._perform_guarded(spec)
        return self._report(outcome, spec, workspace, base_backoff)

    def _start_streams(self, spec: Spec) -> None:
        secrets = [self.config.run_token, spec.clone_token, *spec.agent.secrets]
        redactor = Redactor(secrets)
        self.transcript.redactor = redactor
        shipper = LogShipper(self.callback, redactor, spec.limits.log_chunk_bytes)
        shipper.start()
        self.transcript.shipper = shipper
        self.heartbeat = Heartbeater(self.callback, redactor, spec.limits.heartbeat_interval_s)
        self.heartbeat.set_stage("clone", f"cloning {spec.repo}")
        self.heartbeat.start()

    def _perform_guarded(self, spec: Spec) -> tuple[str | None, Outcome]:
        workspace: str | None = None
        try:
            # Named by run, so a runner that kills this machine can remove what it left.
            workspace = tempfile.mkdtemp(prefix=f"porter-run-{self.config.run_id}-",
                                         dir=self.config.workdir)
            return workspace, self._perform(spec, workspace)
        except StageFailure as exc:
            self.transcript.note(f"{exc.stage} failed: {exc.message}")
            return workspace, failed(exc.stage, exc.message, text_summary(self._agent_text()))
        except Interrupted as exc:
            return workspace, self._interrupted_outcome(str(exc))
        except Exception as exc:
            self.transcript.note("internal error:\n" + traceback.format_exc().rstrip())
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            return workspace, failed(self.stage, f"the entrypoint crashed: {last}")

    def _agent_text(self) -> str:
        return self.transcript.agent_text()

    def _interrupted_outcome(self, reason: str) -> Outcome:
        if reason == "cancelled":
            return Outcome("cancelled", summary="The run was cancelled.")
        if reason == "terminated":
            return failed(self.stage, "the machine was stopped before the run finished")
        return failed(self.stage, reason)

    def _set_stage(self, stage: str, message: str) -> None:
        self.stage = stage
        if self.heartbeat:
            self.heartbeat.set_stage(stage, message)

    def _perform(self, spec: Spec, workspace: str) -> Outcome:
        policy = self.config.sandbox
        if policy is None:
            self.transcript.note("running the agent WITHOUT a sandbox (--porter-unsandboxed)")
        else:
            try:
                sandbox.self_check(policy)
            except sandbox.SandboxUnavailable as exc:
                raise StageFailure("agent", f"no agent runs without its sandbox: {exc}") from None
        checkout = os.path.join(workspace, "work")
        mounts = sandbox.prepare(workspace, checkout)
        clone_repo(
            spec,
            checkout,
            home=mounts.home,
            transcript=self.transcript,
            interrupted=self.interrupted,
            grace_s=self.config.kill_grace_s,
        )
        prompt_file = os.path.join(workspace, "prompt.md")
        with open(prompt_file, "w", encoding="utf-8") as fh:
            fh.write(spec.prompt)
        jail = Jail(policy, dataclasses.replace(mounts, prompt=prompt_file))
        write_home_files(mounts.home, spec.agent.home_files)
        # A failed setup does not stop the agent (its change may still be worth a look), but
        # verify is then not run: its result would say nothing about the change.
        if self._run_phase(spec, "setup", jail) and (problem := ignore_untracked(
                jail, command_environment(jail))):
            self.transcript.note(f"could not set aside what setup left untracked: {problem}")
        if spec.verify:  # what verify may find besides the change: what setup left
            self.before_agent = {jail.mounts.checkout: listing(jail.mounts.checkout, skip_git=True),
                                 jail.mounts.home: listing(jail.mounts.home),
                                 jail.mounts.tmp: listing(jail.mounts.tmp)}

        self._set_stage("agent", f"running {spec.agent.name}")
        env = agent_environment(spec, home=jail.home, prompt_file=jail.prompt_file,
                                sandboxed=policy is not None,
                                summary_file=os.path.join(jail.tmp, SUMMARY_FILE_NAME),
                                withhold=(self.config.run_token,))
        run = run_agent(
            spec,
            jail=jail,
            env=env,
            transcript=self.transcript,
            interrupted=self.interrupted,
            grace_s=self.config.kill_grace_s,
            pidfile=self.config.agent_pidfile,
        )
        return self._finish(spec, run, jail)

    def _finish(self, spec: Spec, run: AgentRun, jail: Jail) -> Outcome:
        name = spec.agent.name
        if run.spawn_error:
            self.transcript.note(f"could not start {name}: {run.spawn_error}")
            return failed("agent", f"could not start the agent ({name}): {run.spawn_error}")
        final = (read_summary_file(os.path.join(jail.mounts.tmp, SUMMARY_FILE_NAME))
                 if spec.agent.summary_file else None)
        report = interpret_output(spec.agent.output, self._agent_text(), prompt=spec.prompt,
                                  final_message=final)
        base = Outcome(
            "failed",
            summary=report.summary,
            exit_code=exit_code_of(run.returncode),
            cost_usd=report.cost_usd,
            usage=report.usage,
        )
        if run.ended_by == "timed_out":
            self.transcript.note(f"{name} ran over {int(spec.limits.agent_timeout_s)} s; stopped")
            base.status = "timed_out"
            base.exit_code = None
            base.error = {
                "stage": "agent",
                "message": f"the agent ran longer than {int(spec.limits.agent_timeout_s)} s",
            }
            return base
        if run.ended_by == "stalled":
            idle = int(spec.agent.idle_timeout_s or 0)
            self.transcript.note(f"{name} printed nothing new for {idle} s; stopped")
            base.exit_code = None
            base.error = {"stage": "agent", "message": (
                f"the agent ({name}) printed nothing new for {idle} s and was stopped: it may "
                "be waiting for a model API it cannot reach")}
            return base
        if run.ended_by:
            self.transcript.note(f"{name} stopped: {run.ended_by}")
            outcome = self._interrupted_outcome(run.ended_by)
            outcome.summary = outcome.summary or report.summary
            return outcome
        assert run.returncode is not None
        self.transcript.note(f"{describe_exit(name, run.returncode)} after {run.seconds:.1f} s")
        if report.error:
            suffix = f" (exit code {base.exit_code})" if run.returncode else ""
            base.error = {"stage": "agent", "message": report.error + suffix}
            return base
        stopped_on = api_error(self._agent_text())
        if run.returncode != 0:
            if stopped_on:
                message = (f"the agent ({name}) stopped on an API error: {stopped_on} "
                           f"(exit code {base.exit_code})")
            else:
                last = last_line(clean_text(self._agent_text()))[:200]
                message = describe_exit(name, run.returncode) + (f": {last}" if last else "")
            base.error = {"stage": "agent", "message": message}
            return base
        if spec.agent.output == "claude-json" and not report.structured:
            self.transcript.note("no JSON result found in the agent's output; using its text")

        if reason := self.interrupted():
            return self._interrupted_outcome(reason)
        self._set_stage("collect", "collecting changes")
        try:
            changeset = collect_changeset(
                jail=jail,
                base_sha=spec.base_sha,
                max_bytes=spec.limits.max_changeset_bytes,
                message=commit_message(report, spec.prompt),
                transcript=self.transcript,
            )
        except StageFailure as exc:
            self.transcript.note(f"collect failed: {exc.message}")
            base.error = {"stage": exc.stage, "message": exc.message}
            return base
        if reason := self.interrupted():
            return self._interrupted_outcome(reason)
        if changeset is None:
            # Aider exits 0 after its model calls failed: say why nothing changed.
            message = (f"the agent ({name}) stopped on an API error: {stopped_on}" if stopped_on
                       else "the agent made no changes")
            base.error = {"stage": "agent", "message": message}
            return base
        base.status = "succeeded"
        base.changeset = changeset
        try:
            base.patch = changeset_patch(jail, spec.base_sha)
        except StageFailure as exc:  # only the task page's copy is missing: not a failure
            self.transcript.note(f"could not write the diff: {exc.message}")
        # Only after the changeset is taken: what verify leaves in the checkout (caches,
        # coverage, build output) can then never become part of the agent's change.
        if all(r["exit_code"] == 0 for r in self.checks):  # setup passed, or there was none
            self._set_aside_strays(jail, changeset)
            self._run_phase(spec, "verify", jail)
        return base

    def _set_aside_strays(self, jail: Jail, changeset: dict[str, Any]) -> None:
        """Before verify: delete what the agent left that its change does not hold
        (strays.py), so verify judges the change as it will be published."""
        if not self.before_agent:
            return
        paths = [str(f.get("path")) for f in changeset.get("files", ())]
        gone = set_aside(self.before_agent, keep=paths, checkout=jail.mounts.checkout)
        if gone:
            shown = ", ".join(os.path.basename(p) for p in gone[:10])
            more = f" and {len(gone) - 10} more" if len(gone) > 10 else ""
            self.transcript.note(f"before verify, deleted {len(gone)} files the agent left "
                                 f"outside its change: {shown}{more}")

    def _run_phase(self, spec: Spec, phase: str, jail: Jail) -> bool:
        """Run the phase's commands, if any; whether there were any."""
        commands = list(getattr(spec, phase))
        if not commands:
            return False
        self._set_stage(phase, f"running the {phase} commands")
        results = run_commands(
            phase, commands, jail=jail, time_limit_s=spec.verify_timeout_s,
            env=command_environment(jail), redactor=self.transcript.redactor,
            interrupted=self.interrupted, grace_s=self.config.kill_grace_s,
        )
        for r in results:
            how = ("over the time limit; stopped" if r["timed_out"] else "not run"
                   if r["exit_code"] is None else f"exit code {r['exit_code']}")
            self.transcript.note(f"{phase}: {r['command'][:200]}: {how} ({r['duration_s']} s)")
        self.checks.extend(results)
        return True

    def _verification(self, spec: Spec) -> dict[str, Any]:
        """Every configured command, in order; a phase that never ran (the run ended first, or
        setup failed) listed as not run."""
        commands: list[Result] = []
        for phase in ("setup", "verify"):
            ran = [r for r in self.checks if r["phase"] == phase]
            commands += ran or [not_run(phase, command) for command in getattr(spec, phase)]
        # The whole report must fit Porter's bound on a completion: past MAX_REPORT_JUNIT in
        # all, later commands go without their JUnit summary rather than the result being lost.
        room = MAX_REPORT_JUNIT
        for command in commands:
            size = len((command["junit_xml"] or "").encode())
            if size > room:
                command["junit_xml"] = None
            else:
                room -= size
        return {"commands": commands}

    def _report(
        self, outcome: Outcome, spec: Spec | None, workspace: str | None, base_backoff: float
    ) -> int:
        if self.config.backoff_s is None and spec and spec.limits.callback_backoff_s:
            base_backoff = spec.limits.callback_backoff_s
        deadline = self.config.complete_deadline_s
        if deadline is None:
            deadline = (spec.limits.complete_deadline_s if spec else None) or 900.0
        if self.terminate.is_set():
            deadline = min(deadline, 20.0)  # the machine is going away; say what we can
        self._set_stage("complete", f"reporting {outcome.status}")
        if self.transcript.shipper:
            self.transcript.shipper.close(timeout=20.0)
            self.transcript.shipper = None
        if spec and spec.verifies:
            outcome.verification = self._verification(spec)
        payload = complete_payload(outcome, self.transcript)
        accepted = post_complete(
            self.callback,
            payload,
            base_backoff=base_backoff,
            deadline_s=deadline,
            transcript=self.transcript,
        )
        if self.heartbeat:
            self.heartbeat.stop()
        if workspace and not self.config.keep_workspace:
            shutil.rmtree(workspace, ignore_errors=True)
        return EXIT_REPORTED if accepted else EXIT_UNREPORTED

    def report_crash(self, exc: Exception) -> int:
        """A bug in the reporting path itself: one plain attempt to say so, then give up."""
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        sys.stderr.write(self.transcript.redactor.redact(traceback.format_exc()))
        payload = complete_payload(
            failed(self.stage, f"the entrypoint crashed: {last}"), self.transcript
        )
        reply = self.callback.call("POST", "complete", payload, timeout=30.0)
        return EXIT_REPORTED if reply.ok else EXIT_UNREPORTED
