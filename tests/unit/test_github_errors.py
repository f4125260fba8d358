"""What a GitHub error answer means: porter/github_errors.py (docs/platform-notes.md §C.6)."""

from __future__ import annotations

import pytest

from porter.github_errors import SECONDARY_LIMIT_WAIT, failed

NOW = 1_700_000_000.0
SECONDARY = {"message": "You have exceeded a secondary rate limit. Please wait a few minutes "
                        "before you try again."}


def test_retry_after_wins() -> None:
    error = failed(403, {"Retry-After": "7", "X-RateLimit-Remaining": "0",
                         "X-RateLimit-Reset": str(int(NOW) + 30)}, SECONDARY, now=NOW)
    assert (error.retryable, error.retry_after) == (True, 7.0)


def test_a_spent_primary_limit_waits_until_it_resets() -> None:
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 30)}
    error = failed(403, headers, {"message": "API rate limit exceeded for installation."},
                   now=NOW)
    assert (error.retryable, error.retry_after) == (True, 30.0)
    assert error.message == "GitHub answered 403: API rate limit exceeded for installation."


@pytest.mark.parametrize("status", [403, 429])
def test_a_secondary_limit_known_only_from_the_message_waits_a_minute(status: int) -> None:
    error = failed(status, {}, SECONDARY, now=NOW)
    assert (error.retryable, error.retry_after) == (True, SECONDARY_LIMIT_WAIT)


def test_other_refusals_are_final_and_say_nothing_about_waiting() -> None:
    for status, body in ((403, {"message": "Resource not accessible by integration"}),
                         (404, {"message": "Not Found"}), (422, SECONDARY)):
        error = failed(status, {}, body, now=NOW)
        assert (error.status, error.retryable, error.retry_after) == (status, False, None)


def test_server_errors_and_timeouts_are_retried() -> None:
    for status in (408, 500, 502, 503):
        assert failed(status, {}, None, now=NOW).retryable


def test_the_message_carries_the_details_and_is_bounded() -> None:
    body = {"message": "Validation Failed",
            "errors": [{"code": "custom", "message": "A pull request already exists"},
                       {"code": "missing_field"}, "plain"]}
    assert failed(422, {}, body, now=NOW).message == (
        "GitHub answered 422: Validation Failed "
        "(A pull request already exists; missing_field; plain)")
    assert failed(500, {}, None, now=NOW).message == "GitHub answered 500: no details"
    assert failed(500, {}, ["not", "an", "object"], now=NOW).message.endswith("no details")
    long = failed(422, {}, {"message": "x" * 1000}, now=NOW).message
    assert long == "GitHub answered 422: " + "x" * 300
