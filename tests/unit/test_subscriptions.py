"""The pure core of webhook subscriptions: targets, matching, updates, signatures, verdicts."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import random
from dataclasses import replace

import pytest

from server.domain.geo import EARTH_RADIUS_M, MAX_DISTANCE_M, bounding_boxes, within
from server.domain.subscriptions import (
    DELIVERED,
    REFUSED,
    RETRY,
    Lookup,
    NewMedium,
    Subscription,
    SubscriptionError,
    Target,
    body,
    challenge_failure,
    hub_signature,
    lookup,
    matches,
    parse_target,
    update,
    verdict,
)
from workers import handlers
from workers.consumers import CONSUMERS, OnFailure

SUB = Subscription(id=77, client_id="app", object="tag", object_id="sunset", lat=None,
                   lng=None, radius_m=None, callback_url="https://hooks.example/cb",
                   status="active", reason="", created_ms=0, disabled_ms=None)
MEDIUM = NewMedium(media_id=5, owner=9, owner_private=False, tags=("sunset", "sea"),
                   location_id=42, lat=48.8584, lng=2.2945, owner_apps=frozenset())


def target(**params: str) -> Target:
    return parse_target({"aspect": "media"} | params)


def test_targets_are_normalized() -> None:
    """Tags lose their # and case, ids are canonical, a geography gets the default radius."""
    assert target(object="tag", object_id="#NoFilter") == Target("tag", "nofilter")
    assert target(object="location", object_id="0042") == Target("location", "42")
    assert target(object="user") == Target("user", None)
    assert target(object="user", object_id="7") == Target("user", "7")
    assert target(object="user", object_id=str(2**63 - 1)) == Target("user", str(2**63 - 1))
    assert target(object="geography", lat="1.5", lng="-2") == Target(
        "geography", None, 1.5, -2.0, 1000.0)


@pytest.mark.parametrize("params,message", [
    ({"object": "media"}, "object must be one of: user, tag, location, geography"),
    ({"object": "tag", "aspect": "likes"}, "aspect must be media"),
    ({"object": "tag"}, "object_id must be a tag name"),
    ({"object": "tag", "object_id": "123"}, "object_id must be a tag name"),
    ({"object": "location"}, "object_id (a location id) is required"),
    ({"object": "location", "object_id": "-3"}, "object_id must be a location id"),
    ({"object": "user", "object_id": "x"}, "object_id must be a user id"),
    ({"object": "user", "object_id": str(2**63)}, "object_id must be a user id (digits, at "
     "most 9223372036854775807), got '9223372036854775808'"),
    ({"object": "location", "object_id": "9" * 19}, "object_id must be a location id"),
    ({"object": "geography", "object_id": "3", "lat": "1", "lng": "1"},
     "object_id is not given for object=geography"),
    ({"object": "geography", "lat": "1"}, "lng is required for object=geography"),
    ({"object": "geography", "lat": "inf", "lng": "1"}, "lat must be a latitude"),
    ({"object": "geography", "lat": "1", "lng": "1", "radius": "0"}, "radius must be a "
     "distance in meters above 0"),
    ({"object": "tag", "object_id": "x", "radius": "10"}, "are for object=geography only"),
])
def test_bad_targets_name_the_parameter(params: dict[str, str], message: str) -> None:
    """Each refusal says which parameter is wrong and how."""
    with pytest.raises(SubscriptionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_target({"aspect": "media"} | params)


def test_tag_location_and_geography_match_public_media_only() -> None:
    """Public media match by tag, location and circle; a private owner's never do."""
    location = replace(SUB, object="location", object_id="42")
    circle = replace(SUB, object="geography", object_id=None, lat=48.8584, lng=2.30,
                     radius_m=600.0)
    for sub in (SUB, location, circle):
        assert matches(sub, MEDIUM)
        assert not matches(sub, replace(MEDIUM, owner_private=True))
    assert not matches(replace(SUB, object_id="dawn"), MEDIUM)
    assert not matches(replace(location, object_id="43"), MEDIUM)
    assert not matches(replace(circle, radius_m=400.0), MEDIUM)  # about 402 m away
    assert not matches(circle, replace(MEDIUM, lat=None, lng=None))


def test_user_subscriptions_follow_the_owners_authorization() -> None:
    """A user subscription gets the media of owners holding a token of its app (private ones
    too), narrowed to one user by object_id; disabled subscriptions get nothing."""
    user = replace(SUB, object="user", object_id=None)
    authorized = replace(MEDIUM, owner_apps=frozenset({"app"}), owner_private=True)
    assert matches(user, authorized)
    assert not matches(user, replace(authorized, owner_apps=frozenset({"other"})))
    assert matches(replace(user, object_id="9"), authorized)
    assert not matches(replace(user, object_id="10"), authorized)
    assert not matches(replace(user, status="disabled"), authorized)
    assert not matches(replace(SUB, status="disabled"), MEDIUM)


def test_a_lookup_names_what_its_media_could_match() -> None:
    """Every owner names user subscriptions, a private one too; only public media name tags,
    locations and places (5 km boxes around them); each once."""
    private = replace(MEDIUM, media_id=6, owner=10, owner_private=True, tags=("secret",),
                      location_id=43, lat=-33.8568, lng=151.2153)
    found = lookup([MEDIUM, private, replace(MEDIUM, media_id=7)])
    assert found == Lookup(users=("10", "9"), tags=("sea", "sunset"), locations=("42",),
                           boxes=bounding_boxes(48.8584, 2.2945, MAX_DISTANCE_M))
    assert lookup([private]) == Lookup(users=("10",), tags=(), locations=(), boxes=())
    assert lookup([replace(MEDIUM, lat=None, lng=None)]).boxes == ()


def _inside(lat: float, lng: float, meters: float, bearing: float) -> tuple[float, float]:
    """The point ``meters`` from (lat, lng) along ``bearing`` (radians) on the sphere."""
    d, p1, l1 = meters / EARTH_RADIUS_M, math.radians(lat), math.radians(lng)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(bearing))
    l2 = l1 + math.atan2(math.sin(bearing) * math.sin(d) * math.cos(p1),
                         math.cos(d) - math.sin(p1) * math.sin(p2))
    return math.degrees(p2), (math.degrees(l2) + 540.0) % 360.0 - 180.0


def test_every_circle_holding_a_point_has_its_centre_in_the_lookups_boxes() -> None:
    """The geography prefilter loses no match: for random circles (up to the largest radius,
    near the poles and across the antimeridian too) and points in them, often on the edge,
    the centre lies in a box of the lookup of a medium at the point."""
    rng = random.Random(11)
    checked = 0
    for _ in range(3000):
        lat = rng.choice([rng.uniform(-90, 90), rng.choice([-1, 1]) * rng.uniform(89.9, 90)])
        lng = rng.choice([rng.uniform(-180, 180), rng.choice([-1, 1]) * rng.uniform(179.9, 180)])
        radius = rng.choice([MAX_DISTANCE_M, rng.uniform(1, MAX_DISTANCE_M)])
        at = _inside(lat, lng, rng.choice([radius, rng.uniform(0, radius)]),
                     rng.uniform(0, 2 * math.pi))
        circle = replace(SUB, object="geography", object_id=None, lat=lat, lng=lng,
                         radius_m=radius)
        medium = replace(MEDIUM, lat=at[0], lng=at[1])
        if matches(circle, medium):
            checked += 1
            assert within(lookup([medium]).boxes, lat, lng), (lat, lng, radius, at)
    assert checked > 2000


def test_updates_carry_a_stable_id_and_the_v1_fields() -> None:
    """The update id names the subscription and the event; a user update names the owner; a
    geography's object_id is the subscription's own id."""
    assert update(SUB, MEDIUM, 1001, 1_700_000_000_999) == {
        "id": "77-1001", "subscription_id": "77", "object": "tag", "object_id": "sunset",
        "changed_aspect": "media", "time": 1_700_000_000, "data": {"media_id": "5"}}
    assert update(replace(SUB, object="user", object_id=None), MEDIUM, 1, 0)["object_id"] == "9"
    assert update(replace(SUB, object="geography", object_id=None), MEDIUM, 1, 0)[
        "object_id"] == "77"


def test_the_signature_is_hmac_sha1_of_the_raw_body() -> None:
    """X-Hub-Signature is the hex HMAC-SHA1 of exactly the bytes sent, keyed with the secret."""
    raw = body([update(SUB, MEDIUM, 1, 0)])
    assert json.loads(raw)[0]["id"] == "77-1"
    assert hub_signature("s3cret", raw) == hmac.new(b"s3cret", raw, hashlib.sha1).hexdigest()
    assert hub_signature("s3cret", raw + b" ") != hub_signature("s3cret", raw)


@pytest.mark.parametrize("status,expected", [
    (200, DELIVERED), (204, DELIVERED), (500, RETRY), (503, RETRY), (408, RETRY),
    (429, RETRY), (301, REFUSED), (400, REFUSED), (404, REFUSED), (410, REFUSED),
])
def test_verdicts(status: int, expected: str) -> None:
    """2xx delivered; 5xx, 408 and 429 retried; redirects and other 4xx refused."""
    assert verdict(status) == expected


def test_challenge_answers() -> None:
    """Only a 2xx echoing the challenge unencoded passes (whitespace around it ignored)."""
    assert challenge_failure(200, b"abc\n", "abc") is None
    assert challenge_failure(200, b"abc", "abc", "Identity") is None
    assert challenge_failure(200, b"abc", "abc", "identity, gzip") == (
        "the callback answered with an encoded body (Content-Encoding) instead of echoing "
        "hub.challenge as it is")
    assert challenge_failure(200, b"abd", "abc") == (
        "the callback answered 'abd' instead of echoing hub.challenge")
    assert challenge_failure(201, b"", "abc") is not None
    assert challenge_failure(302, b"abc", "abc") == (
        "the callback answered HTTP 302 to the verification request")


def test_the_webhooks_consumer_is_a_side_effect_that_skips() -> None:
    """Replay never runs the webhooks consumer, it starts at the head, and an event it cannot
    handle is parked instead of stopping every app's deliveries on that shard."""
    handlers.load()
    c = CONSUMERS.get("webhooks")
    assert c.side_effect and c.from_head and c.on_failure is OnFailure.SKIP
