"""When Ferry tries again: the server's word first, else exponential backoff with jitter."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from worker.retry import MAX_SERVER_DELAY, backoff_delay, server_retry_delay

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("attempt, low, high", [(1, 0.5, 1), (2, 1, 2), (3, 2, 4), (6, 16, 32)])
def test_backoff_doubles_and_jitter_stays_within_half_to_full(attempt, low, high):
    assert backoff_delay(attempt, rand=lambda: 0.0) == low
    assert backoff_delay(attempt, rand=lambda: 1.0) == high


def test_backoff_is_capped():
    assert backoff_delay(50, cap=300, rand=lambda: 1.0) == 300


def test_retry_after_in_seconds():
    assert server_retry_delay({"Retry-After": "2"}, NOW) == 2


def test_retry_after_as_http_date():
    assert server_retry_delay({"Retry-After": "Mon, 23 Nov 2026 12:00:30 GMT"}, NOW) == 30


def test_jira_x_ratelimit_reset_iso_timestamp():
    assert server_retry_delay({"X-RateLimit-Reset": "2026-11-23T12:01Z"}, NOW) == 60


def test_awork_ratelimit_reset_seconds():
    assert server_retry_delay({"RateLimit-Reset": "7", "X-RateLimit-Limit-Second": "500"}, NOW) == 7


def test_retry_after_wins_over_reset_and_headers_are_case_insensitive():
    assert server_retry_delay({"retry-after": "3", "x-ratelimit-reset": "2026-11-23T13:00Z"}, NOW) == 3


def test_no_word_from_the_server_and_nonsense_give_none():
    assert server_retry_delay({}, NOW) is None
    assert server_retry_delay({"Retry-After": "soon"}, NOW) is None


def test_a_date_in_the_past_means_now_and_huge_values_are_capped():
    assert server_retry_delay({"Retry-After": "Mon, 23 Nov 2026 11:00:00 GMT"}, NOW) == 0
    assert server_retry_delay({"Retry-After": "999999"}, NOW) == MAX_SERVER_DELAY


def test_x_ratelimit_reset_already_past_falls_back_to_backoff():
    # Minute precision makes a just-expired reset common: "now" would be a 0 s retry storm.
    assert server_retry_delay({"X-RateLimit-Reset": "2026-11-23T11:59Z"}, NOW) is None


def test_a_past_x_ratelimit_reset_does_not_hide_another_header():
    headers = {"X-RateLimit-Reset": "2026-11-23T11:59Z", "RateLimit-Reset": "4"}
    assert server_retry_delay(headers, NOW) == 4
