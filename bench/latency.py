"""Reaction latency: how soon Porter answers a comment, starts a machine and opens the pull
request, on loopback fakes, against the bare round trip of one write to the fake GitHub.

    uv run python bench/latency.py [--quick] [--only single,spread,busy]

Each scenario gets a fresh world (tests/e2e/served_world.py): the fake GitHub backed by real git,
the fake Fly Machines API, a real `porter serve` (fly runner) and, as each machine, a stand-in
for the entrypoint (tests/fakes/callback_machine.py) that fetches its spec, "works" for a while and
completes with a one-file changeset. Comments are real signed webhooks over HTTP, so the
figures include the real intake. Times are taken where things happen: the fakes stamp each
request as it arrives, the machine stamps Porter's 200 to its `complete`.

- single: tasks one at a time on one installation (each after the last one's writes settled);
- spread: 10 installations × 5 tasks delivered at once, their machines finishing at once;
- busy: 20 tasks at once on one installation, 5 s agents, live-task limits raised to 20.

Goals, each printed PASS or MISS. `single`: 👀 ≤ 300 ms p50; the status comment ≤ 1 s; the
machine create at the fake Fly ≤ 100 ms p50 (all from the comment delivered); the PR ≤ 1 s
after `complete` is accepted. `spread`: no installation's first 👀 later than 1 s. `busy`: each
PR ≤ 10 s after its `complete`, and at most 80 content-creating requests (comments, PRs,
reactions) in any minute and 500 in any hour per installation (GitHub's secondary limits).
A burst's other steps are printed as figures, not graded by the one-task goals. Each task's
Check Run (a job of its own after the pull request, charged as a cosmetic creation) is waited
for and shown as a figure, and its creation counts in the windows.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.latency_stats import HEADER, Goal, Step, window_lines  # noqa: E402
from tests.e2e.served_world import Sample, Seen, World  # noqa: E402

EYES, STATUS, CREATE, PR = (Goal(300), Goal(1000, "max"), Goal(100), Goal(1000, "max"))


@dataclass(frozen=True)
class Sizes:
    single: int
    installations: int
    per_installation: int
    finish_after: float  # spread: machines complete this long after the burst
    busy: int
    busy_agent_s: float


FULL = Sizes(single=5, installations=10, per_installation=5, finish_after=10.0, busy=20,
             busy_agent_s=5.0)
QUICK = Sizes(single=2, installations=3, per_installation=2, finish_after=4.0, busy=4,
              busy_agent_s=2.0)


@dataclass(frozen=True)
class Context:
    workdir: Path
    sizes: Sizes
    baseline_ms: float
    porter: Path | None  # --porter: another source tree's Porter is served

    def world(self, *, installations: int, issues: int, **env: int) -> World:
        return World(self.workdir, installations=installations, issues=issues,
                     env={f"PORTER_{k.upper()}": str(v) for k, v in env.items()},
                     porter=self.porter)


def steps(samples: list[Sample], seen: Seen, *, pr_goal: Goal | None,
          per_task: bool) -> list[Step]:
    """The steps of each task. `per_task`: grade them by the goals for one task at a time (the
    issue's table); a burst is graded by its own goals, and these are shown as figures only."""
    def since(found: dict[int, float], start: Callable[[Sample], float | None]) -> list[
            float | None]:
        out: list[float | None] = []
        for s in samples:
            begun = start(s)
            out.append(found[s.task_id] - begun if s.task_id in found and begun else None)
        return out

    delivered = since({s.task_id: s.answered for s in samples}, lambda s: s.delivered)
    return [
        Step("webhook answered (202)", delivered),
        Step("👀 reaction", since(seen.eyes, lambda s: s.delivered),
             EYES if per_task else None),
        Step("status comment", since(seen.status, lambda s: s.delivered),
             STATUS if per_task else None),
        Step("machine create (at the fake Fly)", since(seen.create, lambda s: s.delivered),
             CREATE if per_task else None),
        Step("PR opened, after complete accepted",
             since(seen.pr, lambda s: seen.accepted.get(s.task_id)), pr_goal),
        Step("check run completed, after complete", since(
            seen.check, lambda s: seen.accepted.get(s.task_id))),
    ]


def report(title: str, samples: list[Sample], seen: Seen, states: dict[int, str],
           baseline_ms: float, *, pr_goal: Goal | None = PR, per_task: bool = True,
           check_windows: bool = False) -> list[str]:
    lines = [f"== {title}", HEADER]
    lines += [step.line(baseline_ms)
              for step in steps(samples, seen, pr_goal=pr_goal, per_task=per_task)]
    bad = {t: s for t, s in states.items() if s != "succeeded"}
    unfinished = [s.task_id for s in samples if s.task_id not in states]
    if bad or unfinished:
        lines.append(f"  not succeeded: {bad} unfinished: {unfinished}")
    lines += [f"  machine of task {t}: {why}" for t, why in sorted(seen.machine_errors.items())]
    if seen.retries:
        lines.append(f"  machines retried {len(seen.retries)} callbacks: "
                     + ", ".join(f"{why} ×{n}" for why, n in Counter(seen.retries).items()))
    lines += window_lines(seen.creations, check=check_windows)
    return lines


async def single(ctx: Context) -> list[str]:
    sizes = ctx.sizes
    world = ctx.world(installations=1, issues=sizes.single)
    world.plan = {"agent_s": 0.2}
    samples, states = [], {}
    async with world.running():
        warm = await world.warm_up()
        [repo] = world.repos
        for number in range(1, sizes.single + 1):
            sample = await world.deliver(world.comment(repo, number))
            samples.append(sample)
            states.update(await world.settled([sample.task_id], within=60))
            await world.quiet(1.5)  # the last task's writes settled: the next meets an idle Porter
        seen = world.seen(samples)
        cold = world.seen([warm])
    lines = report(f"single: {sizes.single} tasks one at a time", samples, seen, states,
                   ctx.baseline_ms)
    firsts = ", ".join(f"{name} {1000 * (found[warm.task_id] - warm.delivered):.0f} ms"
                       for name, found in (("👀", cold.eyes), ("status", cold.status),
                                           ("machine create", cold.create))
                       if warm.task_id in found)
    lines.append(f"  (not counted: the first task after start, on another installation: "
                 f"{firsts})")
    return lines


async def burst(world: World, numbers: list[tuple[str, int]]) -> list[Sample]:
    deliveries = [world.comment(repo, number) for repo, number in numbers]
    return list(await asyncio.gather(*(world.deliver(d) for d in deliveries)))


async def spread(ctx: Context) -> list[str]:
    sizes, baseline_ms = ctx.sizes, ctx.baseline_ms
    n = sizes.installations * sizes.per_installation
    world = ctx.world(installations=sizes.installations, issues=sizes.per_installation,
                      max_live_tasks=n, max_live_per_installation=sizes.per_installation)
    async with world.running():
        await world.warm_up()
        world.plan = {"finish_at": time.time() + sizes.finish_after}
        samples = await burst(world, [(repo, number) for number in
                                      range(1, sizes.per_installation + 1)
                                      for repo in world.repos])
        states = await world.settled([s.task_id for s in samples], within=150)
        await world.checked([s.task_id for s in samples], within=120)
        seen = world.seen(samples)
    lines = report(f"spread: {n} tasks in {sizes.installations} installations at once, "
                   f"finishing at once", samples, seen, states, baseline_ms,
                   pr_goal=None, per_task=False)
    firsts = []
    for installation in sorted({s.delivery.installation for s in samples}):
        mine = [s for s in samples if s.delivery.installation == installation]
        eyes = [seen.eyes[s.task_id] for s in mine if s.task_id in seen.eyes]
        firsts.append(min(eyes) - min(s.delivered for s in mine) if eyes else None)
    lines.append(Step("first 👀 of each installation", firsts, Goal(1000, "max"))
                 .line(baseline_ms))
    lines.append(fly_pacing(n))
    return lines


async def busy(ctx: Context) -> list[str]:
    sizes = ctx.sizes
    world = ctx.world(installations=1, issues=sizes.busy, max_live_tasks=sizes.busy,
                      max_live_per_installation=sizes.busy)
    world.plan = {"agent_s": sizes.busy_agent_s}
    async with world.running():
        await world.warm_up()
        [repo] = world.repos
        samples = await burst(world, [(repo, n) for n in range(1, sizes.busy + 1)])
        states = await world.settled([s.task_id for s in samples], within=240)
        await world.checked([s.task_id for s in samples], within=180)
        seen = world.seen(samples)
    lines = report(f"busy: {sizes.busy} tasks at once on one installation, "
                   f"{sizes.busy_agent_s:g} s agents", samples, seen, states, ctx.baseline_ms,
                   pr_goal=Goal(10_000, "max"), per_task=False, check_windows=True)
    start = min(s.delivered for s in samples)
    if prs := [seen.pr[s.task_id] for s in samples if s.task_id in seen.pr]:
        lines.append(f"  PRs opened {min(prs) - start:.1f} s (first) to "
                     f"{max(prs) - start:.1f} s (last) after the burst")
    lines.append(fly_pacing(sizes.busy))
    return lines


def fly_pacing(creates: int) -> str:
    """Fly allows 1 machine create a second per app, bursts of 3 (docs/platform-notes.md §A.6),
    and Porter's client queues to it: under a burst, the create goal cannot be met."""
    return (f"  (Fly's documented 1 create/s per app, bursts of 3, puts the last of {creates} "
            f"creates ≥ {max(0, creates - 3)} s after the first)")


SCENARIOS: dict[str, Callable[[Context], Awaitable[list[str]]]] = {
    "single": single, "spread": spread, "busy": busy}


async def baseline() -> float:
    workdir = Path(tempfile.mkdtemp(prefix="porter-bench-latency-"))
    try:
        world = World(workdir, installations=0, issues=0)
        async with world.fake.serve():
            return statistics.median(await world.baseline(30)) * 1000
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def main_async(args: argparse.Namespace) -> int:
    sizes = QUICK if args.quick else FULL
    started = time.monotonic()
    base = await baseline()
    print(f"baseline: one write to the fake GitHub (a reaction, loopback, kept alive) "
          f"p50 {base:.1f} ms; figures are from the comment delivered unless said otherwise")
    for name in args.only.split(","):
        workdir = Path(tempfile.mkdtemp(prefix=f"porter-bench-latency-{name}-"))
        try:
            lines = await SCENARIOS[name](Context(workdir, sizes, base, args.porter))
        finally:
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
        print("\n".join(lines), flush=True)
    print(f"({time.monotonic() - started:.0f} s)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run: fewer tasks")
    parser.add_argument("--only", default="single,spread,busy",
                        help="comma-separated scenarios (single, spread, busy)")
    parser.add_argument("--porter", type=Path, help="serve the `porter` package of this "
                        "source tree instead (e.g. an older commit's, from `git archive`)")
    parser.add_argument("--keep", action="store_true",
                        help="keep each scenario's directory (porter.log, database)")
    args = parser.parse_args()
    return uvloop.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
