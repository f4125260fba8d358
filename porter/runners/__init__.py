"""Where agent machines run: a Fly Machine (FlyRunner) or a local subprocess (LocalRunner)."""

from __future__ import annotations

from porter.runners.base import LaunchRequest, Machine, MachineState, Runner, RunnerError
from porter.runners.fly import FlyRunner
from porter.runners.local import LocalRunner

__all__ = [
    "FlyRunner",
    "LaunchRequest",
    "LocalRunner",
    "Machine",
    "MachineState",
    "Runner",
    "RunnerError",
]
