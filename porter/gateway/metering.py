"""The gateway's accounting: budgets before a call is forwarded, usage and cost after it.

The proxy (porter/gateway/proxy.py) calls, for every forwarded call:

    meter = await metering.admit(run, task, provider)   # BudgetExceeded → 402, nothing sent
    meter.observe_request(body)                          # the request body, once (model name)
    meter.feed(chunk)                                    # every upstream chunk, as it passes
    await meter.finish(status, elapsed)                  # once, even when the client went away

`admit` checks the budgets (porter/gateway/budgets.py) against the calls already recorded; a run
over one is refused, its task fails at stage `budget` with the amounts, and its machine is
stopped the way a cancel stops it. `feed` only looks at the bytes, incrementally and in bounded
memory (porter/gateway/answers.py); `finish` reads the usage from what it saw
(porter/gateway/usage.py), prices it (porter/gateway/prices.py), records the call (which also
sets the task's cost to the sum of its calls) and updates the provider's health
(porter/gateway/health.py). Nothing here may break the answer the agent is reading: the proxy
forwards every chunk whatever the meter makes of it.

`Metering` is built once per app, in the app's lifespan, by `Gateway` (porter/gateway/proxy.py),
with the store, settings and clock; it outlives reconfigure().
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import orjson

from porter.errors import PorterError
from porter.gateway import prices
from porter.gateway.answers import AnswerUsage, first_model
from porter.gateway.budgets import Budgets, Over, check, day_start
from porter.gateway.health import PROVIDER_HEALTH, ProviderHealth
from porter.gateway.usage import Usage, model_from_request
from porter.models import AgentRun, Task
from porter.repo_settings import run_budget
from porter.settings import Settings
from porter.states import ON_MACHINE, Stage, TaskState
from porter.store import Store
from porter.store.llm import LlmCall

log = logging.getLogger(__name__)

# The model is read from the request's first bytes when it is named there (the SDKs put it
# first); a body that does not is decoded whole only up to this size.
MODEL_PREFIX = 4096
MAX_DECODED_REQUEST = 2 * 1024 * 1024

Release = Callable[[AgentRun], Awaitable[None]]


class BudgetExceeded(PorterError):
    """The run is over its budget."""

    status_code = 402


class Meter:
    """One call's accounting, from admission to its last byte."""

    def __init__(self, metering: Metering, run: AgentRun, task: Task, provider: str,
                 started_at: float) -> None:
        self._metering = metering
        self._run = run
        self._task = task
        self._provider = provider
        self._started_at = started_at
        self._t0 = time.perf_counter()
        self._first_byte: float | None = None
        self._request_model: str | None = None
        self._answer = AnswerUsage(provider)
        self._broken = False
        self._done = False

    def observe_request(self, body: bytes, *, path: str = "") -> None:
        """The request's model: named in its body, or (Gemini) in its `path`."""
        try:
            self._request_model = _request_model(body, path)
        except Exception:
            log.exception("metering: reading a %s request's model failed", self._provider)

    def feed(self, chunk: bytes) -> None:
        if self._first_byte is None:
            self._first_byte = time.perf_counter() - self._t0
        if self._broken:
            return
        try:
            self._answer.feed(chunk)
        except Exception:  # the answer is forwarded all the same; only its usage is lost
            self._broken = True
            log.exception("metering: reading a %s answer failed", self._provider)

    async def finish(self, status: int, elapsed: float) -> None:
        if self._done:
            return
        self._done = True
        if not self._broken:
            try:
                self._answer.close()
            except Exception:
                log.exception("metering: reading the end of a %s answer failed",
                              self._provider)
        usage = self._answer.usage
        # The answer names the model that served it; the request, the one asked for.
        model, cost = self._metering.price(self._provider, usage, status, at=self._started_at,
                                           models=(self._answer.model, self._request_model))
        self._metering.health.record(
            self._provider, status=status, duration=elapsed,
            first_byte=self._first_byte if self._first_byte is not None else elapsed)
        tokens = usage or Usage()
        await self._metering.store.record_call(LlmCall(
            run_id=self._run.id, task_id=self._task.id, user_id=self._task.requester_id,
            provider=self._provider, model=model, status=status,
            input_tokens=tokens.input_tokens, output_tokens=tokens.output_tokens,
            cache_read_tokens=tokens.cache_read_tokens,
            cache_write_tokens=tokens.cache_write_tokens, cost_usd=cost,
            started_at=self._started_at, duration_ms=round(elapsed * 1000)))


class Metering:
    def __init__(self, *, store: Store, settings: Settings,
                 clock: Callable[[], float] = time.time, release: Release | None = None,
                 health: ProviderHealth = PROVIDER_HEALTH) -> None:
        """`release` stops a run's machine the way a cancel does (the runtime's launcher);
        without it, the watchdog's next pass releases the machine of the failed task."""
        self.store = store
        self._settings = settings
        self._clock = clock
        self.release = release
        self.health = health
        self._unpriced: set[str] = set()  # models already logged as having no price

    def budgets(self, task: Task) -> Budgets:
        """The operator's budgets, the per-run one lowered by the repository's `.porter.yml`."""
        per_run, source = run_budget(task, self._settings)
        return Budgets.of(per_run, self._settings.user_daily_budget_usd, per_run_from=source)

    async def admit(self, run: AgentRun, task: Task, provider: str) -> Meter:
        now = self._clock()
        budgets = self.budgets(task)
        if budgets.any:
            run_spent = await self.store.run_cost(run.id) if budgets.per_run else 0.0
            user_spent = None
            if budgets.per_user_daily and task.requester_id is not None:
                user_spent = await self.store.user_cost_since(task.requester_id,
                                                               day_start(now))
            over = check(budgets, run_spent=run_spent, user_spent=user_spent,
                         requester=task.requester)
            if over is not None:
                await self._stop(run, task, over)
                raise BudgetExceeded(over.reason)
        return Meter(self, run, task, provider, now)

    async def _stop(self, run: AgentRun, task: Task, over: Over) -> None:
        """The task fails at stage budget, saying why; its machine stops as on a cancel. Only
        the call that moved the task does it: calls refused at the same moment find it done."""
        await self.store.request_cancel(task.id)  # the machine's heartbeat hears it too
        left = await self.store.finish_task(task.id, expected=ON_MACHINE,
                                             target=TaskState.FAILED, stage=Stage.BUDGET,
                                             reason=over.reason, message=over.reason)
        if left is None:
            return
        log.info("task %s failed: %s", task.id, over.reason)
        if self.release is not None:
            try:
                await self.release(run)
            except Exception:  # the watchdog releases what is left of a failed task's run
                log.exception("stopping the machine of run %s failed", run.id)

    def price(self, provider: str, usage: Usage | None, status: int, *, at: float,
              models: tuple[str | None, ...]) -> tuple[str | None, float | None]:
        """The call's model and cost: the first of `models` with a price, else the first
        named, at no price (said once per model in the log)."""
        named = [model for model in models if model]
        model = named[0] if named else None
        if usage is None:
            if status == 0 or status >= 400:
                return model, 0.0  # providers bill no failed call
            log.warning("a %s answer (%s) reported no usage: its cost is unknown", provider,
                        model or "model unknown")
            return model, None
        for candidate in named:
            cost = prices.cost(candidate, usage, at=at)
            if cost is not None:
                return candidate, cost
        if (model or "") not in self._unpriced:
            self._unpriced.add(model or "")
            log.warning("model %s has no price in porter/gateway/prices.py (prices of %s): its "
                        "calls are metered but not priced", model or "(unnamed)",
                        prices.PRICES_AS_OF)
        return model, None


def _request_model(body: bytes, path: str) -> str | None:
    named = first_model(body[:MODEL_PREFIX])
    if named is not None:
        return named
    if 0 < len(body) <= MAX_DECODED_REQUEST:
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError:
            decoded = None
        if isinstance(decoded, dict):
            return model_from_request(decoded, path)
    return model_from_request(None, path)
