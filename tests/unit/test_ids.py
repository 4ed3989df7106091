"""Ids: composing and decoding the 41/13/10-bit layout."""

from datetime import UTC, datetime, timedelta

import pytest

from server.domain.ids import (
    EPOCH,
    MAX_SHARDS,
    SEQUENCES_PER_MS,
    compose_id,
    decode_id,
    millis_of,
    min_id_at,
    shard_of,
)


def test_round_trip() -> None:
    """An id decodes to the parts it was composed of, at its extremes too."""
    for millis, shard, seq in [(1, 0, 0), (123456789, 17, 1023), ((1 << 41) - 1, 8191, 1023)]:
        parts = decode_id(compose_id(millis, shard, seq))
        assert (parts.millis, parts.shard, parts.sequence) == (millis, shard, seq)
        assert shard_of(compose_id(millis, shard, seq)) == shard


def test_order_follows_time_then_shard_then_sequence() -> None:
    """Ids sort by time first, so newer is larger whatever the shard."""
    assert compose_id(10, MAX_SHARDS - 1, SEQUENCES_PER_MS - 1) < compose_id(11, 0, 0)
    assert compose_id(10, 3, 5) < compose_id(10, 3, 6)


def test_parts_out_of_range_are_refused() -> None:
    """A part that does not fit its bits raises instead of corrupting another part."""
    with pytest.raises(ValueError):
        compose_id(1, MAX_SHARDS, 0)
    with pytest.raises(ValueError):
        compose_id(1, 0, SEQUENCES_PER_MS)
    with pytest.raises(ValueError):
        decode_id(0)
    with pytest.raises(ValueError):
        decode_id(-5)


def test_time_of_an_id() -> None:
    """The decoded time is EPOCH plus the millisecond field; min_id_at bounds it from below."""
    moment = datetime(2026, 5, 17, 12, 30, tzinfo=UTC)
    millis = int((moment - EPOCH) / timedelta(milliseconds=1))
    value = compose_id(millis, 5, 9)
    assert decode_id(value).time == moment
    assert min_id_at(moment) <= value < min_id_at(moment + timedelta(milliseconds=1))
    assert millis_of(value) == millis
