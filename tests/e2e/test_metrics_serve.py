"""/metrics of a real `porter serve`: the runtime it builds from its settings counts into the
registry its web routes render, and its GitHub client's calls reach the fake over a socket."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.e2e.stack import EDIT_TWO_DELETE_ONE, Stack
from tests.fakes.sandbox import needs_bwrap

pytestmark = needs_bwrap

PR_OPENED = ('porter_api_calls_total{method="POST",route="/repos/{owner}/{repo}/pulls",'
             'service="github",status="201"} 1.0')


def test_a_served_task_shows_in_metrics(tmp_path: Path) -> None:
    with Stack(tmp_path, script=EDIT_TWO_DELETE_ONE) as stack:
        response = stack.comment("@porter fix the typo")
        assert response.status_code == 202, response.text
        assert stack.wait(response.json()["task_id"])["state"] == "succeeded"

        def scraped() -> str | None:
            text = httpx.get(f"{stack.url}/metrics", timeout=10).text
            # The publish job's end is observed just after the task turns succeeded.
            return text if 'porter_comment_to_pr_seconds_count{agent="scripted"} 1.0' in text \
                else None

        text = stack.wait_for(scraped, what="the pull request's latency in /metrics")

    assert 'porter_tasks{agent="scripted",state="succeeded"} 1.0' in text
    assert 'porter_comment_to_reaction_seconds_count{agent="scripted"} 1.0' in text
    assert 'porter_comment_to_machine_seconds_count{agent="scripted"} 1.0' in text
    assert PR_OPENED in text
    assert 'porter_webhook_deliveries_total{outcome="recorded"} 1.0' in text
