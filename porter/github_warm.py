"""githubkit loads each REST namespace, with its models, the first time it is used: about half a
second of imports that the first requester after a start would wait for (👀 ~670 ms instead of
~20 ms in bench/latency.py). The runtime loads them at start, on a worker thread."""

from __future__ import annotations

import logging

from githubkit import GitHub

log = logging.getLogger(__name__)

# The REST namespaces porter/github.py, porter/github_user.py and porter/github_checks.py call.
NAMESPACES = ("apps", "repos", "issues", "reactions", "pulls", "git", "users", "checks")


def warm_up() -> None:
    """Import the namespaces now (no request is made: the client is never called). A failure
    only costs the first requester the wait."""
    try:
        client = GitHub("warm-up")
        for name in NAMESPACES:
            getattr(client.rest, name)
    except Exception:
        log.exception("loading githubkit's REST namespaces ahead of time failed")
