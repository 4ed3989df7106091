"""Checkpoint arithmetic: lag, job keys, advisory lock keys, retry delays."""

from __future__ import annotations

import pytest

from server.domain.checkpoints import (
    MAX_JOB_KEY,
    SWEEP_AFTER,
    job_key,
    kick_due,
    lag,
    lock_key,
    parse_job_key,
    parse_notification,
    retry_delay,
)


def test_lag_counts_wanted_events_and_the_age_of_the_oldest() -> None:
    """Caught up is zero; behind gives the count of the consumer's events and the oldest's
    age; events of other types only are no lag; a scan stopped at its cap says so."""
    assert lag(0, 0, 100, None, 5_000) == lag(3, 3, 100, None, 5_000)
    caught_up = lag(0, 0, 100, None, 5_000)
    assert (caught_up.events, caught_up.seconds, caught_up.behind) == (0, 0.0, False)
    behind = lag(7, 9, 100, 2_500, 5_000)
    assert (behind.events, behind.capped, behind.seconds, behind.behind) == (7, False, 2.5, True)
    others = lag(0, 40, 100, None, 5_000)
    assert (others.events, others.behind, others.seconds) == (0, False, 0.0)
    capped = lag(100, 100, 100, 4_000, 5_000)
    assert (capped.events, capped.capped) == (100, True)
    assert lag(1, 1, 100, 6_000, 5_000).seconds == 0.0  # clocks apart: never negative


def test_the_relay_kicks_pairs_with_work_or_a_long_tail_of_other_types() -> None:
    """Wanted events waiting: kick. Only other types: kick once SWEEP_AFTER of them wait (or
    the scan hit its cap), so the checkpoint moves past them; fewer: leave it be."""
    assert kick_due(lag(1, 1, 100, 1_000, 5_000), 1)
    assert not kick_due(lag(0, 10, 100, None, 5_000), 10)
    assert kick_due(lag(0, SWEEP_AFTER, 10 * SWEEP_AFTER, None, 5_000), SWEEP_AFTER)
    assert kick_due(lag(0, 100, 100, None, 5_000), 100)


def test_notifications_name_the_shard_and_the_types_appended() -> None:
    """``S:T1,T2`` from the trigger; a bare ``S`` (the trigger before it) means every type."""
    assert parse_notification("12:LikeAdded,MediaPosted") == (
        12, frozenset({"LikeAdded", "MediaPosted"}))
    assert parse_notification("3") == (3, None)
    for bad in ("", "x:LikeAdded", ":LikeAdded"):
        with pytest.raises(ValueError, match="not a log notification"):
            parse_notification(bad)


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
