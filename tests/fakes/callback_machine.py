"""The agent machine of bench/latency.py: the entrypoint's callbacks with nothing in between.

The fake Fly starts one per machine with the machine's env (PORTER_URL, PORTER_RUN_ID,
PORTER_RUN_TOKEN) and a JSON plan in argv[1]: {"agent_s": seconds} or {"finish_at": epoch}.
It fetches its spec, reports the agent stage, waits as an agent would, then completes with a
one-file changeset on the spec's base commit, and prints `ACCEPTED <epoch>` once Porter has
answered 200: the bench measures the pull request from that moment. No clone, no sandbox: the
bench measures Porter, not git. Standard library only, like the real entrypoint.
"""

from __future__ import annotations

import base64
import json
import os
import random
import sys
import time
import urllib.error
import urllib.request
from typing import Any

ATTEMPTS = 6


def call(method: str, name: str, payload: Any = None) -> Any:
    """One callback, retried as the entrypoint retries (5xx, no answer: up to 6 attempts with
    backoff); each retry is printed, so the bench can say what Porter made its machines do."""
    url = f"{os.environ['PORTER_URL']}/api/runs/{os.environ['PORTER_RUN_ID']}/{name}"
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={  # noqa: S310
        "Authorization": f"Bearer {os.environ['PORTER_RUN_TOKEN']}",
        "Content-Type": "application/json",
    })
    for attempt in range(ATTEMPTS):
        try:
            with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code < 500 or attempt == ATTEMPTS - 1:
                raise
            why = f"HTTP {exc.code}"
        except OSError as exc:
            if attempt == ATTEMPTS - 1:
                raise
            why = type(exc).__name__
        print(f"RETRY {name} {why}", flush=True)
        time.sleep(min(30.0, 2.0 ** attempt) * random.uniform(0.5, 1.0))
    raise AssertionError("unreachable")


def main() -> int:
    plan = json.loads(sys.argv[1])
    spec = call("GET", "spec")
    call("POST", "heartbeat", {"stage": "agent", "message": "working"})
    finish_at = plan.get("finish_at") or time.time() + float(plan.get("agent_s", 0))
    time.sleep(max(0.0, finish_at - time.time()))
    text = f"# Hello\n\nThe greeting project, task {spec['task_id']}.\n"
    changeset = {"base_sha": spec["base_sha"], "message": "Fix the typo",
                 "files": [{"path": "README.md", "mode": "100644",
                            "content_b64": base64.b64encode(text.encode()).decode()}]}
    call("POST", "complete", {"status": "succeeded", "exit_code": 0, "changeset": changeset,
                              "summary": "Fixed the typo."})
    print(f"ACCEPTED {time.time():.6f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
