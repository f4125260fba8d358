"""Who a gateway call is for: the live run its token names, and the real key that run may use.

The token carries its run id in clear (porter/tokens.py), so the run is one lookup away, and it
is checked before anything is read from the store: the whole token is recomputed for that run
and compared in constant time, so a guess learns nothing, not even whether the run exists. A
token works only while its run is live: from the moment the run completes, is cancelled (even
before its machine has stopped) or its task ends for any reason, it is refused.
"""

from __future__ import annotations

import asyncio
import hmac

from porter.credentials import Credentials
from porter.errors import Conflict, Forbidden, Unauthorized
from porter.gateway.providers import Provider, real_key
from porter.models import AgentRun, Task
from porter.store import Store
from porter.tokens import gateway_token, parse_gateway_token

REFUSED = "missing or wrong run token, or its run is over"
KNOWN_RUNS = 4096


async def live_run(store: Store, subkey: bytes, token: str | None,
                   task_of: dict[str, int]) -> tuple[AgentRun, Task]:
    """The run `token` belongs to and its task, while the run is live; else Unauthorized.

    `task_of` remembers each run's task id, which never changes, so that a run's later calls
    read the run and its task at once; both are read afresh on every call all the same.
    """
    run_id = parse_gateway_token(token) if token else None
    if token is None or run_id is None or not hmac.compare_digest(
            gateway_token(subkey, run_id).encode(), token.encode()):
        raise Unauthorized(REFUSED)
    task_id = task_of.get(run_id)
    if task_id is None:
        run = await store.get_run(run_id)
        task = await store.get_task(run.task_id) if run is not None else None
    else:
        run, task = await asyncio.gather(store.get_run(run_id), store.get_task(task_id))
    if run is None or not run.live or run.cancel_requested:
        raise Unauthorized(REFUSED)
    if task is None or task.id != run.task_id or task.state.terminal \
            or task.attempt != run.attempt:
        raise Unauthorized(REFUSED)
    if task_id is None:
        if len(task_of) >= KNOWN_RUNS:
            task_of.clear()
        task_of[run_id] = run.task_id
    return run, task


async def key_for(credentials: Credentials, task: Task, provider: Provider) -> str:
    """The key this task runs with for `provider` (the requester's or the operator's, as its
    launch decided); Forbidden when it has none for that provider."""
    try:
        keys = await credentials.agent_keys(task)
    except Conflict as exc:  # the agent is gone, or the requester removed their key
        raise Forbidden(exc.message) from None
    key = real_key(provider, keys)
    if key is None:
        raise Forbidden(f"this run has no {provider.name} API key (agent {task.agent})")
    return key
