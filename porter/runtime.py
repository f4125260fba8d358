"""The background half of Porter: GitHub client, job runner, dispatcher, built from settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable

import httpx

from porter.admission import Limits
from porter.agents import Registry
from porter.api_metrics import FLY, GITHUB, ApiMetrics
from porter.authorization import Authorizer
from porter.control import Control
from porter.credentials import Credentials
from porter.crypto import KeyRing
from porter.deliveries import Reconciler
from porter.dispatcher import Dispatcher
from porter.errors import ConfigError, GitHubError
from porter.fly import FlyClient
from porter.github import GitHubApp, load_private_key
from porter.github_warm import warm_up
from porter.jobs import JobRunner
from porter.key_check import no_ring, refusal
from porter.launcher import Launcher
from porter.metrics import Metrics
from porter.models import AgentRun
from porter.notices import NOTIFY_JOB
from porter.notifications import Channels, Notifier
from porter.publisher import Publisher
from porter.reporting import Reporter
from porter.runners.base import Runner
from porter.runners.choice import RunnerChoice, fly_factory
from porter.runners.fly import FlyRunner
from porter.runners.local import LocalRunner
from porter.runners.sandbox import SandboxPolicy
from porter.runs import RunService
from porter.settings import Settings
from porter.store import Store
from porter.tokens import GATEWAY_SUBKEY
from porter.vault import Vault
from porter.watchdog import Watchdog

log = logging.getLogger(__name__)


def build_github(settings: Settings, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> GitHubApp | None:
    """The App client, or None while the App is not configured (webhooks still queue)."""
    if not settings.github_app_id or not (
        settings.github_private_key or settings.github_private_key_file
    ):
        return None
    key = load_private_key(
        settings.github_private_key.get() if settings.github_private_key else None,
        str(settings.github_private_key_file) if settings.github_private_key_file else None,
    )
    return GitHubApp(app_id=settings.github_app_id, private_key=key,
                     api_url=settings.github_api_url, transport=transport)


def _app_id(settings: Settings) -> int | None:
    """The App's numeric id, to tell its own check runs from other Apps' (None: not numeric)."""
    text = (settings.github_app_id or "").strip()
    return int(text) if text.isdigit() else None


def has_keyring(settings: Settings) -> bool:
    """Whether a key ring is set or on disk (else `load_keyring` would generate one)."""
    return settings.secret_keys is not None or settings.keys_file.exists()


def load_keyring(settings: Settings) -> KeyRing:
    """PORTER_SECRET_KEYS, else the key file (beside a SQLite database, else in the data
    directory: Settings.keys_file), created on first start."""
    if settings.secret_keys is not None:
        return KeyRing.parse(settings.secret_keys.get())
    path = settings.keys_file
    if path.exists():
        return KeyRing.parse(path.read_text(encoding="utf-8").strip())
    ring = KeyRing.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(ring.serialize() + "\n")
    log.warning("PORTER_SECRET_KEYS is not set: generated a key ring in %s. Back it up: "
                "without it stored secrets cannot be read.", path)
    return ring


def check_config(settings: Settings) -> list[str]:
    """Problems that would stop Porter from doing its job, one line each (nothing is started)."""
    problems = []
    try:
        build_github(settings)
    except ConfigError as exc:
        problems.append(exc.message)
    if settings.effective_runner == "fly" and (not settings.fly_api_token or not settings.fly_app):
        problems.append("the fly runner needs PORTER_FLY_API_TOKEN and PORTER_FLY_APP")
    if settings.secret_keys is not None:
        try:
            KeyRing.parse(settings.secret_keys.get())
        except ConfigError as exc:
            problems.append(exc.message)
    try:
        Channels.from_settings(settings)
    except ConfigError as exc:
        problems.append(exc.message)
    return problems


async def check_key_ring(settings: Settings) -> str | None:
    """Why this Porter's key ring is not its database's (porter/key_check.py), or None, the
    ring then recorded. `porter serve` asks before it serves, so that a refusal is one line
    rather than a failed startup's traceback; `Runtime.start` checks again in any case."""
    store = await Store.open(settings.store_location)
    try:
        if not has_keyring(settings):
            # The ring generated at start would be a new one: refused before one is written.
            if await store.key_fingerprints():
                return refusal(no_ring(settings.keys_file)).message
            return None
        await store.record_key_ring(load_keyring(settings).fingerprints())
    except ConfigError as exc:
        return exc.message
    finally:
        await store.close()
    return None


def build_runner(settings: Settings, *, instance: str = "",
                 api: ApiMetrics | None = None) -> Runner:
    if settings.effective_runner == "fly":
        if settings.fly_api_token is None or not settings.fly_app:
            raise ConfigError("the fly runner needs PORTER_FLY_API_TOKEN and PORTER_FLY_APP")
        if settings.agent_image is None:
            log.warning("PORTER_AGENT_IMAGE is not set: every task will fail at dispatch until "
                        "an agent image built from container/ is set (docs/operator.md)")
        transport = api.transport(FLY, settings.fly_api_url) if api else None
        client = FlyClient(token=settings.fly_api_token.get(), app=settings.fly_app,
                           base_url=settings.fly_api_url, transport=transport)
        return FlyRunner(client, image=settings.agent_image, region=settings.fly_region,
                         cpu_kind=settings.fly_cpu_kind, cpus=settings.fly_cpus,
                         memory_mb=settings.fly_memory_mb, instance=instance)
    return LocalRunner(log_dir=settings.runs_dir,
                       sandbox=SandboxPolicy.from_settings(settings), instance=instance)


class Runtime:
    def __init__(self, settings: Settings, store: Store, *,
                 clock: Callable[[], float] = time.time,
                 github: GitHubApp | None = None,
                 runner: Runner | None = None,
                 metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.store = store
        # Shared with the web services (porter/app.py), so /metrics shows what this runtime did.
        self.metrics = metrics = metrics if metrics is not None else Metrics()
        # One pooled transport for every GitHub call this runtime makes, closed by stop().
        self._github_transport = metrics.api.transport(GITHUB, settings.github_api_url,
                                                       shared=True)
        self.github = github if github is not None else build_github(
            settings, transport=self._github_transport)
        self.runner = runner if runner is not None else build_runner(
            settings, instance=store.instance_id, api=metrics.api)
        self.keyring = load_keyring(settings)
        token_key = self.keyring.derive("run-token")
        registry = Registry.from_settings(settings)
        metrics.attach(store, agents=registry.names)
        # Whose keys and Fly account each task uses (porter/credentials.py, porter/keys.py).
        self.credentials = credentials = Credentials(
            store=store, vault=Vault(self.keyring, store), settings=settings, registry=registry)
        runners = RunnerChoice(self.runner, open_fly=credentials.fly,
                               factory=fly_factory(settings, instance=store.instance_id,
                                                   transport=lambda: metrics.api.transport(
                                                       FLY, settings.fly_api_url)))
        self.jobs = JobRunner(store, {}, clock=clock, concurrency=settings.job_concurrency,
                              lease=settings.job_lease, observer=metrics)
        self.reporter = Reporter(store=store, github=self.github, public_url=settings.public_url,
                                 mention=settings.mention, clock=clock)
        authorizer = None
        if self.github is not None:
            authorizer = Authorizer(self.github, min_permission=settings.min_permission,
                                    allowlist=settings.allowlist)
        self.launcher = Launcher(store=store, runner=self.runner,
                                 settings=settings, github=self.github, token_key=token_key,
                                 credentials=credentials, runners=runners,
                                 clock=clock)
        limits = Limits(total=settings.max_live_tasks,
                        per_installation=settings.max_live_per_installation)
        self.dispatcher = Dispatcher(store=store, authorizer=authorizer, reporter=self.reporter,
                                     starter=self.launcher, limits=limits,
                                     public_url=settings.public_url, clock=clock)
        self.control = Control(store=store, reporter=self.reporter, authorizer=authorizer,
                               launcher=self.launcher, settings=settings,
                               agents=registry.names)
        self.runs = RunService(store=store, settings=settings, registry=registry,
                               github=self.github, token_key=token_key, credentials=credentials,
                               gateway_key=self.keyring.derive(GATEWAY_SUBKEY),
                               release_machine=self._release, clock=clock)
        self.watchdog = Watchdog(store=store, runner=self.runner, launcher=self.launcher,
                                 settings=settings, exit_grace=settings.watchdog_exit_grace,
                                 clock=clock, on_action=metrics.watchdog_action)
        kinds = {**self.reporter.kinds(), **self.launcher.kinds(), **self.control.kinds()}
        # A task's end enqueues a notification per configured channel (porter/store/tasks.py).
        self.notifier = Notifier.from_settings(settings, clock=clock)
        store.notify_channels = self.notifier.channels.names
        kinds[NOTIFY_JOB] = self.notifier.kind()
        if self.github is not None:
            publisher = Publisher(store=store, github=self.github,
                                  public_url=settings.public_url,
                                  allow_workflows=settings.allow_workflow_changes, clock=clock,
                                  app_id=_app_id(settings))
            kinds.update(publisher.kinds())
        for name, kind in kinds.items():
            self.jobs.register(name, kind)
        # Lost webhook deliveries, asked for again; only GitHub's App can list them.
        self.deliveries = None if self.github is None else Reconciler(
            github=self.github, store=store, handle=settings.mention, agents=registry.names,
            clock=clock)
        self._tasks: list[asyncio.Task[None]] = []
        self._recorded_listeners: list[Callable[[], None]] = []
        # Every state change commits its own status job (the store): all that is left is to
        # wake whoever acts on it, and a finished task may have freed a slot.
        store.subscribe(self.jobs.wake.set, to="jobs")
        store.subscribe(self.dispatcher.wake.set, to="tasks")

    def task_recorded(self) -> None:
        self.dispatcher.wake.set()
        for listener in self._recorded_listeners:
            listener()

    def on_task_recorded(self, listener: Callable[[], None]) -> None:
        """Also call `listener` when intake records a task (live pages show it at once)."""
        self._recorded_listeners.append(listener)

    async def _release(self, run: AgentRun) -> None:
        await self.launcher.release(run.id, run.machine_id, task_id=run.task_id)

    async def start(self) -> None:
        # Before any work: a ring other than the database's would fail every secret and
        # callback here (porter/key_check.py); ConfigError then.
        await self.store.record_key_ring(self.keyring.fingerprints())
        if isinstance(self.runner, LocalRunner) and len(await self.store.hosts()) > 1:
            log.warning("Porter processes on other hosts share this database, and the local "
                        "runner's machines are processes of this host, which they can neither "
                        "watch nor stop: use the fly runner for replicas (docs/operator.md)")
        # A predecessor killed on this host left jobs claimed: they run now, not in 5 minutes.
        if released := await self.store.reclaim_from_dead():
            log.info("took back %d jobs from a Porter process that is gone", released)
        loop = asyncio.get_running_loop()
        if self.github is not None:
            loop.run_in_executor(None, warm_up)  # off the loop: a request meanwhile still waits
        self._tasks = [
            loop.create_task(self.jobs.run_forever(), name="porter-jobs"),
            loop.create_task(self.dispatcher.run_forever(), name="porter-dispatcher"),
            loop.create_task(self._watch(), name="porter-watchdog"),
        ]
        if self.deliveries is not None and self.settings.delivery_reconcile_interval > 0:
            self._tasks.append(loop.create_task(self._reconcile(self.deliveries),
                                                name="porter-deliveries"))

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.watchdog_interval)
            try:
                await self.watchdog.tick()
            except Exception:
                log.exception("watchdog pass failed")

    async def _reconcile(self, deliveries: Reconciler) -> None:
        """Ask GitHub again for deliveries that never reached Porter (porter/deliveries.py)."""
        while True:
            await asyncio.sleep(self.settings.delivery_reconcile_interval)
            try:
                await deliveries.run_once()
            except GitHubError as exc:  # GitHub down or slow: the next pass tries again
                log.warning("lost-delivery pass: %s", exc.message)
            except Exception:
                log.exception("lost-delivery pass failed")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.launcher.aclose()
        await self.runner.aclose()
        await self._github_transport.close()
