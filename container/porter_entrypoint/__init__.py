"""Porter's agent-container entrypoint (standard library only).

Runs inside an ephemeral machine whose only environment is PORTER_URL, PORTER_RUN_ID and
PORTER_RUN_TOKEN. It fetches the run spec, clones the repository at the base commit, runs the
coding agent in its sandbox with a clean environment, streams redacted logs and heartbeats,
collects the changes as a changeset and reports the result. Whatever happens, it tries hard to
report: Porter must never lose a run silently.

Run it as `python3 porter_entrypoint/` (a source tree) or `python3 porter-entrypoint.pyz` (the
image's zipapp of this directory); see __main__.py.

Knobs read from the entrypoint's own environment (never passed to the agent), mostly for tests:
  PORTER_CALLBACK_BACKOFF_S   base delay of the callback retry backoff (default 1; cap = 60 x base)
  PORTER_COMPLETE_DEADLINE_S  how long to keep retrying the complete callback (default 900)
  PORTER_KILL_GRACE_S         SIGTERM -> SIGKILL grace for the agent's process group (default 10)
  PORTER_WORKDIR              where the per-run workspace is created (default: the temp dir)
  PORTER_KEEP_WORKSPACE       "1" keeps the workspace after the run (debugging)
Arguments, set by whoever starts the machine (the local runner, or the image's ENTRYPOINT):
  --porter-sandbox-ro=PATH    show a host path read-only inside the agent's sandbox (repeatable)
  --porter-sandbox-hide=PATH  mask a host path even where a read-only path would show it
  --porter-unsandboxed        run the agent without bubblewrap (the operator asked, loudly)
  --porter-sandbox-check      only check that the sandbox works here; exit 0 or say why, exit 3
  --porter-workdir=DIR        where the run's workspace is made (wins over PORTER_WORKDIR)
  --porter-agent-pidfile=FILE where to write the agent's pid and start time (the local runner)
Exit status: 0 = Porter accepted the result (even a failed run), 1 = the result could not be
reported, 2 = no usable configuration or spec.

Modules, in the order a run uses them:
  spec        configuration, the runner's arguments, the run spec
  callbacks   HTTP to Porter: callbacks with the run token, backoff, the spec fetch
  redact      the entrypoint's own secrets, kept out of everything it prints or sends
  streams     transcript, log shipper, heartbeats
  processes   process groups: stopping a whole tree, interruptible helper commands
  sandbox     the bubblewrap sandbox every agent process (and collecting git) runs in
  git         the clone at the base commit, with the read token only in git's environment
  agent       the agent's clean environment and HOME, running and supervising it
  progress    whether the agent still says anything new (a stalled agent is stopped)
  output      what the agent's output says: summary, cost, API errors, exit, commit message
  changeset   the agent's changes against the base commit
  result      the outcome and delivering it to Porter (`complete`)
  run         one run, end to end
"""
