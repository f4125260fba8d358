"""A scripted stand-in for a coding agent (standard library only, any Python 3.11).

Run in the checkout by the container entrypoint. The script is a JSON list of steps taken from
argv[1] or, if absent, from the SCRIPT environment variable. Each step is an object with "op":

  write {path, text}            write_b64 {path, data}       delete {path}
  chmod {path, mode: "755"}     symlink {path, target}       git {args: [...]}
  print {text, stream?}         print_secret {var, style: raw|base64|split|halves}
  read_stdin                    dump {path}  (JSON: env, ids, cwd, stdin, prompt file, .git/config)
  ready                         (prints "AGENT-READY pid=<pid>" so a test can react to it)
  spawn_sleeper {seconds, tag?} (a child process in the same group; prints "SLEEPER pid=<pid>")
  ignore_sigterm                sleep {seconds}
  wait_for {path}               (holds until the file appears in the checkout, then deletes it:
                                 a test writes it from the host when the agent may go on)
  claude_result {...fields}     (prints one Claude Code style JSON result line)
  exit {code}                   signal {name: "SIGSEGV"}
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

state: dict[str, Any] = {"stdin": None}


def out(text: str, stream: str = "stdout") -> None:
    target = sys.stderr if stream == "stderr" else sys.stdout
    target.write(text if text.endswith("\n") else text + "\n")
    target.flush()


def step(op: dict[str, Any]) -> None:
    kind = op["op"]
    path = op.get("path", "")
    if kind == "write":
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(op["text"])
    elif kind == "write_b64":
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(base64.b64decode(op["data"]))
    elif kind == "delete":
        os.remove(path)
    elif kind == "chmod":
        os.chmod(path, int(op["mode"], 8))
    elif kind == "symlink":
        os.symlink(op["target"], path)
    elif kind == "git":
        subprocess.run(["git", *op["args"]], check=True, stdout=sys.stderr)
    elif kind == "print":
        out(op["text"], op.get("stream", "stdout"))
    elif kind == "print_secret":
        secret = os.environ[op["var"]]
        style = op["style"]
        if style == "raw":
            out(f"the key is {secret} (raw)")
        elif style == "base64":
            out("encoded: " + base64.b64encode(f"user:{secret}".encode()).decode())
        elif style == "halves":  # two writes with a pause: a log flush falls in between
            half = len(secret) // 2
            sys.stdout.write(f"slow: {secret[:half]}")
            sys.stdout.flush()
            time.sleep(float(op.get("pause", 0.7)))
            out(f"{secret[half:]} end")
        else:
            half = len(secret) // 2
            out(f"wrapped: {secret[:half]}\n{secret[half:]} end")
    elif kind == "read_stdin":
        state["stdin"] = sys.stdin.read()
    elif kind == "dump":
        prompt_file = os.environ.get("PORTER_PROMPT_FILE", "")
        try:
            with open(".git/config", encoding="utf-8") as fh:
                git_config = fh.read()
        except OSError:
            git_config = None
        try:
            with open(prompt_file, encoding="utf-8") as fh:
                prompt = fh.read()
        except OSError:
            prompt = None
        record = {
            "env": dict(os.environ),
            "uid": os.getuid(),
            "gid": os.getgid(),
            "groups": os.getgroups(),
            "cwd": os.getcwd(),
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "pgid": os.getpgid(0),
            "sid": os.getsid(0),
            "stdin": state["stdin"],
            "prompt_file": prompt,
            "git_config": git_config,
        }
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(record, fh)
    elif kind == "ready":
        out(f"AGENT-READY pid={os.getpid()}")
    elif kind == "spawn_sleeper":
        # The tag lets a test find the sleeper from outside the sandbox's PID namespace.
        code = f"import time; time.sleep({float(op['seconds'])})  # {op.get('tag', '')}"
        child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL)
        out(f"SLEEPER pid={child.pid}")
    elif kind == "ignore_sigterm":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    elif kind == "sleep":
        time.sleep(float(op["seconds"]))
    elif kind == "wait_for":
        while not os.path.exists(path):
            time.sleep(0.05)
        os.remove(path)
    elif kind == "claude_result":
        fields = {k: v for k, v in op.items() if k != "op"}
        out(json.dumps({"type": "result", **fields}))
    elif kind == "exit":
        sys.exit(int(op["code"]))
    elif kind == "signal":
        sys.stdout.flush()
        os.kill(os.getpid(), getattr(signal, op["name"]))
        time.sleep(5)
    else:
        raise SystemExit(f"scripted_agent: unknown op {kind!r}")


def main() -> int:
    raw = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("SCRIPT", "[]")
    for op in json.loads(raw):
        step(op)
    return 0


if __name__ == "__main__":
    sys.exit(main())
