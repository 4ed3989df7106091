"""Webhook subscriptions (the Instagram real-time API), pure: events, validation, which
subscriptions a batch of new media could match (``lookup``, what the ``webhooks`` consumer
reads) and matching, the update documents and their signature, and what a callback's answer
means. No I/O.

An app (OAuth client) subscribes to an **object**, always with ``aspect=media``:

- ``tag`` (``object_id``: the tag name): new media of public accounts with the tag;
- ``location`` (``object_id``: a location id): new media of public accounts at the location;
- ``geography`` (``lat``, ``lng``, ``radius`` in meters, 1 to 5,000, default 1,000): new
  media of public accounts within the circle; its ``object_id`` is the subscription's id
  (the "geography id" of ``/v1/geographies/{id}/media/recent``);
- ``user``: new media of the users who authorized the app (who hold a live access token
  of it), private accounts included: they gave the app access to their media. An
  ``object_id`` (a user id) narrows it to that one user; without one it covers them all.

The events go on the stream ``subscription:{id}`` in the app's shard
(``server.domain.oauth.app_shard``): ``SubscriptionCreated``, ``SubscriptionDeleted`` (by the
app) and ``SubscriptionDisabled`` (by the ``webhooks`` consumer, when a callback keeps failing,
with the reason the app sees in ``GET /v1/subscriptions``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from server.domain.events import EVENTS, Event
from server.domain.geo import (
    MAX_DISTANCE_M,
    Box,
    GeoValueError,
    bounding_boxes,
    in_radius,
    parse_distance,
    parse_latitude,
    parse_longitude,
)
from server.domain.tags import normalize_tag, valid_tag_name

OBJECTS = ("user", "tag", "location", "geography")
ASPECTS = ("media",)
#: Instagram's header: the hex HMAC-SHA1 of the raw body, keyed with the client secret.
SIGNATURE_HEADER = "X-Hub-Signature"
#: The longest answer to a challenge that is read (a challenge is far shorter).
MAX_CHALLENGE_ANSWER = 1024
#: The largest user or location id (ids are PostgreSQL bigints).
MAX_OBJECT_ID = 2**63 - 1


class SubscriptionError(ValueError):
    """A subscription request that cannot be accepted; the message names the parameter."""


@EVENTS.event("SubscriptionCreated", version=1)
class SubscriptionCreated(Event):
    """An app subscribed ``callback_url`` to new media of an object (its callback answered
    the challenge). ``object_id``: the tag, the location id, the user id or None (user: every
    user who authorized the app), or for a geography its own id; lat/lng/radius_m: the
    geography's circle."""

    subscription_id: int
    client_id: str
    object: str
    object_id: str | None
    lat: float | None
    lng: float | None
    radius_m: float | None
    callback_url: str


@EVENTS.event("SubscriptionDeleted", version=1)
class SubscriptionDeleted(Event):
    subscription_id: int
    client_id: str


@EVENTS.event("SubscriptionDisabled", version=1)
class SubscriptionDisabled(Event):
    """The subscription's callback kept failing (or refused us for good): no more updates."""

    subscription_id: int
    client_id: str
    reason: str


SUBSCRIPTION_TYPES = ("SubscriptionCreated", "SubscriptionDeleted", "SubscriptionDisabled")


def subscription_stream(subscription_id: int) -> str:
    return f"subscription:{subscription_id}"


@dataclass(frozen=True, slots=True)
class Target:
    """What a subscription watches, checked: ``object_id`` normalized (a tag in lower case),
    the circle of a geography."""

    object: str
    object_id: str | None
    lat: float | None = None
    lng: float | None = None
    radius_m: float | None = None


def parse_target(params: Mapping[str, Any]) -> Target:
    """The target of a ``POST /v1/subscriptions`` from its raw parameters (``object``,
    ``aspect``, ``object_id``, ``lat``, ``lng``, ``radius``); SubscriptionError naming the
    first bad one."""
    obj = params.get("object")
    if obj not in OBJECTS:
        raise SubscriptionError(f"object must be one of: {', '.join(OBJECTS)}, got {obj!r}")
    if params.get("aspect") not in ASPECTS:
        raise SubscriptionError(f"aspect must be media, got {params.get('aspect')!r}")
    object_id = params.get("object_id") or None
    circle = [params.get(k) not in (None, "") for k in ("lat", "lng", "radius")]
    if obj != "geography" and any(circle):
        raise SubscriptionError("lat, lng and radius are for object=geography only")
    if obj == "tag":
        if object_id is None or not valid_tag_name(object_id.removeprefix("#")):
            raise SubscriptionError(f"object_id must be a tag name (letters, digits, _), got "
                                    f"{object_id!r}")
        return Target("tag", normalize_tag(object_id.removeprefix("#")))
    if obj in ("location", "user"):
        if object_id is None and obj == "location":
            raise SubscriptionError("object_id (a location id) is required for object=location")
        if object_id is not None and not (object_id.isascii() and object_id.isdigit()
                                          and 0 < len(object_id) <= 19
                                          and int(object_id) <= MAX_OBJECT_ID):
            kind = "a location id" if obj == "location" else "a user id"
            raise SubscriptionError(f"object_id must be {kind} (digits, at most "
                                    f"{MAX_OBJECT_ID}), got {object_id!r}")
        return Target(obj, str(int(object_id)) if object_id is not None else None)
    if object_id is not None:
        raise SubscriptionError("object_id is not given for object=geography: the "
                                "subscription's id becomes the geography's id")
    try:
        lat = parse_latitude(_required(params, "lat"))
        lng = parse_longitude(_required(params, "lng"))
        radius = parse_distance(params.get("radius"), "radius")
    except GeoValueError as e:
        raise SubscriptionError(str(e)) from None
    return Target("geography", None, lat, lng, radius)


def _required(params: Mapping[str, Any], name: str) -> Any:
    value = params.get(name)
    if value is None or value == "":
        raise SubscriptionError(f"{name} is required for object=geography")
    return value


@dataclass(frozen=True, slots=True)
class Subscription:
    """A subscription as the projection holds it."""

    id: int
    client_id: str
    object: str
    object_id: str | None
    lat: float | None
    lng: float | None
    radius_m: float | None
    callback_url: str
    status: str  # active, disabled, deleted
    reason: str  # why it was disabled
    created_ms: int
    disabled_ms: int | None

    @property
    def shown_object_id(self) -> str | None:
        """The ``object_id`` the app sees: a geography's is its own id."""
        return str(self.id) if self.object == "geography" else self.object_id


@dataclass(frozen=True, slots=True)
class NewMedium:
    """What matching a ready medium needs: its owner (and whether the account is private),
    tags, location and place, and the apps its owner authorized (looked up only when a user
    subscription could match: none until then)."""

    media_id: int
    owner: int
    owner_private: bool
    tags: tuple[str, ...]
    location_id: int | None
    lat: float | None
    lng: float | None
    owner_apps: frozenset[str] = frozenset()


def matches(sub: Subscription, m: NewMedium) -> bool:
    """Whether the medium is an update for the subscription. A private account's media go
    only to user subscriptions of apps the owner authorized."""
    if sub.status != "active":
        return False
    if sub.object == "user":
        return sub.client_id in m.owner_apps and sub.object_id in (None, str(m.owner))
    if m.owner_private:
        return False
    if sub.object == "tag":
        return sub.object_id in m.tags
    if sub.object == "location":
        return m.location_id is not None and sub.object_id == str(m.location_id)
    if sub.object == "geography":
        return (m.lat is not None and m.lng is not None and sub.lat is not None
                and sub.lng is not None and sub.radius_m is not None
                and in_radius(sub.lat, sub.lng, sub.radius_m, m.lat, m.lng))
    return False


@dataclass(frozen=True, slots=True)
class Lookup:
    """Which active subscriptions a batch of new media could match: those to read (a
    superset of what ``matches`` accepts, never a subset). User subscriptions without an
    ``object_id`` or with one of ``users``; tag subscriptions of ``tags``; location
    subscriptions of ``locations``; geographies whose centre lies in one of ``boxes``."""

    users: tuple[str, ...]
    tags: tuple[str, ...]
    locations: tuple[str, ...]
    boxes: tuple[Box, ...]


def lookup(media: Iterable[NewMedium]) -> Lookup:
    """The subscriptions ``media`` could match. Every owner names their user subscriptions
    (a private account's too: the app it authorized sees its media); only public accounts'
    media name tags, locations and places (``matches`` gives the others to nothing else).
    A geography's radius is at most ``MAX_DISTANCE_M`` (``parse_target``), so a circle that
    holds a point has its centre within that distance of the point: inside the point's
    ``bounding_boxes`` of that radius."""
    batch = list(media)
    public = [m for m in batch if not m.owner_private]
    points = sorted({(m.lat, m.lng) for m in public if m.lat is not None and m.lng is not None})
    return Lookup(
        users=tuple(sorted({str(m.owner) for m in batch})),
        tags=tuple(sorted({t for m in public for t in m.tags})),
        locations=tuple(sorted({str(m.location_id) for m in public
                                if m.location_id is not None})),
        boxes=tuple(b for lat, lng in points for b in bounding_boxes(lat, lng, MAX_DISTANCE_M)))


def update(sub: Subscription, m: NewMedium, event_id: int, time_ms: int) -> dict[str, Any]:
    """One element of a callback's JSON array. ``id`` names the (subscription, event) pair:
    the same on every redelivery, so receivers drop repeats with it."""
    object_id = str(m.owner) if sub.object == "user" else sub.shown_object_id
    return {"id": f"{sub.id}-{event_id}", "subscription_id": str(sub.id), "object": sub.object,
            "object_id": object_id, "changed_aspect": "media", "time": time_ms // 1000,
            "data": {"media_id": str(m.media_id)}}


def body(updates: Iterable[Mapping[str, Any]]) -> bytes:
    """The raw body POSTed to a callback: the updates as a JSON array."""
    return json.dumps(list(updates), separators=(",", ":")).encode()


def hub_signature(secret: str, raw: bytes) -> str:
    """``X-Hub-Signature``: the hex HMAC-SHA1 of the raw body keyed with the client secret."""
    return hmac.new(secret.encode(), raw, hashlib.sha1).hexdigest()


def secret_matches(expected: str, given: str) -> bool:
    """Whether a client secret is the app's (constant-time comparison)."""
    return hmac.compare_digest(expected.encode(), given.encode())


# --- callbacks' answers --------------------------------------------------------------------

DELIVERED, RETRY, REFUSED = "delivered", "retry", "refused"


def verdict(status: int) -> str:
    """What a callback's HTTP status means for a delivery: 2xx delivered; 408, 429 and 5xx
    are worth another try (like timeouts and lost connections); anything else (a redirect,
    which is not followed, or another 4xx) is the receiver refusing: retrying cannot help."""
    if 200 <= status < 300:
        return DELIVERED
    if status in (408, 429) or status >= 500:
        return RETRY
    return REFUSED


def challenge_failure(status: int, answer: bytes, challenge: str, content_encoding: str = ""
                      ) -> str | None:
    """Why a verification answer does not pass (None: it does): the callback must answer 2xx
    with the ``hub.challenge`` it was sent as its body (surrounding whitespace ignored), not
    encoded (``content_encoding``, the answer's header: a compressed body is never inflated,
    since a few bytes of it can stand for gigabytes; the request asks for ``identity``)."""
    if not 200 <= status < 300:
        return f"the callback answered HTTP {status} to the verification request"
    if any(c.strip() not in ("", "identity") for c in content_encoding.lower().split(",")):
        return "the callback answered with an encoded body (Content-Encoding) instead of " \
               "echoing hub.challenge as it is"
    text = answer[:MAX_CHALLENGE_ANSWER].decode("utf-8", "replace").strip()
    if not hmac.compare_digest(text.encode(), challenge.encode()):
        shown = text if len(text) <= 64 else text[:64] + "..."
        return f"the callback answered {shown!r} instead of echoing hub.challenge"
    return None
