"""The shard map: parsing, validation, routing."""

import pytest

from server.domain.shards import ShardMap, schema_name


def test_parse_and_route() -> None:
    """Each shard routes to the DSN of the range holding it."""
    m = ShardMap.parse(16, ["0-7=postgresql://a/x", "8-15=postgresql://b/y"])
    assert m.dsn_for(0) == m.dsn_for(7) == "postgresql://a/x"
    assert m.dsn_for(8) == "postgresql://b/y"
    assert m.dsns() == ["postgresql://a/x", "postgresql://b/y"]
    assert m.shards_of("postgresql://b/y") == list(range(8, 16))


@pytest.mark.parametrize(
    "entries, complaint",
    [
        (["0-7=a", "8-14=b"], "not mapped to any database: 15"),
        (["0-8=a", "8-15=b"], "shard 8 is mapped twice"),
        (["0-16=a"], "goes past the last shard"),
        (["0-15"], "not a 'FIRST-LAST=DSN' entry"),
        (["7-3=a"], "empty"),
    ],
)
def test_bad_maps_are_refused(entries: list[str], complaint: str) -> None:
    """Gaps, overlaps, overruns and bad syntax raise ValueError saying which."""
    with pytest.raises(ValueError, match=complaint):
        ShardMap.parse(16, entries)


def test_split_spreads_shards_evenly() -> None:
    """split gives contiguous ranges whose sizes differ by at most one."""
    m = ShardMap.split(10, ["a", "b", "c"])
    sizes = [r.last - r.first + 1 for r in m.ranges]
    assert sizes == [4, 3, 3]
    assert [m.dsn_for(s) for s in (0, 3, 4, 9)] == ["a", "a", "b", "c"]


def test_schema_names() -> None:
    """Schemas are named from the shard number, zero-padded; out-of-range is refused."""
    assert schema_name(3) == "shard_0003"
    with pytest.raises(ValueError):
        schema_name(8192)
