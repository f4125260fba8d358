"""The machine's side of a run: authenticate its calls, hand it the spec, take its heartbeats,
logs and completion. Everything a machine says is untrusted and redacted before it is stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from porter.agent_wiring import Gateway
from porter.agents import GatewayRequired, Registry, agent_spec
from porter.credentials import Credentials
from porter.errors import BadRequest, Conflict, PorterError, Unauthorized
from porter.github import GitHubApp
from porter.models import AgentRun, Task
from porter.prompts import build_prompt
from porter.publisher import PublishJob, publish_job
from porter.redact import Redactor, StreamRedactor
from porter.repo_settings import task_timeout
from porter.run_artifacts import keep_run_artifacts
from porter.run_phases import phases
from porter.settings import Settings
from porter.states import RunState, Stage, TaskState
from porter.store import Store
from porter.store.llm import METERED, REPORTED
from porter.tokens import gateway_token, run_token, token_matches
from porter.verification import parse_report

log = logging.getLogger(__name__)

STATUSES = {"succeeded", "failed", "cancelled", "timed_out"}
MAX_CHANGESET_BYTES = 10 * 1024 * 1024
MAX_LOG_BYTES = 8 * 1024 * 1024
MAX_TEXT = 20_000
# Stages the entrypoint reports before it starts the agent; the spec is served only until then.
BEFORE_AGENT = frozenset({"stage.spec", "stage.clone"})


class RunService:
    def __init__(
        self,
        *,
        store: Store,
        settings: Settings,
        registry: Registry,
        github: GitHubApp | None,
        token_key: bytes,
        release_machine: Callable[[AgentRun], Awaitable[None]],
        credentials: Credentials,
        gateway_key: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._credentials = credentials
        self._settings = settings
        self._registry = registry
        self._github = github
        self._token_key = token_key
        # keyring.derive(GATEWAY_SUBKEY); None: no gateway, so only agents that use none run.
        self._gateway_key = gateway_key
        self._release = release_machine
        self._clock = clock
        self._streams: dict[str, StreamRedactor] = {}
        self._last_seq: dict[str, int] = {}
        self._clone_tokens: dict[str, str] = {}
        self._minting: dict[str, asyncio.Lock] = {}
        # run id → the key values its output is scrubbed of (the operator's, and the
        # requester's when the run has theirs), opened once per run.
        self._known: dict[str, list[str]] = {}

    def token_for(self, run_id: str) -> str:
        return run_token(self._token_key, run_id)

    def gateway_token_for(self, run_id: str) -> str | None:
        """What the run's agent holds instead of model keys (porter/gateway/ checks it)."""
        return gateway_token(self._gateway_key, run_id) if self._gateway_key else None

    def _gateway(self, run: AgentRun) -> Gateway | None:
        token = self.gateway_token_for(run.id)
        # The machine reaches Porter at the public URL (its PORTER_URL): the gateway is there.
        return Gateway(self._settings.public_url, token) if token else None

    # -- authentication -----------------------------------------------------------------------

    async def authenticate(self, run_id: str, authorization: str | None, *,
                           completing: bool = False) -> AgentRun:
        """The run this call may act for. 401: not its token. 409: a superseded attempt."""
        scheme, _, token = (authorization or "").partition(" ")
        run = await self._store.get_run(run_id) if len(run_id) <= 64 else None
        if scheme.lower() != "bearer" or not token or run is None:
            raise Unauthorized("missing or wrong run token")
        if not token_matches(token.strip(), run.token_hash):
            raise Unauthorized("missing or wrong run token")
        task = await self._store.get_task(run.task_id)
        if task is None or task.attempt != run.attempt:
            raise Conflict("this run belongs to an earlier attempt of the task")
        if run.state is RunState.ABANDONED or (run.state is RunState.COMPLETED and
                                               not completing):
            raise Conflict("this run is over")
        return run

    # -- spec ---------------------------------------------------------------------------------

    async def spec(self, run: AgentRun) -> dict[str, Any]:
        """What the machine needs, served until the agent starts: from then on the run token may
        be in the agent's hands, and the spec holds a clone token, the agent's gateway token and
        any key it receives directly."""
        task = await self._task(run)
        if task.state.terminal:
            raise Conflict("the task is over")
        if await self._agent_started(run):
            raise Conflict("the agent has started; the spec is not served again")
        agent = self._registry.get(task.agent)
        if agent is None:
            raise Conflict(f"agent {task.agent} is not configured on this server")
        if self._github is None or task.installation_id is None or not task.base_sha:
            raise Conflict("the task has no repository access configured")
        # Whose keys was decided at launch (tasks.key_source); a run never gets the other side's.
        # They reach the spec only where the agent cannot use the gateway (agents.direct_keys).
        keys = await self._credentials.agent_keys(task)
        try:
            agent_object = agent_spec(agent, model=task.model, secrets=keys,
                                      gateway=self._gateway(run))
        except GatewayRequired:
            raise Conflict(f"agent {agent.name} needs the LLM gateway, which is not set up on "
                           "this server") from None
        self._known[run.id] = [*self._credentials.operator_keys().values(), *keys.values()]
        # One token per run: the entrypoint fetches again when it did not hear back, and every
        # mint is another live credential.
        async with self._minting.setdefault(run.id, asyncio.Lock()):
            if run.id not in self._clone_tokens:
                token = await self._github.read_token(task.installation_id, task.repo)
                self._clone_tokens[run.id] = token.token
        clone_token = self._clone_tokens[run.id]
        await self._store.run_contact(run, stage="spec", message="machine fetched its spec")
        remaining = (task.started_at or task.created_at) + task_timeout(task, self._settings) \
            - self._clock()
        timing = phases(task.context.get("repo_config"), remaining_s=remaining)
        prompt = build_prompt(task, allow_workflow_changes=self._settings.allow_workflow_changes)
        # The task page shows what the agent was told, redacted as its logs are.
        await self._store.set_prompt(run.id, self._redactor(run).redact(prompt))
        return {
            "task_id": task.id,
            "run_id": run.id,
            "attempt": run.attempt,
            "repo": task.repo,
            "clone_url": f"{self._settings.github_url}/{task.repo}.git",
            "clone_token": clone_token,
            "base_ref": task.context.get("target_branch") or task.base_ref,
            "base_sha": task.base_sha,
            "agent": agent_object,
            "prompt": prompt,
            **{k: v for k, v in timing.items() if k != "agent_timeout_s"},
            "limits": {
                "agent_timeout_s": timing["agent_timeout_s"],
                "heartbeat_interval_s": max(2, self._settings.heartbeat_timeout // 4),
                "max_changeset_bytes": MAX_CHANGESET_BYTES,
                "log_chunk_bytes": 16_384,
            },
        }

    # -- heartbeats and logs ------------------------------------------------------------------

    async def heartbeat(self, run: AgentRun, body: Mapping[str, Any]) -> bool:
        stage = body.get("stage")
        message = body.get("message")
        if not isinstance(stage, str) or not stage.isidentifier() or len(stage) > 32:
            raise BadRequest("stage must be a short word")
        await self._learn_keys(run)
        text = self._redactor(run).redact(message)[:200] if isinstance(message, str) else None
        cancel, _ = await self._store.run_contact(run, stage=stage, message=text)
        task = await self._task(run)
        return cancel or task.state.terminal

    async def log(self, run: AgentRun, body: Mapping[str, Any]) -> None:
        seq, text = body.get("seq"), body.get("text")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0 \
                or not isinstance(text, str):
            raise BadRequest("a log chunk is {seq: int ≥ 0, text: string}")
        await self._store.run_contact(run)
        await self._learn_keys(run)
        # The entrypoint sends chunks in order and sends one again when it did not hear back.
        # The stream holds text back and stores it under a later seq, so the store's per-seq
        # dedupe cannot catch a repeat: one already fed must not reach the stream again.
        if seq <= self._last_seq.get(run.id, -1):
            return
        self._last_seq[run.id] = seq
        safe = self._stream(run).feed(text)
        if safe:
            await self._store.append_log(run, seq=seq, text=safe, max_bytes=MAX_LOG_BYTES)

    # -- completion ---------------------------------------------------------------------------

    async def complete(self, run: AgentRun, body: Mapping[str, Any]) -> dict[str, Any]:
        """Idempotent: a repeated or late call gets the same answer and changes nothing."""
        if run.state is RunState.COMPLETED:
            return {"accepted": True, "repeat": True}
        status = body.get("status")
        if status not in STATUSES:
            raise BadRequest(f"status must be one of {', '.join(sorted(STATUSES))}")
        await self._learn_keys(run)
        redactor = self._redactor(run)
        summary = redactor.redact(_text(body.get("summary")))[:MAX_TEXT]
        log_tail = redactor.redact(_text(body.get("log_tail")))[-MAX_TEXT:]
        raw_error = body.get("error")
        error: Mapping[str, Any] = raw_error if isinstance(raw_error, dict) else {}
        error_message = redactor.redact(_text(error.get("message")))[:500]
        cost = body.get("cost_usd")
        cost_usd = float(cost) if isinstance(cost, int | float) and cost >= 0 else None
        exit_code = body.get("exit_code")
        changeset = body.get("changeset")
        if isinstance(changeset, dict) and isinstance(changeset.get("message"), str):
            # The commit message is the agent's text like any other, published for good.
            changeset = {**changeset, "message": redactor.redact(changeset["message"])}
        usage = body.get("usage")
        # Validated before anything is stored: a malformed report is refused whole (400).
        report = body.get("verification")
        verification = None if report is None else parse_report(report,
                                                                redact=redactor.redact)
        result = {"status": status, "exit_code": exit_code if isinstance(exit_code, int) else None,
                  "summary": summary, "log_tail": log_tail, "error": error_message,
                  "cost_usd": cost_usd, "usage": _numbers(usage),
                  "verification": verification.dump() if verification else None}
        tail = self._stream(run).flush()
        if tail:
            await self._store.append_log(run, seq=1_000_000_000, text=tail,
                                         max_bytes=MAX_LOG_BYTES)
        task = await self._task(run)
        # Before the run is closed: a crash in between leaves the machine's retry to keep them.
        await keep_run_artifacts(self._store, task_id=task.id, run_id=run.id,
                                 verification=verification, patch=body.get("patch"),
                                 changeset=changeset, redact=redactor.redact)
        duration = self._clock() - (task.started_at or task.created_at)
        fields: dict[str, Any] = {"summary": summary or None}
        if task.cost_source != METERED:  # the gateway's metered sum beats the agent's claim
            fields.update(cost_usd=cost_usd, cost_source=REPORTED if cost_usd is not None
                          else None)
        if status == "succeeded" and isinstance(changeset, dict):
            completed = await self._store.complete_run(
                run, result=result, target=TaskState.PUBLISHING, fields=fields,
                message="the agent finished; publishing its changes",
                job=publish_job(task, PublishJob(
                    changeset=changeset, summary=summary, cost_usd=cost_usd,
                    duration_s=duration, attempt=task.attempt,
                    verification=result["verification"])),
            )
        else:
            target, reason = _outcome(status, error_message, result["exit_code"])
            fields["finished_at"] = self._clock()
            completed = await self._store.complete_run(
                run, result=result, target=target, fields=fields, stage=Stage.AGENT,
                reason=reason, message=reason)
        self._forget(run)
        if completed:
            await self._release(run)
        return {"accepted": True}

    # -- helpers ------------------------------------------------------------------------------

    async def _agent_started(self, run: AgentRun) -> bool:
        """Whether this run ever reported a stage past cloning. Its history, not its current
        stage, decides: a heartbeat claiming `clone` again must not reopen the spec."""
        return any(e.kind.startswith("stage.") and e.kind not in BEFORE_AGENT
                   and e.data.get("run_id") == run.id
                   for e in await self._store.task_events(run.task_id))

    async def _task(self, run: AgentRun) -> Task:
        task = await self._store.get_task(run.task_id)
        if task is None:
            raise PorterError(f"run {run.id} has no task")
        return task

    async def _learn_keys(self, run: AgentRun) -> None:
        """What this run's output must never show, before any of it is stored: after a
        restart the first call may be a log chunk, not the spec."""
        if run.id not in self._known:
            self._known[run.id] = await self._credentials.known(await self._task(run))

    def _redactor(self, run: AgentRun) -> Redactor:
        keys = self._known.get(run.id) or list(self._credentials.operator_keys().values())
        known = [*keys, self.token_for(run.id)]
        if (gateway := self.gateway_token_for(run.id)) is not None:
            known.append(gateway)
        if run.id in self._clone_tokens:
            known.append(self._clone_tokens[run.id])
        return Redactor(known)

    def _stream(self, run: AgentRun) -> StreamRedactor:
        stream = self._streams.get(run.id)
        if stream is None:
            stream = self._streams[run.id] = StreamRedactor(self._redactor(run))
        return stream

    def _forget(self, run: AgentRun) -> None:
        self._streams.pop(run.id, None)
        self._last_seq.pop(run.id, None)
        self._clone_tokens.pop(run.id, None)
        self._minting.pop(run.id, None)
        self._known.pop(run.id, None)


def _numbers(value: object) -> dict[str, int | float] | None:
    """Token counts and the like from the agent's report: numbers only, at most 32 of them."""
    if not isinstance(value, dict):
        return None
    kept = {str(k)[:64]: v for k, v in value.items()
            if isinstance(v, int | float) and not isinstance(v, bool)}
    return dict(list(kept.items())[:32]) or None


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _outcome(status: str, message: str, exit_code: int | None) -> tuple[TaskState, str]:
    if status == "cancelled":
        return TaskState.CANCELLED, "the agent was stopped on request"
    if status == "timed_out":
        return TaskState.TIMED_OUT, message or "the agent ran past its time limit"
    if status == "succeeded":  # reported success without a changeset
        return TaskState.FAILED, "the agent made no changes"
    reason = message or (f"the agent exited with code {exit_code}" if exit_code is not None
                         else "the agent failed")
    return TaskState.FAILED, reason
