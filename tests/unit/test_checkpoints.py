"""Checkpoint arithmetic: lag, job keys, advisory lock keys, retry delays."""

from __future__ import annotations

import pytest

from server.domain.checkpoints import (
    MAX_JOB_KEY,
    job_key,
    lag,
    lock_key,
    parse_job_key,
    retry_delay,
)


def test_lag_counts_pending_events_and_the_age_of_the_oldest() -> None:
    """Caught up is zero; behind gives the count (capped) and the oldest event's age."""
    assert lag(0, 100, None, 5_000) == lag(3, 100, None, 5_000)
    caught_up = lag(0, 100, None, 5_000)
    assert (caught_up.events, caught_up.seconds, caught_up.behind) == (0, 0.0, False)
    behind = lag(7, 100, 2_500, 5_000)
    assert (behind.events, behind.capped, behind.seconds, behind.behind) == (7, False, 2.5, True)
    capped = lag(100, 100, 4_000, 5_000)
    assert (capped.events, capped.capped) == (100, True)
    assert lag(1, 100, 6_000, 5_000).seconds == 0.0  # clocks apart: never negative


def test_job_keys_round_trip_and_respect_gearmands_limit() -> None:
    """C:S keys parse back; a name too long for 64 bytes is refused with a clear error."""
    assert parse_job_key(job_key("home_feed", 8191)) == ("home_feed", 8191)
    assert len(job_key("x" * (MAX_JOB_KEY - 5), 8191).encode()) == MAX_JOB_KEY
    with pytest.raises(ValueError, match="too long"):
        job_key("x" * (MAX_JOB_KEY - 4), 8191)
    with pytest.raises(ValueError):
        parse_job_key("no-shard")


def test_lock_keys_are_distinct_per_pair_and_fit_a_signed_bigint() -> None:
    """Every (consumer, shard) gets its own non-negative 63-bit key, stable across runs."""
    keys = {lock_key(name, shard) for name in ("a", "b", "feeds") for shard in range(8192)}
    assert len(keys) == 3 * 8192
    assert all(0 <= k < 2**63 for k in keys)
    assert lock_key("feeds", 3) & 8191 == 3
    assert lock_key("feeds", 3) == lock_key("feeds", 3)


def test_retry_delay_doubles_up_to_the_cap() -> None:
    """0.2, 0.4, 0.8, ... never above the cap, even for huge attempt numbers."""
    assert [retry_delay(a, 0.2, 1.0) for a in range(1, 6)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    assert retry_delay(10_000, 0.2, 30.0) == 30.0
    with pytest.raises(ValueError):
        retry_delay(0, 0.2, 1.0)
