#!/usr/bin/env python3
"""Stand-ins for the real agent CLIs (standard library only), run by the real entrypoint through
Porter's own command lines (porter/agents.py): `codex`, `aider` and `gemini` are links to this
file, which acts as the one it is called as, printing what the real one printed in
docs/platform-notes.md §E.2.

It records how it was run (argv, environment, the files in HOME) in $HOME/fake-cli-run.json,
for the test to read from the kept workspace. FAKE_CLI_MODE picks what it does:
  ok (default)  edit README.md and finish, as the real CLI does on success
  api_error     aider only: its model calls fail; it says so and exits 0, changing nothing
  stall         codex only: the model API cannot be reached; it waits forever, saying so
"""

from __future__ import annotations

import json
import os
import sys
import time

FINAL = "Fixed the typo in README.md: Teh is now The."


def record(name: str) -> None:
    home = os.environ["HOME"]
    files = {}
    for root, _dirs, names in os.walk(home):
        for file in names:
            path = os.path.join(root, file)
            with open(path, encoding="utf-8", errors="replace") as fh:
                files[os.path.relpath(path, home)] = fh.read()
    with open(os.path.join(home, "fake-cli-run.json"), "w", encoding="utf-8") as fh:
        json.dump({"name": name, "argv": sys.argv[1:], "env": dict(os.environ),
                   "home_files": files}, fh)


def fix_readme() -> None:
    with open("README.md", encoding="utf-8") as fh:
        text = fh.read()
    with open("README.md", "w", encoding="utf-8") as fh:
        fh.write(text.replace("Teh", "The"))


def codex(mode: str) -> int:
    argv = sys.argv[1:]
    prompt = argv[-1]
    last = argv[argv.index("--output-last-message") + 1] \
        if "--output-last-message" in argv else None
    err = sys.stderr
    err.write("[2026-12-01T10:00:00] OpenAI Codex v0.169.0 (research preview)\n--------\n"
              "workdir: /workspace\nmodel: gpt-5-codex\nprovider: porter\n--------\n"
              f"[2026-12-01T10:00:00] User instructions:\n{prompt}\n\n")
    err.flush()
    if mode == "stall":
        attempt = 0
        while True:
            attempt += 1
            err.write(f"[2026-12-01T10:00:{attempt % 60:02d}] stream error: Reconnecting... "
                      f"{attempt % 5 + 1}/5\nwaiting for network\n")
            err.flush()
            time.sleep(0.2)
    err.write("[2026-12-01T10:00:05] thinking\nLooking at README.md\n"
              "[2026-12-01T10:00:09] apply_patch README.md\n")
    fix_readme()
    err.write("[2026-12-01T10:00:10] codex\n")
    err.flush()
    print(FINAL, flush=True)
    err.write("[2026-12-01T10:00:10] tokens used: 5120\n")
    if last is not None:
        with open(last, "w", encoding="utf-8") as fh:
            fh.write(FINAL + "\n")
    return 0


def aider(mode: str) -> int:
    print("Aider v0.86.2\nMain model: anthropic/claude-sonnet-4-5 with diff edit format\n"
          "Git repo: .git with 1 files\nRepo-map: using 4096 tokens, auto refresh", flush=True)
    if mode == "api_error":
        print('litellm.AuthenticationError: AnthropicException - {"type":"error","error":'
              '{"type":"authentication_error","message":"invalid x-api-key"}}\n'
              "The API provider is not able to authenticate you. Check your API key.")
        return 0
    fix_readme()
    print("Applied edit to README.md\nTokens: 2.1k sent, 30 received.")
    return 0


def gemini(mode: str) -> int:
    fix_readme()
    print(FINAL)
    return 0


def main() -> int:
    name = os.path.basename(sys.argv[0])
    record(name)
    mode = os.environ.get("FAKE_CLI_MODE", "ok")
    return {"codex": codex, "aider": aider, "gemini": gemini}[name](mode)


if __name__ == "__main__":
    sys.exit(main())
