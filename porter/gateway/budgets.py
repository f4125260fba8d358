"""Whether a run may make another model call, given what it and its requester have spent. Pure.

Two budgets, both settings, both off when unset or 0:
- PORTER_RUN_BUDGET_USD: what one run (one attempt of a task) may spend through the gateway;
- PORTER_USER_DAILY_BUDGET_USD: what one requester's runs may spend together in a UTC day (from
  00:00 UTC), across all their tasks and repositories. A requester is known by GitHub user id; a
  task without one has no daily budget.

A budget is checked before each call is forwarded, against the calls already finished: a call
starts only while spending is under the budget. Calls in flight finish, and the one that crosses
the line is paid for, so spending can end a call's worth over; the next call is refused (402) and
the task ends `failed` at stage `budget`, saying which budget and by how much.
"""

from __future__ import annotations

from dataclasses import dataclass

DAY = 86_400.0


@dataclass(frozen=True)
class Budgets:
    per_run: float | None = None  # USD; None: no budget
    per_user_daily: float | None = None
    per_run_from: str = "PORTER_RUN_BUDGET_USD"  # or a repository's .porter.yml: the reason says

    @classmethod
    def of(cls, per_run: float | None, per_user_daily: float | None, *,
           per_run_from: str = "PORTER_RUN_BUDGET_USD") -> Budgets:
        """From the settings' values, where 0 means no budget as unset does."""
        return cls(per_run or None, per_user_daily or None, per_run_from)

    @property
    def any(self) -> bool:
        return self.per_run is not None or self.per_user_daily is not None


@dataclass(frozen=True)
class Over:
    """A budget spent: which, how much, and what the task and the agent are told."""

    budget: str  # "run" or "user"
    spent: float
    limit: float
    reason: str


def check(budgets: Budgets, *, run_spent: float, user_spent: float | None,
          requester: str) -> Over | None:
    """The budget the next call would go over, or None while it may go ahead. `user_spent`
    None: the requester's daily spending is not known (no user id), so it is not limited."""
    if budgets.per_run is not None and run_spent >= budgets.per_run:
        return Over("run", run_spent, budgets.per_run,
                    f"the run is over its per-run budget: {spent_of(run_spent, budgets.per_run)}"
                    f" ({budgets.per_run_from})")
    if budgets.per_user_daily is not None and user_spent is not None \
            and user_spent >= budgets.per_user_daily:
        return Over("user", user_spent, budgets.per_user_daily,
                    f"@{requester} is over their daily budget: "
                    f"{spent_of(user_spent, budgets.per_user_daily)} today (UTC) "
                    "(PORTER_USER_DAILY_BUDGET_USD)")
    return None


def day_start(now: float) -> float:
    """00:00 UTC of `now`'s day: where a daily budget starts again."""
    return now - now % DAY


def spent_of(spent: float, limit: float) -> str:
    """`$5.02 spent of $5.00`, with more digits when cents alone would show them equal."""
    digits = 2
    while digits < 6 and round(spent, digits) == round(limit, digits) and spent != limit:
        digits += 1
    return f"${spent:.{digits}f} spent of ${limit:.{digits}f}"

