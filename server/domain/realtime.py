"""The real-time stream's pure core: channels, close codes, history cursors, event frames.

A client subscribes to **channels** (``feed``, ``activity``, ``media:{id}``, ``user:{id}``,
``tag:{name}``, ``location:{id}``, ``geo:{lat},{lng},{radius_m}``). Each channel reads one
**source**: the Redis history and pub/sub channel the ``realtime`` consumer publishes to.
Most channels are their own source; every geo channel reads the one ``geo`` source and keeps
the events within its circle (``haversine_m``), so the consumer publishes a medium once,
whatever the number of circles subscribed.

A source's history gives each message a **cursor** (a Redis stream id, ``ms-seq``), in the
order the consumer published; every frame also carries the event's log **position**
(``shard:txid.id``). Resuming names the last cursor seen. No I/O here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from server.domain.comments import CommentAdded, CommentDeleted
from server.domain.events import EVENTS
from server.domain.geo import haversine_m
from server.domain.graph import FollowerAdded, FollowerRemoved, FollowerRequested
from server.domain.likes import MediaLiked, MediaUnliked
from server.domain.log import RecordedEvent
from server.domain.media import MediaDeleted, MediaRendered
from server.domain.tags import normalize_tag, valid_tag_name

#: Close codes (the application range 4000-4999), with the reason sent along.
CLOSE_BAD_TOKEN = 4001  # no, an invalid, expired or revoked access token
CLOSE_PROTOCOL = 4002  # a frame that is not a JSON object of a known type
CLOSE_TOO_SLOW = 4008  # the client did not read: its buffer passed realtime.max_buffer_bytes
CLOSE_GOING_AWAY = 1001  # the service is stopping

#: The geo source every ``geo:`` channel reads.
GEO_SOURCE = "geo"
#: Largest circle of a geo channel, in meters (as the media search's ``distance``).
MAX_GEO_RADIUS_M = 5000.0

_ID = r"[0-9]{1,19}"
_NUMBER = r"-?[0-9]{1,3}(?:\.[0-9]{1,12})?"
_CHANNEL = re.compile(
    rf"(?:(?P<own>feed|activity)|(?P<kind>media|user|location):(?P<id>{_ID})"
    rf"|tag:(?P<tag>[^\s:]{{1,100}})"
    rf"|geo:(?P<lat>{_NUMBER}),(?P<lng>{_NUMBER}),(?P<radius>[0-9]{{1,5}}(?:\.[0-9]{{1,3}})?))"
)


class ChannelError(ValueError):
    """A channel name that is not one of the forms above."""


@dataclass(frozen=True, slots=True)
class Channel:
    """A parsed channel: its name as the client wrote it, its kind, the source it reads and,
    for geo channels, the circle."""

    name: str
    kind: str  # feed, activity, media, user, tag, location, geo
    source: str
    target: int | None = None  # the medium, user or location of the channel
    lat: float = 0.0
    lng: float = 0.0
    radius_m: float = 0.0

    def accepts(self, message: Message) -> bool:
        """Whether a message of the source belongs to this channel (geo: within the circle)."""
        if self.kind != "geo":
            return True
        if message.lat is None or message.lng is None:
            return False
        return haversine_m(self.lat, self.lng, message.lat, message.lng) <= self.radius_m


def parse_channel(name: str, viewer: int) -> Channel:
    """The channel ``name`` as ``viewer`` subscribes to it; ChannelError if malformed."""
    m = _CHANNEL.fullmatch(name) if isinstance(name, str) else None
    if m is None:
        raise ChannelError(f"unknown channel {name!r}: feed, activity, media:ID, user:ID, "
                           "tag:NAME, location:ID or geo:LAT,LNG,RADIUS_M")
    if m["own"]:
        return Channel(name, m["own"], f"{m['own']}:{viewer}", viewer)
    if m["kind"]:
        return Channel(name, m["kind"], f"{m['kind']}:{m['id']}", int(m["id"]))
    if m["tag"] is not None:
        if not valid_tag_name(m["tag"]):
            raise ChannelError(f"not a hashtag: {m['tag']!r}")
        return Channel(name, "tag", f"tag:{normalize_tag(m['tag'])}")
    lat, lng, radius = float(m["lat"]), float(m["lng"]), float(m["radius"])
    if not -90 <= lat <= 90 or not -180 <= lng <= 180:
        raise ChannelError(f"{name!r}: latitude -90 to 90, longitude -180 to 180")
    if not 0 < radius <= MAX_GEO_RADIUS_M:
        raise ChannelError(f"{name!r}: the radius is 1 to {MAX_GEO_RADIUS_M:.0f} meters")
    return Channel(name, "geo", GEO_SOURCE, None, lat, lng, radius)


# --- cursors -------------------------------------------------------------------------------

Cursor = tuple[int, int]
#: Before every message of a source (what a client with no cursor yet may send).
START = "0-0"


_CURSOR = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
#: Each half of a Redis stream id is an unsigned 64-bit integer.
_CURSOR_LIMIT = 2**64


def parse_cursor(text: Any) -> Cursor:
    """A history cursor (``ms-seq``, each part below 2**64 as Redis stream ids); ValueError
    if it is not one."""
    m = _CURSOR.fullmatch(text) if isinstance(text, str) else None
    if m is not None and int(m[1]) < _CURSOR_LIMIT and int(m[2]) < _CURSOR_LIMIT:
        return int(m[1]), int(m[2])
    raise ValueError(f"not a stream cursor: {text!r}")


def must_reset(after: Cursor, low: Cursor | None, last: Cursor | None) -> bool:
    """Whether a resume after ``after`` cannot be served from a history whose newest cursor
    is ``last`` (None: no history) and below which it holds nothing, ``low``: its newest
    trimmed entry or, past that, its floor (a history begins with one, above every id of the
    histories of the source before it). Messages after ``after`` were trimmed, the cursor is
    from an earlier history of the source (``START`` included: it is before all of them), or
    from a history that no longer exists."""
    if after == (0, 0):
        return low is not None
    if last is None or after > last:
        return True
    return low is not None and after < low


# --- messages ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """One published event as a source holds it: the JSON text (``body``) and what the
    service filters on without parsing it per connection."""

    cursor: Cursor
    cursor_text: str
    body: str  # a JSON object: position, event, users, lat, lng, data
    event: str
    users: frozenset[int]
    lat: float | None
    lng: float | None

    @classmethod
    def parse(cls, cursor_text: str, body: str) -> Message:
        doc = json.loads(body)
        return cls(parse_cursor(cursor_text), cursor_text, body, str(doc.get("event")),
                   frozenset(int(u) for u in doc.get("users", ())), doc.get("lat"),
                   doc.get("lng"))

    def ends_follow(self, follower: int) -> bool:
        """Whether this message, read from a followee's ``follow_source``, ends
        ``follower``'s follow of them (unfollowed, removed or blocked): a ``FollowerRemoved``
        naming ``follower`` (there, one who is not the followee is the follower)."""
        return self.event == "FollowerRemoved" and follower in self.users

    def frame(self, channel: str) -> str:
        """The event frame for a subscriber of ``channel`` (no re-encoding of the body)."""
        return (f'{{"type":"event","channel":{json.dumps(channel)},'
                f'"cursor":"{self.cursor_text}",{self.body[1:]}')


def control(kind: str, **fields: Any) -> str:
    """A control frame: ready, subscribed, unsubscribed, reset, error."""
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))


def follow_source(followee: int) -> str:
    """The source that carries the end of each follow of ``followee`` (``FollowerRemoved``)."""
    return f"user:{followee}"


# --- what the consumer publishes -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MediumFacts:
    """What publishing a ready medium needs beyond its event (read by the consumer)."""

    owner_private: bool
    tags: tuple[str, ...]
    location_id: int | None
    lat: float | None
    lng: float | None


#: Event types the ``realtime`` consumer publishes.
TYPES = ("MediaRendered", "MediaDeleted", "MediaLiked", "MediaUnliked", "CommentAdded",
         "CommentDeleted", "FollowerAdded", "FollowerRequested", "FollowerRemoved")


def sources(e: RecordedEvent, medium: MediumFacts | None, feeds: Iterable[int] = ()
            ) -> tuple[list[str], str]:
    """The sources an event goes to and its message body, JSON (without the cursor).

    ``medium`` is the ready medium of a ``MediaRendered`` (None if it is gone): its tags,
    location and place reach tag, location and geo subscribers only when its owner is
    public; it reaches the home ``feed`` of the users in ``feeds`` (the owner and followers
    whose feed is live). A medium's likes and comments go to ``media:{id}`` and the
    owner's ``activity`` (not the owner's own); a user's posts and new followers to
    ``user:{id}``.
    """
    d = e.data
    out: list[str] = []
    users: list[int] = [e.actor] if e.actor is not None else []
    lat = lng = None
    if isinstance(d, (MediaRendered, MediaDeleted)):
        out += [f"media:{d.media_id}", f"user:{d.owner}"]
        users.append(d.owner)
        if isinstance(d, MediaRendered) and medium is not None:
            out += [f"feed:{u}" for u in feeds]
        if isinstance(d, MediaRendered) and medium is not None and not medium.owner_private:
            out += [f"tag:{t}" for t in medium.tags]
            if medium.location_id is not None:
                out.append(f"location:{medium.location_id}")
            if medium.lat is not None and medium.lng is not None:
                out.append(GEO_SOURCE)
                lat, lng = medium.lat, medium.lng
    elif isinstance(d, (MediaLiked, MediaUnliked, CommentAdded, CommentDeleted)):
        out.append(f"media:{d.media_id}")
        actor = d.user_id if isinstance(d, (MediaLiked, MediaUnliked)) else (
            d.author if isinstance(d, CommentAdded) else d.by)
        users += [actor, d.media_owner]
        if actor != d.media_owner:
            out.append(f"activity:{d.media_owner}")
    elif isinstance(d, (FollowerAdded, FollowerRequested, FollowerRemoved)):
        out += [follow_source(d.followee), f"activity:{d.followee}"]
        users += [d.follower, d.followee]
    body = {"position": f"{e.shard}:{e.position}", "event": e.type,
            "time": e.created_ms, "users": sorted(set(users)), "lat": lat, "lng": lng,
            "data": _public(EVENTS.redacted(d))}
    return out, json.dumps(body, separators=(",", ":"))


def _public(fields: dict[str, Any]) -> dict[str, Any]:
    """Event fields for a client: ids as strings (64-bit ids lose digits in JavaScript)."""
    return {k: (str(v) if isinstance(v, int) and not isinstance(v, bool) else v)
            for k, v in fields.items()}
