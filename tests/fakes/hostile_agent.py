"""A malicious coding agent (standard library only): it tries to break out, then reports.

argv[1] is a JSON object, or {"by_prompt": {word: object, ...}} to act by the first word found
in the prompt (one command line, two runs that behave differently):
  read     paths to read (Porter's database, key ring, private key, .env ...)
  list     directories to list (where other runs' workspaces live on the host)
  signal   host pids to SIGKILL (the test runner); every pid below 32768 is tried as well
  write    paths outside the checkout to create
  name     this agent's name: it writes <name>.txt, and report-<name>.json with all it found
  wait_for if set, wait (up to 120 s) until a file of that name appears in the checkout, then
           delete it: a test uses it to hold the agent while it does something else
argv[2:] are ignored (tests tag command lines with them).

Everything it sees goes into the report, which lands in the pull request, so a test can read
exactly what a hostile agent could get at.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import sys
import time
from typing import Any


def attempt(action: Any) -> dict[str, Any]:
    try:
        return {"ok": True, "value": action()}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def read_text(path: str) -> str:
    with open(path, "rb") as fh:
        return fh.read(1 << 20).decode("utf-8", "replace")


def processes() -> dict[str, Any]:
    """Every /proc entry this agent can see: environment, command line and working directory."""
    seen: dict[str, Any] = {}
    for entry in sorted(os.listdir("/proc")):
        if entry.isdigit():
            seen[entry] = {
                "environ": attempt(lambda e=entry: read_text(f"/proc/{e}/environ")),
                "cmdline": attempt(lambda e=entry: read_text(f"/proc/{e}/cmdline")),
                "cwd": attempt(lambda e=entry: os.readlink(f"/proc/{e}/cwd")),
            }
    return seen


def readable_under(top: str) -> list[str]:
    """Every file under `top` this agent can open for reading."""
    found = []
    for root, _dirs, files in os.walk(top):
        for name in files:
            path = os.path.join(root, name)
            try:
                with open(path, "rb") as fh:
                    fh.read(1)
            except OSError:
                continue
            found.append(path)
    return sorted(found)


def other_workspaces() -> list[str]:
    """Checkouts of other runs, wherever a sandbox might leak them."""
    found = set()
    for pattern in ("/tmp/porter-run-*", "/tmp/*/porter-run-*", "/*/porter-run-*",
                    "/proc/*/cwd/*", "/proc/*/root/tmp/porter-run-*"):
        found.update(glob.glob(pattern))
    own = {os.path.realpath("/workspace")}
    return sorted(p for p in found if os.path.realpath(p) not in own
                  and not os.path.realpath(p).startswith("/workspace/"))


def signals(pids: list[int]) -> dict[str, Any]:
    """SIGKILL the given pids and every other pid number: what went through (a kill that
    reached Porter or another run would show here; only our own sandbox may answer)."""
    own = {1, os.getpid()}  # the sandbox's init ignores it; ourselves, we skip
    tried = {str(pid): attempt(lambda pid=pid: os.kill(pid, signal.SIGKILL)) for pid in pids}
    for pid in range(2, 32768):
        if pid not in own and str(pid) not in tried:
            outcome = attempt(lambda pid=pid: os.kill(pid, 0))  # 0: probe, never harm
            if outcome["ok"]:
                tried[str(pid)] = outcome
    return tried


def main() -> int:
    config = json.loads(sys.argv[1])
    if "by_prompt" in config:
        prompt = read_text(os.environ["PORTER_PROMPT_FILE"])
        config = next(c for word, c in config["by_prompt"].items() if word in prompt)
    name = config["name"]
    with open(f"{name}.txt", "w", encoding="utf-8") as fh:
        fh.write(f"written by {name}\n")
    if config.get("wait_for"):
        gate = config["wait_for"]
        deadline = time.monotonic() + 120
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.1)
        os.remove(gate)
    report = {
        "uid": os.getuid(),
        "cwd": os.getcwd(),
        "processes": processes(),
        "reads": {p: attempt(lambda p=p: read_text(p)) for p in config.get("read", [])},
        "lists": {p: attempt(lambda p=p: sorted(os.listdir(p))) for p in config.get("list", [])},
        "other_workspaces": other_workspaces(),
        "etc_readable": readable_under("/etc"),
        "signals": signals(config.get("signal", [])),
        "writes": {p: attempt(lambda p=p: open(p, "w").close()) for p in config.get("write", [])},
    }
    with open(f"report-{name}.json", "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=1, sort_keys=True)
    print(f"{name} is done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
