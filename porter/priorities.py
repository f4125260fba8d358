"""Which job goes first when several are due: a pure function of the job's kind and payload.

The store computes it as each job is written (`put_job`), and claims jobs by priority, then due
time, then age, so within a priority it is first come, first served. Lower runs sooner:

- the 👀 that tells a requester Porter heard them goes before everything;
- a finished task's publish (commit and PR), and a machine launch, come next: someone waits;
- replies, commands and machine clean-up in between;
- cosmetic writes last: status re-renders and final reactions, which a newer one can supersede.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from porter.states import REACT_JOB, STATUS_JOB

ACKNOWLEDGE = 0
PUBLISH = 10
DEFAULT = 20
COSMETIC = 30

# Kind names as porter/publisher.py and porter/launcher.py spell them: written out here because
# the store, which calls this, must not import the services.
_BY_KIND = {
    "publish": PUBLISH,
    "machine.launch": PUBLISH,
    STATUS_JOB: COSMETIC,
}


def priority(kind: str, payload: Mapping[str, Any]) -> int:
    if kind == REACT_JOB:
        return ACKNOWLEDGE if payload.get("content") == "eyes" else COSMETIC
    return _BY_KIND.get(kind, DEFAULT)
