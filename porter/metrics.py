"""Everything /metrics shows, in one registry per app (tests run many apps in one process).

The runtime and the web services share one `Metrics` (porter/app.py). It hears of jobs as the
job runner's observer (`JobObserver`, porter/jobs.py), of the watchdog through `watchdog_action`,
of GitHub and Fly calls through a transport (porter/api_metrics.py), of webhooks from the intake
route; what the store holds (tasks by state, live machines, cost) is read at each scrape
(`refresh`, awaited by the /metrics route before it renders).

Every label is bounded: agents are clamped to the configured ones (else `other`), job kinds are
Porter's own constants, stages and actions fixed lists below; never a task id, a repository, a
login or a comment. Latencies from the comment are taken for a task's first attempt only: the
task's `created_at` is when the first comment's delivery was recorded, not a retry's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from porter.api_metrics import ApiMetrics
from porter.gateway.health import HealthCollector
from porter.models import Job, Task
from porter.states import REACT_JOB, TaskState
from porter.store import Store

log = logging.getLogger(__name__)

OTHER = "other"
# Job kinds whose end marks a step of a task (porter/launcher.py, porter/publisher.py).
LAUNCH, PUBLISH = "machine.launch", "publish"
# A job's stage: the last checkpoint it saved (JobContext.save), in the order they are saved;
# `start` when it saved none. Publish: commit, pushed, pr_number, link_comment_id, outcome;
# a reply (the `comment` job): comment_id.
STAGES = ("comment_id", "commit", "pushed", "pr_number", "link_comment_id", "outcome")
PACING = ("bucket", "retry_after")
# What the watchdog did (porter/watchdog.py): ended a run past its deadline, silent, whose
# machine exited, whose task ended elsewhere; destroyed a machine no live run owns.
WATCHDOG_ACTIONS = ("timed_out", "silent", "exited", "superseded", "orphan")

# Seconds. A reaction should come in about a second; a machine in tens of seconds; a pull
# request after the agent's work, minutes to an hour.
REACTION_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)
MACHINE_BUCKETS = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
LONG_BUCKETS = (30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0)
SHORT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def job_stage(job: Job) -> str:
    """The last checkpoint the job reached (STAGES), `start` if none."""
    reached = [name for name in STAGES if name in job.progress]
    return reached[-1] if reached else "start"


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        registry.register(HealthCollector())  # the LLM gateway's providers, read at each scrape
        deliveries = Counter("porter_webhook_deliveries", "Webhook deliveries by outcome.",
                             ["outcome"], registry=registry)
        # Children bound once: labels() takes a lock and a dict lookup per call.
        self.recorded, self.duplicate, self.ignored, self.unauthorized = (
            deliveries.labels(outcome)
            for outcome in ("recorded", "duplicate", "ignored", "unauthorized"))
        self.api = ApiMetrics(registry)

        def histogram(name: str, what: str, buckets: tuple[float, ...],
                      labels: tuple[str, ...] = ("agent",)) -> Histogram:
            return Histogram(name, what, list(labels), buckets=buckets, registry=registry)

        self.to_reaction = histogram(
            "porter_comment_to_reaction_seconds",
            "Seconds from the comment (its delivery recorded) to the 👀 reaction.",
            REACTION_BUCKETS)
        self.to_machine = histogram(
            "porter_comment_to_machine_seconds",
            "Seconds from the comment to its machine created.", MACHINE_BUCKETS)
        self.to_pull = histogram(
            "porter_comment_to_pr_seconds",
            "Seconds from the comment to its pull request opened.", LONG_BUCKETS)
        self.run_seconds = histogram(
            "porter_run_seconds",
            "Seconds from a run's start to its completion, for runs whose changes were "
            "published (or whose publishing gave up).", LONG_BUCKETS)
        self.publish_seconds = histogram(
            "porter_publish_seconds",
            "Seconds from a run's completion accepted to its pull request opened.",
            SHORT_BUCKETS)
        self.job_seconds = histogram("porter_job_seconds",
                                     "Seconds a job's successful attempt took, by kind.",
                                     SHORT_BUCKETS, ("kind",))
        self.retries = Counter("porter_job_retries", "Job attempts that failed and will be "
                               "tried again, by kind and stage.", ["kind", "stage"],
                               registry=registry)
        self.give_ups = Counter("porter_job_give_ups", "Jobs given up, by kind and stage.",
                                ["kind", "stage"], registry=registry)
        self.paced_count = Counter(
            "porter_rate_limit_waits", "Jobs held back for a GitHub installation's rate "
            "limit: `bucket` (Porter's own pacing), `retry_after` (GitHub said so).",
            ["reason"], registry=registry)
        self.paced_seconds = Counter(
            "porter_rate_limit_wait_seconds", "Seconds jobs were held back for rate limits.",
            ["reason"], registry=registry)
        self.watchdog = Counter("porter_watchdog_actions", "What the watchdog did, by action.",
                                ["action"], registry=registry)
        self.tasks = Gauge("porter_tasks", "Tasks in the store, by state and agent.",
                           ["state", "agent"], registry=registry)
        self.live_machines = Gauge("porter_live_machines",
                                   "Runs whose machine may be up (launching or running).",
                                   registry=registry)
        self.cost = Gauge("porter_task_cost_usd", "The recorded cost of the tasks in the "
                          "store, in US dollars, by agent.", ["agent"], registry=registry)
        self._store: Store | None = None
        self._agents: frozenset[str] = frozenset()

    @classmethod
    def create(cls) -> Metrics:
        return cls()

    def attach(self, store: Store, *, agents: Iterable[str]) -> None:
        """Where to read tasks from, and the agents that may name a series (the runtime's)."""
        self._store = store
        self._agents = frozenset(agents)

    def agent(self, name: str) -> str:
        return name if name in self._agents else OTHER

    # -- at each scrape -----------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read the store's totals into the gauges; on failure the last values stay."""
        if self._store is None:
            return
        try:
            totals = await self._store.task_totals()
            live = await self._store.live_run_count()
        except Exception:
            log.exception("metrics: reading the store's totals failed")
            return
        cost: dict[str, float] = {}
        for row in totals:
            agent = self.agent(row.agent)
            cost[agent] = cost.get(agent, 0.0) + row.cost_usd
        # Every state of an agent with tasks, zeros included: a state emptied reads 0, where a
        # series that vanished would read as no data.
        counts = {(state.value, agent): 0 for state in TaskState for agent in cost}
        for row in totals:
            key = (row.state, self.agent(row.agent))
            counts[key] = counts.get(key, 0) + row.tasks
        # No await from here on: a scrape never sees the gauges half set.
        self.tasks.clear()
        for (state, agent), count in counts.items():
            self.tasks.labels(state, agent).set(count)
        self.cost.clear()
        for agent, usd in cost.items():
            self.cost.labels(agent).set(usd)
        self.live_machines.set(live)

    # -- the job runner's observer ------------------------------------------------------------

    async def job_finished(self, job: Job, seconds: float) -> None:
        self.job_seconds.labels(job.kind).observe(seconds)
        try:
            if job.kind == REACT_JOB and job.payload.get("content") == "eyes":
                await self._reacted(job)
            elif job.kind == LAUNCH:
                await self._launched(job)
            elif job.kind == PUBLISH:
                await self._published(job, opened=True)
        except Exception:  # a metric must never fail the job it describes
            log.exception("metrics: job %s (%s) not observed", job.id, job.kind)

    async def job_retried(self, job: Job, error: str) -> None:
        self.retries.labels(job.kind, job_stage(job)).inc()

    async def job_given_up(self, job: Job, error: str) -> None:
        self.give_ups.labels(job.kind, job_stage(job)).inc()
        if job.kind == PUBLISH:
            try:
                await self._published(job, opened=False)
            except Exception:
                log.exception("metrics: job %s (%s) not observed", job.id, job.kind)

    def paced(self, installation_id: int, seconds: float, reason: str) -> None:
        reason = reason if reason in PACING else OTHER
        self.paced_count.labels(reason).inc()
        self.paced_seconds.labels(reason).inc(max(0.0, seconds))

    # -- the watchdog -------------------------------------------------------------------------

    def watchdog_action(self, action: str) -> None:
        self.watchdog.labels(action if action in WATCHDOG_ACTIONS else OTHER).inc()

    # -- what a finished job says about its task ----------------------------------------------

    async def _first_attempt(self, task_id: int | None) -> tuple[Store, Task] | None:
        if self._store is None or task_id is None:
            return None
        task = await self._store.get_task(task_id)
        return (self._store, task) if task is not None and task.attempt == 1 else None

    async def _reacted(self, job: Job) -> None:
        found = await self._first_attempt(job.task_id)
        if found is not None:
            store, task = found
            self.to_reaction.labels(self.agent(task.agent)).observe(
                store.clock() - task.created_at)

    async def _launched(self, job: Job) -> None:
        found = await self._first_attempt(job.task_id)
        if found is None:
            return
        store, task = found
        run = await store.get_run(str(job.payload.get("run_id", "")))
        if run is not None and run.attempt == 1 and run.machine_id is not None:
            self.to_machine.labels(self.agent(task.agent)).observe(
                store.clock() - task.created_at)

    async def _published(self, job: Job, *, opened: bool) -> None:
        if self._store is None or job.task_id is None:
            return
        store = self._store
        task = await store.get_task(job.task_id)
        run = await store.current_run(job.task_id)
        if task is None or run is None or run.completed_at is None:
            return
        agent = self.agent(task.agent)
        self.run_seconds.labels(agent).observe(run.completed_at - run.created_at)
        if not opened or task.pr_number is None:
            return
        now = store.clock()
        self.publish_seconds.labels(agent).observe(now - run.completed_at)
        if task.attempt == 1:
            self.to_pull.labels(agent).observe(now - task.created_at)
