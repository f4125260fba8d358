"""Start the entrypoint: `python3 porter_entrypoint/` from a source tree (the local runner),
`python3 porter-entrypoint.pyz` in the image (a zipapp of this directory).

Either way Python runs this file as a script, with this directory (or the .pyz) first on
sys.path and no package around it; the package is made importable under its own name from
there, so every module imports its siblings as `porter_entrypoint.<module>` however it is run.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import signal
import sys
import threading
from typing import Any

if not __package__:
    _spec = importlib.machinery.ModuleSpec("porter_entrypoint", None, is_package=True)
    assert _spec.submodule_search_locations is not None
    _spec.submodule_search_locations.append(os.path.dirname(os.path.abspath(__file__)))
    sys.modules["porter_entrypoint"] = importlib.util.module_from_spec(_spec)

from porter_entrypoint import run, sandbox, spec


def check_sandbox(argv: list[str]) -> int:
    """`--porter-sandbox-check`: what the local runner and `porter doctor` ask before a run."""
    try:
        policy = spec.sandbox_policy(argv)
        if policy is not None:
            sandbox.self_check(policy)
    except (spec.ConfigError, sandbox.SandboxUnavailable) as exc:
        sys.stderr.write(f"{exc}\n")
        return run.EXIT_NO_SANDBOX
    return 0


def main() -> int:
    terminate = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        sys.stderr.write(f"porter: received {signal.Signals(signum).name}; stopping\n")
        terminate.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    argv = sys.argv[1:]
    if spec.SANDBOX_CHECK in argv:
        return check_sandbox(argv)
    try:
        config = spec.load_config(dict(os.environ), argv)
    except spec.ConfigError as exc:
        sys.stderr.write(f"porter: {exc}\n")
        return run.EXIT_NO_SPEC
    this_run = run.Run(config, terminate)
    try:
        return this_run.execute()
    except Exception as exc:
        return this_run.report_crash(exc)


if __name__ == "__main__":
    sys.exit(main())
