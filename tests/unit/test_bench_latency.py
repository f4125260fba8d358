"""The latency bench's judgement of GitHub's content limits (bench/latency_stats.py): which
requests count, and the most of them in any sliding window, wherever the window starts."""

from __future__ import annotations

from bench.latency_stats import Goal, Step, creates_content, most_in_window, window_lines


def test_comments_pull_requests_and_reactions_create_content_edits_and_reads_do_not() -> None:
    assert creates_content("POST", "/repos/octo/hello/issues/7/comments")
    assert creates_content("POST", "/repos/octo/hello/issues/comments/1012/reactions")
    assert creates_content("POST", "/repos/octo/hello/pulls/comments/5/reactions")
    assert creates_content("POST", "/repos/octo/hello/pulls")
    assert creates_content("POST", "/repos/octo/hello/pulls/3/comments/9/replies")
    assert creates_content("POST", "/repos/octo/hello/check-runs")
    assert not creates_content("PATCH", "/repos/octo/hello/check-runs/4000000001")
    assert not creates_content("PATCH", "/repos/octo/hello/issues/comments/1015")
    assert not creates_content("GET", "/repos/octo/hello/issues/7/comments")
    assert not creates_content("POST", "/repos/octo/hello/git/blobs")
    assert not creates_content("POST", "/app/installations/42/access_tokens")


def test_a_burst_straddling_minute_boundaries_is_counted_in_one_window() -> None:
    # 50 at the end of one minute and 50 at the start of the next: 100 within 20 s.
    times = [50 + i * 0.2 for i in range(50)] + [61 + i * 0.2 for i in range(50)]
    assert most_in_window(times, 60) == 100
    # Evenly spread, one a second: never more than 60 in a minute.
    assert most_in_window([float(i) for i in range(300)], 60) == 60
    assert most_in_window([], 60) == 0


def test_the_window_is_half_open_so_events_exactly_a_window_apart_are_not_together() -> None:
    assert most_in_window([0.0, 60.0, 120.0], 60) == 1
    assert most_in_window([0.0, 59.999, 60.0], 60) == 2
    assert most_in_window([3.0, 1.0, 2.0, 1.0], 60) == 4  # order and repeats do not matter


def test_the_limits_are_judged_per_installation() -> None:
    kept = [float(i) for i in range(80)]  # 80 in 80 s: at most 60 in a minute
    broken = [i * 0.5 for i in range(81)]  # 81 within 40.5 s
    lines = window_lines({42: kept, 43: broken}, check=True)
    assert "installation 42" in lines[0] and "PASS" in lines[0]
    assert "installation 43" in lines[1] and "most 81 in a minute" in lines[1]
    assert "MISS" in lines[1]


def test_a_step_that_never_happened_misses_its_goal_whatever_the_others_did() -> None:
    fast = Step("👀 reaction", [0.05, 0.06, 0.07], Goal(300))
    assert fast.verdict().startswith("PASS")
    assert Step("👀 reaction", [0.05, None, 0.07], Goal(300)).verdict().startswith("MISS")
    assert Step("PR", [0.5, 1.2], Goal(1000, "max")).verdict().startswith("MISS")
