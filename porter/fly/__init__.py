"""Fly Machines API (docs/platform-notes.md §A), one concern a module: `shapes` (pure request
and response shapes), `limits` (the per-action rate limiter) and `client` (HTTP, one attempt a
call; the job runner retries)."""

from porter.fly.client import FlyClient, FlyRetryLater, MachineNameTaken
from porter.fly.shapes import FlyMachine, MachineSpec, authorization_header, exit_info

__all__ = [
    "FlyClient",
    "FlyMachine",
    "FlyRetryLater",
    "MachineNameTaken",
    "MachineSpec",
    "authorization_header",
    "exit_info",
]
