"""The score bounds of a feed page (``server.domain.feeds.score_bounds``)."""

from __future__ import annotations

from server.domain import feeds
from server.domain.ids import compose_id


def test_score_bounds_read_the_bounds_own_milliseconds_whole() -> None:
    """The range excludes max_id's and min_id's milliseconds (read whole, apart), never
    reaches the completeness marker, and names one millisecond shared by both bounds once."""
    low, high = compose_id(1000, 3, 5), compose_id(1003, 1, 0)
    assert feeds.score_bounds(high, low) == ("(1003", "(1000", [1000, 1003])
    assert feeds.score_bounds(None, None) == ("+inf", "1", [])
    assert feeds.score_bounds(high, None) == ("(1003", "1", [1003])
    assert feeds.score_bounds(high, compose_id(1003, 0, 9)) == ("(1003", "(1003", [1003])
