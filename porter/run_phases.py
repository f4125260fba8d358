"""How a run's time is shared between the repository's setup and verify commands and the agent,
and what the spec tells the entrypoint about them. Pure.

The task's time limit covers the whole run, so the agent is given what is left once each
configured phase has its own limit set aside: a slow agent then cannot leave verification
to be cut short by the watchdog.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_VERIFY_TIMEOUT_S = 900  # per phase, when .porter.yml sets no verify_timeout
MIN_AGENT_S = 60
REPORT_MARGIN_S = 60  # to collect the changes and report before the watchdog's deadline


def phases(config: Mapping[str, Any] | None, *, remaining_s: float) -> dict[str, Any]:
    """The spec's `setup`, `verify` and `verify_timeout_s`, and the agent's time limit, from the
    task's recorded `.porter.yml` (None: the repository has none)."""
    config = config or {}
    setup = [str(c) for c in config.get("setup") or ()]
    verify = [str(c) for c in config.get("verify") or ()]
    configured = config.get("verify_timeout_s")
    per_phase = int(configured) if isinstance(configured, int) and configured > 0 \
        else DEFAULT_VERIFY_TIMEOUT_S
    # Never more than a third of what is left each: the agent keeps the larger part.
    per_phase = max(1, min(per_phase, int(remaining_s) // 3))
    reserved = per_phase * (bool(setup) + bool(verify))
    agent_s = max(MIN_AGENT_S, int(remaining_s) - REPORT_MARGIN_S - reserved)
    fields: dict[str, Any] = {"agent_timeout_s": agent_s}
    if setup or verify:
        fields.update(setup=setup, verify=verify, verify_timeout_s=per_phase)
    return fields
