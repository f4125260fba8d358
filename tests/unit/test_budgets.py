"""Budget decisions (porter/gateway/budgets.py) and their settings."""

from __future__ import annotations

import calendar

import pytest

from porter.errors import ConfigError
from porter.gateway.budgets import Budgets, check, day_start, spent_of
from porter.settings import Settings
from porter.settings.parse import money


def test_unset_or_zero_is_no_budget() -> None:
    assert Budgets.of(0, 0) == Budgets(None, None)
    assert not Budgets.of(0, 0).any
    assert check(Budgets.of(0, 0), run_spent=1e9, user_spent=1e9, requester="alice") is None
    settings = Settings.from_mapping({})
    assert (settings.run_budget_usd, settings.user_daily_budget_usd) == (0, 0)


def test_settings_read_dollar_amounts() -> None:
    settings = Settings.from_mapping({"PORTER_RUN_BUDGET_USD": "5",
                                      "PORTER_USER_DAILY_BUDGET_USD": "$20.50"})
    assert settings.run_budget_usd == 5.0
    assert settings.user_daily_budget_usd == 20.5
    for bad in ("-1", "five", "inf", "nan", "1e999"):
        with pytest.raises(ValueError, match="US dollars"):
            money(bad)
    with pytest.raises(ConfigError, match="PORTER_RUN_BUDGET_USD"):
        Settings.from_mapping({"PORTER_RUN_BUDGET_USD": "lots"})


def test_a_run_under_its_budget_may_call() -> None:
    budgets = Budgets.of(5.0, 20.0)
    assert check(budgets, run_spent=4.99, user_spent=19.99, requester="alice") is None


def test_a_run_at_or_over_its_budget_is_refused() -> None:
    budgets = Budgets.of(5.0, 0)
    over = check(budgets, run_spent=5.02, user_spent=None, requester="alice")
    assert over is not None and over.budget == "run"
    assert over.reason == ("the run is over its per-run budget: $5.02 spent of $5.00 "
                           "(PORTER_RUN_BUDGET_USD)")
    assert check(budgets, run_spent=5.0, user_spent=None, requester="alice") is not None


def test_the_daily_budget_counts_the_requester_s_spending_today() -> None:
    budgets = Budgets.of(0, 20.0)
    over = check(budgets, run_spent=0.0, user_spent=20.10, requester="alice")
    assert over is not None and over.budget == "user"
    assert over.reason == ("@alice is over their daily budget: $20.10 spent of $20.00 today "
                           "(UTC) (PORTER_USER_DAILY_BUDGET_USD)")
    # unknown requester id: no daily budget can be kept
    assert check(budgets, run_spent=0.0, user_spent=None, requester="alice") is None


def test_the_run_budget_is_named_first_when_both_are_spent() -> None:
    over = check(Budgets.of(1.0, 1.0), run_spent=2.0, user_spent=3.0, requester="bob")
    assert over is not None and over.budget == "run"


def test_amounts_show_the_digits_that_tell_them_apart() -> None:
    assert spent_of(5.02, 5.0) == "$5.02 spent of $5.00"
    assert spent_of(5.0012, 5.0) == "$5.001 spent of $5.000"
    assert spent_of(5.0, 5.0) == "$5.00 spent of $5.00"


def test_a_day_starts_at_midnight_utc() -> None:
    noon = calendar.timegm((2026, 12, 1, 12, 30, 0))
    assert day_start(noon) == calendar.timegm((2026, 12, 1, 0, 0, 0))
    assert day_start(calendar.timegm((2026, 12, 1, 0, 0, 0))) == \
        calendar.timegm((2026, 12, 1, 0, 0, 0))
    assert day_start(calendar.timegm((2026, 12, 1, 23, 59, 59))) == \
        calendar.timegm((2026, 12, 1, 0, 0, 0))
