"""The real-time pure core: channel names, resume verdicts, the ordering gate, what each
event is published to."""

from __future__ import annotations

import json

import pytest

from server.domain.likes import MediaLiked
from server.domain.log import RecordedEvent
from server.domain.media import MediaRendered
from server.domain.realtime import (
    GEO_SOURCE,
    ChannelError,
    MediumFacts,
    Message,
    must_reset,
    parse_channel,
    parse_cursor,
    sources,
)
from server.realtime import Gate


def message(cursor: str, lat: float | None = None, lng: float | None = None) -> Message:
    body = json.dumps({"position": "1:2.3", "event": "X", "users": [7], "lat": lat,
                       "lng": lng, "data": {}})
    return Message.parse(cursor, body)


def test_channels_parse_to_their_sources() -> None:
    """Own channels read the viewer's source; tags are lower-cased; geo reads one source."""
    assert parse_channel("feed", 5).source == "feed:5"
    assert parse_channel("activity", 5).source == "activity:5"
    assert parse_channel("media:12", 5).target == 12
    assert parse_channel("tag:SunSet", 5).source == "tag:sunset"
    geo = parse_channel("geo:48.85,2.35,500", 5)
    assert (geo.source, geo.lat, geo.lng, geo.radius_m) == (GEO_SOURCE, 48.85, 2.35, 500.0)
    for bad in ("feeds", "media:x", "geo:91,0,10", "geo:0,0,6000", "tag:a b", "user:", 3,
                "feed\n", "media:12\n"):
        with pytest.raises(ChannelError):
            parse_channel(bad, 5)  # type: ignore[arg-type]


def test_geo_channels_keep_their_circle() -> None:
    """A geo channel accepts media within its radius (haversine), not outside or unplaced."""
    geo = parse_channel("geo:48.8566,2.3522,1000", 1)
    assert geo.accepts(message("1-0", 48.8600, 2.3500))
    assert not geo.accepts(message("1-0", 48.8800, 2.3522))
    assert not geo.accepts(message("1-0"))
    assert parse_channel("media:1", 1).accepts(message("1-0"))


def test_reset_when_the_history_cannot_serve_the_cursor() -> None:
    """Reset when trimmed past the cursor or the cursor is from a lost history."""
    assert not must_reset((5, 0), None, (9, 0))
    assert not must_reset((5, 0), (5, 0), (9, 0))  # the client saw the last trimmed one
    assert must_reset((4, 0), (5, 0), (9, 0))
    assert must_reset((10, 0), None, (9, 0))
    assert must_reset((5, 0), None, None)
    assert not must_reset((0, 0), None, None)
    assert must_reset((0, 0), (1, 0), (9, 0))


def test_cursors_are_redis_stream_ids() -> None:
    """A cursor is ``ms-seq`` with each part an unsigned 64-bit integer, as Redis's ids."""
    top = 2**64 - 1
    assert parse_cursor(f"{top}-{top}") == (top, top)
    assert parse_cursor("0-0") == (0, 0)
    for bad in ("12", f"{top + 1}-0", f"0-{top + 1}", "99999999999999999999-0", "1-2\n",
                "\u00b2-1", "-1-0", 12):
        with pytest.raises(ValueError):
            parse_cursor(bad)


def test_gate_orders_history_before_held_live_messages_once_each() -> None:
    """Live messages arriving during a replay wait; repeats and older ones are dropped."""
    gate = Gate((1, 0))
    gate.hold()
    assert gate.offer(message("3-0")) == []
    assert gate.offer(message("4-0")) == []
    out = gate.release([message("1-0"), message("2-0"), message("3-0")])
    assert [m.cursor for m in out] == [(2, 0), (3, 0), (4, 0)]
    assert gate.offer(message("4-0")) == []
    assert [m.cursor for m in gate.offer(message("5-0"))] == [(5, 0)]


def recorded(data: object, actor: int) -> RecordedEvent:
    return RecordedEvent(id=99, shard=3, stream="s", version=1, type=type(data).__name__,
                         actor=actor, data=data, metadata={}, created_ms=1, txid=7)  # type: ignore[arg-type]


def test_what_events_are_published_to() -> None:
    """A like reaches the medium and the owner's activity; a public post its owner, tags,
    location, geo and the live feeds given; a private one no tag, location or geo."""
    targets, body = sources(recorded(MediaLiked(media_id=10, media_owner=20, user_id=30), 30), None)
    assert targets == ["media:10", "activity:20"]
    doc = json.loads(body)
    assert doc["position"] == "3:7.99" and doc["data"]["user_id"] == "30"
    assert doc["users"] == [20, 30]
    post = recorded(MediaRendered(media_id=10, owner=20, images={}, videos={}), 20)
    facts = MediumFacts(False, ("cat",), 77, 1.5, 2.5)
    targets, body = sources(post, facts, [20, 40])
    assert targets == ["media:10", "user:20", "feed:20", "feed:40", "tag:cat", "location:77",
                       GEO_SOURCE]
    assert json.loads(body)["lat"] == 1.5
    private = MediumFacts(True, ("cat",), 77, 1.5, 2.5)
    targets, _ = sources(post, private, [40])
    assert targets == ["media:10", "user:20", "feed:40"]


def test_a_follower_removed_message_ends_the_follows_it_names() -> None:
    """A ``FollowerRemoved`` naming a user ends that user's follow; other events do not."""
    body: dict[str, object] = {"position": "1:2.3", "event": "FollowerRemoved",
                               "users": [4, 7], "lat": None, "lng": None, "data": {}}
    removed = Message.parse("1-0", json.dumps(body))
    assert removed.ends_follow(4) and not removed.ends_follow(5)
    assert not message("1-0").ends_follow(7)
