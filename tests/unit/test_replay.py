"""The replay's pure core (projections, comparisons, progress) and the CLI's output modes."""

from __future__ import annotations

import io
import json

import pytest

from scripts.commands.replay import Output
from server.domain.replay import (
    ALL,
    SPECS,
    Difference,
    Progress,
    ReplayUsageError,
    clock,
    compare,
    compare_rows,
    fold_edges,
    is_projection_key,
    marker,
    normalize,
    prefix,
    resolve,
)


def test_all_expands_in_dependency_order_without_duplicates() -> None:
    """``all`` names every projection once, followers first (fanout reads its table)."""
    names = [s.name for s in resolve(["feeds", "all", "tags"], None, 16)[0]]
    assert names == list(ALL) and names[0] == "followers"
    assert set(names) == set(SPECS)


def test_resolve_refuses_unknown_names_and_shards_of_mixed_projections() -> None:
    """Unknown projections, shards out of range and --shard on a key space mixing every
    shard are refused with the reason."""
    with pytest.raises(ReplayUsageError, match="unknown projection 'feed'"):
        resolve(["feed"], None, 16)
    with pytest.raises(ReplayUsageError, match="shards are 0 to 15"):
        resolve(["followers"], [16], 16)
    with pytest.raises(ReplayUsageError, match="counters"):
        resolve(["followers", "counters"], [1], 16)
    assert [s.name for s in resolve(["followers"], [1, 2], 16)[0]] == ["followers"]


def test_resolve_names_each_shard_once_in_order() -> None:
    """``--shard 3 --shard 1 --shard 3``: shard 3 is counted and built once, and the run is
    the one ``--shard 1 --shard 3`` resumes (runs are matched by their shard list)."""
    assert resolve(["followers"], [3, 1, 3], 16)[1] == [1, 3]
    assert resolve(["followers"], None, 16)[1] is None


def test_namespace_keys_and_projection_keys() -> None:
    """A run's keys live under its prefix, its marker outside it; a projection's live keys
    are its patterns minus its exclusions."""
    assert prefix(7) == "replay:7:" and marker(7) == "replay:7"
    assert not marker(7).startswith(prefix(7))
    rt, feeds, tags = SPECS["realtime"], SPECS["feeds"], SPECS["tags"]
    assert is_projection_key(rt, "rt:media:1") and is_projection_key(rt, "rt:geo:meta")
    assert not is_projection_key(rt, "rt:live:feed:1") and not is_projection_key(rt, "rt:live")
    assert not is_projection_key(rt, "rt:feed:3")
    assert is_projection_key(feeds, "fanout:pulled") and is_projection_key(feeds, "umedia:4")
    assert not is_projection_key(feeds, "lease:feed:4")
    assert is_projection_key(tags, "tags:names") and not is_projection_key(tags, "tagsx")


def test_normalize_drops_the_completeness_marker_and_stream_ids() -> None:
    """Feeds compare without ``-``; streams by their messages' bodies only."""
    assert normalize("feed:1", "zset", [(b"-", 0.0), (b"5", 1.0)]) == {"5": 1.0}
    assert normalize("h", "hash", {b"a": b"1"}) == {"a": "1"}
    assert normalize("s", "set", {b"b", b"a"}) == ["a", "b"]
    assert normalize("rt:x", "stream", [(b"1-0", {b"m": b"{}"})]) == ["{}"]


def test_compare_reports_members_missing_extra_and_different() -> None:
    """Each differing member is (key member, expected, found); equal keys are silent."""
    diffs = compare({"feed:1": {"5": 1.0, "6": 2.0}, "tag:a": ["1"], "same": "x"},
                    {"feed:1": {"5": 1.0, "7": 3.0}, "counts:1": {"0:l": "2"}, "same": "x"})
    assert diffs == [
        Difference("counts:1", None, {"0:l": "2"}),
        Difference("feed:1 6", 2.0, None),
        Difference("feed:1 7", None, 3.0),
        Difference("tag:a", ["1"], None),
    ]
    assert diffs[1].as_dict() == {"key": "feed:1 6", "expected": 2.0, "found": None}


def _msg(shard: int, n: int) -> str:
    return json.dumps({"position": f"{shard}:{n}.{n}", "n": n})


def test_histories_compare_per_shard_tails() -> None:
    """A live history equals the end of the rebuilt one shard by shard, whatever the
    interleaving of shards; a missing or changed message is a difference; sources only the
    rebuild has are not."""
    rebuilt = [_msg(0, 1), _msg(1, 1), _msg(0, 2), _msg(1, 2)]
    assert compare({"rt:a": rebuilt, "rt:b": [_msg(0, 1)]},
                   {"rt:a": [_msg(1, 2), _msg(0, 2)]}, tail=True) == []
    assert compare({"rt:a": rebuilt}, {"rt:a": [_msg(0, 1)]}, tail=True) != []
    assert compare({"rt:a": rebuilt}, {"rt:c": [_msg(0, 1)]}, tail=True) != []


def test_compare_rows_by_key() -> None:
    """Rows are keyed by every column but the last, which is compared."""
    diffs = compare_rows("liked", [(1, 2, 10), (1, 3, 11)], [(1, 2, 10), (1, 4, 12)])
    assert diffs == [Difference("liked 1 3", 11, None), Difference("liked 1 4", None, 12)]


def test_progress_rate_time_left_and_bar() -> None:
    """Rate and time left follow from done, total and seconds; no rate, no estimate."""
    p = Progress(2500, 10000, 5.0)
    assert p.rate == 500 and p.left_seconds == 15
    assert p.bar(10) == "[##........] 2,500/10,000 events  500 events/s  0:15 left"
    assert Progress(0, 10, 0.0).left_seconds is None
    assert "--:-- left" in Progress(0, 10, 0.0).bar()
    assert Progress(10, 10, 2).as_dict()["seconds_left"] == 0
    assert clock(3725) == "1:02:05" and clock(59.6) == "1:00"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_output_bar_on_a_terminal_lines_otherwise_json_on_demand() -> None:
    """A terminal gets a bar redrawn with CR; a pipe gets plain lines; --json gets JSON
    lines on stdout and a summary object."""
    tty, out = _Tty(), io.StringIO()
    o = Output(False, err=tty, out=out)
    o.progress(Progress(5, 10, 1.0))
    o.say("hello")
    assert tty.getvalue().startswith("\r[") and "hello" in tty.getvalue()
    pipe = io.StringIO()
    Output(False, err=pipe, out=out).progress(Progress(10, 10, 1.0))
    assert pipe.getvalue().startswith("shutterlog: 10/10 events") and "\r" not in pipe.getvalue()
    js = io.StringIO()
    j = Output(True, err=io.StringIO(), out=js)
    j.progress(Progress(10, 10, 1.0))
    j.summary([{"projection": "tags", "differences": [], "differences_found": 3,
                "events": 1}])
    lines = [json.loads(x) for x in js.getvalue().splitlines()]
    assert lines[0]["type"] == "progress" and lines[0]["done"] == 10
    assert lines[1] == {"type": "summary", "projections": [
        {"projection": "tags", "differences": [], "differences_found": 3, "events": 1}],
        "differences": 3}  # all of them, however few are printed


def test_fold_edges_keeps_the_creating_event_like_set_edge() -> None:
    """An edge requested then approved keeps the request's id and time; one removed is
    gone; one removed then added again gets the new id; untouched rows stay out."""
    current = {(1, 2): ("active", 10, 100), (1, 3): ("requested", 11, 110)}
    changes = [((1, 3), "active", 20, 200), ((1, 2), "none", 21, 210),
               ((1, 4), "requested", 22, 220), ((1, 4), "active", 23, 230),
               ((1, 5), "active", 24, 240), ((1, 5), "none", 25, 250),
               ((1, 5), "active", 26, 260)]
    assert fold_edges(current, changes) == {
        (1, 3): ("active", 11, 110), (1, 2): None, (1, 4): ("active", 22, 220),
        (1, 5): ("active", 26, 260)}
