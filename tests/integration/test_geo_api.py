"""Geo search end to end: the ``geo_index`` consumer feeds the index from the log, and
``/v1/media/search`` and ``/v1/locations`` answer through the API service, checked against a
brute-force haversine over the same points (near the poles and across the antimeridian),
with deleted, private and blocked media never shown to whom must not see them."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

import pytest

from plugins.geo import open_index
from plugins.geo.solr import SolrGeoIndex, solr_client
from scripts.fakes.solr import FakeSolr
from scripts.seed import ready_medium
from server.domain import geo
from server.domain.geo import GeoQuery, boundary_tolerance_m, haversine_m
from server.domain.ids import decode_id
from server.interfaces import IGeoIndex
from server.store import places
from tests.drive import Driver
from tests.integration.apiclient import Api
from tests.integration.conftest import Env
from tests.integration.mediakit import picture, settle, upload

#: Areas of the tests of this module, far apart (searches are global: each test keeps to its
#: own places so that another test's media never enter its circles).
NORTH_POLE = (89.97, 0.0)
ANTIMERIDIAN = (-16.5, 180.0)
SOUTH = (-77.85, 166.67)
EQUATOR = (0.3, 32.5)
PRIVACY = (10.0, 10.0)
BLOCKS = (20.0, -20.0)
LOCATIONS = (48.854, 2.3325)
REPLAYS = (-40.0, -70.0)


@pytest.fixture(scope="module")
def geo_index(module_env: Env) -> Iterator[IGeoIndex]:
    """The module's geo index (the configured backend, live namespace)."""
    index = open_index(module_env.config, module_env.router)
    yield index
    index.close()


@pytest.fixture(scope="module")
def token(service: Any, module_env: Env) -> str:
    """One caller's token for the parameter checks."""
    return Api(module_env, service).user()[1]


def scatter(rng: random.Random, centre: tuple[float, float], n: int, spread_m: float
            ) -> list[tuple[float, float]]:
    """``n`` random points within about ``spread_m`` of ``centre`` (on the sphere: the
    longitude wraps at the antimeridian, and circles at a pole take every longitude)."""
    out = []
    for _ in range(n):
        d = spread_m * math.sqrt(rng.random()) / geo.EARTH_RADIUS_M
        bearing = rng.uniform(0, 2 * math.pi)
        lat1, lng1 = map(math.radians, centre)
        lat2 = math.asin(math.sin(lat1) * math.cos(d)
                         + math.cos(lat1) * math.sin(d) * math.cos(bearing))
        lng2 = lng1 + math.atan2(math.sin(bearing) * math.sin(d) * math.cos(lat1),
                                 math.cos(d) - math.sin(lat1) * math.sin(lat2))
        lng = (math.degrees(lng2) + 540.0) % 360.0 - 180.0
        out.append((round(math.degrees(lat2), 7), round(lng, 7)))
    return out


def search(api: Api, token: str, **params: Any) -> list[int]:
    r = api.get("/v1/media/search", token, **params)
    assert r.status_code == 200, r.text
    return [int(m["id"]) for m in r.json()["data"]]


def test_search_agrees_with_brute_force_haversine(api: Api) -> None:
    """Random points around a pole, across the antimeridian, at high southern latitude and
    at the equator; random circles of 10 m to 5 km, newest and nearest first: the API
    returns exactly what a haversine over every point says (points within a hair of the
    circle's edge may go either way), in the right order."""
    rng = random.Random(10)
    owner, token = api.user()
    owner_id = int(owner["id"])
    points: dict[int, tuple[float, float]] = {}
    for centre in (NORTH_POLE, ANTIMERIDIAN, SOUTH, EQUATOR):
        for place in scatter(rng, centre, 90, 3000):
            points[ready_medium(api.env.store, api.env.router, owner_id, place=place)] = place
    settle(api.env)
    created = {i: p.created_ms for i, p in places.placed(api.env.router, points).items()}
    checked = 0
    for n in range(48):
        centre = [NORTH_POLE, ANTIMERIDIAN, SOUTH, EQUATOR][n % 4]
        lat, lng = scatter(rng, centre, 1, 3000)[0]
        radius = round(10 ** rng.uniform(1, math.log10(5000)), 1)
        order = "time" if n % 3 else "distance"
        count = rng.choice([5, 20, 100])
        got = search(api, token, lat=lat, lng=lng, distance=radius, count=count, order=order)
        dist = {i: haversine_m(lat, lng, *p) for i, p in points.items()}
        tol = boundary_tolerance_m(radius)
        sure = {i for i, d in dist.items() if d <= radius - tol}
        maybe = {i for i, d in dist.items() if radius - tol < d <= radius + tol}
        assert set(got) <= sure | maybe, (lat, lng, radius)
        assert len(got) == len(set(got)) <= count
        rank = {i: (-created[i], -i) if order == "time" else (dist[i], i) for i in points}
        key = rank.__getitem__
        assert got == sorted(got, key=key)
        if len(got) < count:
            assert sure <= set(got), (lat, lng, radius, sorted(sure - set(got)))
        else:  # a full page: every sure hit ranked before its last one is in it
            assert {i for i in sure if key(i) < key(got[-1])} <= set(got)
        checked += len(got)
    assert checked > 150  # the circles were not all empty


def test_defaults_and_limits_of_media_search(api: Api) -> None:
    """distance defaults to 1,000 m (a point 1.5 km away is not found, one 900 m away is);
    count defaults to 20."""
    owner, token = api.user()
    here = (EQUATOR[0] + 1.0, EQUATOR[1])
    near = ready_medium(api.env.store, api.env.router, int(owner["id"]),
                        place=(here[0] + 900 / 111_195, here[1]))
    far = ready_medium(api.env.store, api.env.router, int(owner["id"]),
                       place=(here[0] + 1500 / 111_195, here[1]))
    settle(api.env)
    assert search(api, token, lat=here[0], lng=here[1]) == [near]
    assert search(api, token, lat=here[0], lng=here[1], distance=5000) == [far, near]
    many = [ready_medium(api.env.store, api.env.router, int(owner["id"]), place=here)
            for _ in range(25)]
    settle(api.env)
    assert search(api, token, lat=here[0], lng=here[1]) == sorted(many, reverse=True)[:20]


def test_max_timestamp_takes_in_the_whole_second(api: Api) -> None:
    """A medium created at second T (its created_time) is posted "at or before" T: search
    and its owner's recent media both find it with min_timestamp and max_timestamp both T
    (the second's last milliseconds count, not only its first)."""
    owner, token = api.user()
    spot = (EQUATOR[0] - 2.0, EQUATOR[1] + 2.0)
    while True:  # one created after the second's first millisecond (999 times in 1,000)
        mid = ready_medium(api.env.store, api.env.router, int(owner["id"]), place=spot)
        settle(api.env)
        if places.placed(api.env.router, [mid])[mid].created_ms % 1000:
            break
        api.http.delete(f"/v1/media/{mid}", headers={"Authorization": f"Bearer {token}"})
        settle(api.env)
    t = int(api.get(f"/v1/media/{mid}", token).json()["data"]["created_time"])
    at_t = {"min_timestamp": t, "max_timestamp": t}
    assert search(api, token, lat=spot[0], lng=spot[1], **at_t) == [mid]
    r = api.get(f"/v1/users/{owner['id']}/media/recent", token, **at_t)
    assert [int(m["id"]) for m in r.json()["data"]] == [mid]
    assert search(api, token, lat=spot[0], lng=spot[1], max_timestamp=t - 1) == []


def test_deleted_private_and_blocked_media_are_never_found(api: Api, geo_index: IGeoIndex
                                                           ) -> None:
    """Deleted media leave search at once (the read checks the row) and the index after the
    consumer; a private account's media are found by itself and its followers, not by
    strangers, from the moment it switches (and again once public); blocks hide both ways."""
    alice, ta = api.user()
    follower, tf = api.user()
    stranger, ts = api.user()
    api.relate(tf, alice["id"], "follow")
    kept = ready_medium(api.env.store, api.env.router, int(alice["id"]), place=PRIVACY)
    gone = ready_medium(api.env.store, api.env.router, int(alice["id"]), place=PRIVACY)
    settle(api.env)
    at = {"lat": PRIVACY[0], "lng": PRIVACY[1]}
    assert search(api, ts, **at) == [gone, kept]

    assert api.http.delete(f"/v1/media/{gone}",
                           headers={"Authorization": f"Bearer {ta}"}).status_code == 200
    assert search(api, ts, **at) == [kept]  # before the consumer ran
    settle(api.env)
    assert [h.media_id for h in geo_index.search(GeoQuery(*PRIVACY))] == [kept]

    r = api.post("/v1/users/self", ta, is_private="true")
    assert r.status_code == 200 and r.json()["data"]["is_private"] is True, r.text
    assert search(api, ts, **at) == []  # before the consumer ran
    settle(api.env)
    assert geo_index.search(GeoQuery(*PRIVACY)) == []  # hidden in the index itself
    assert search(api, ts, **at) == []
    assert search(api, tf, **at) == [kept]
    assert search(api, ta, **at) == [kept]

    assert api.post("/v1/users/self", ta, is_private="false").status_code == 200
    settle(api.env)
    assert search(api, ts, **at) == [kept]

    # Blocks: the blocker does not find the blocked one's media, nor they the blocker's.
    bob, tb = api.user()
    carol, tc = api.user()
    bobs = ready_medium(api.env.store, api.env.router, int(bob["id"]), place=BLOCKS)
    carols = ready_medium(api.env.store, api.env.router, int(carol["id"]), place=BLOCKS)
    settle(api.env)
    there = {"lat": BLOCKS[0], "lng": BLOCKS[1]}
    # Newest first, ties (one millisecond) by id: the index's order, whichever it is here.
    both = [h.media_id for h in geo_index.search(GeoQuery(*BLOCKS))]
    assert sorted(both) == sorted([carols, bobs])
    assert search(api, tb, **there) == both
    api.relate(tb, carol["id"], "block")
    settle(api.env)
    assert search(api, tb, **there) == [bobs]
    assert search(api, tc, **there) == [carols]
    assert search(api, ts, **there) == both


@pytest.mark.parametrize(("params", "message"), [
    ({"lng": "2"}, "lat is required"),
    ({"lat": "2"}, "lng is required"),
    ({"lat": "91", "lng": "0"}, "lat must be a latitude in degrees between -90 and 90, got '91'"),
    ({"lat": "-90.0001", "lng": "0"}, "lat must be a latitude"),
    ({"lat": "nan", "lng": "0"}, "lat must be a latitude in degrees between -90 and 90, "
     "got 'nan'"),
    ({"lat": "0", "lng": "inf"}, "lng must be a longitude in degrees between -180 and 180, "
     "got 'inf'"),
    ({"lat": "0", "lng": "-Infinity"}, "lng must be a longitude"),
    ({"lat": "north", "lng": "0"}, "lat must be a latitude"),
    ({"lat": "1,5", "lng": "0"}, "lat must be a latitude"),
    ({"lat": "", "lng": "0"}, "lat must be a latitude"),
    ({"lat": "0", "lng": "180.5"}, "lng must be a longitude in degrees between -180 and 180, "
     "got '180.5'"),
    ({"lat": "0", "lng": "0", "distance": "0"}, "distance must be a distance in meters above 0 "
     "and at most 5,000, got '0'"),
    ({"lat": "0", "lng": "0", "distance": "5000.1"}, "distance must be a distance in meters"),
    ({"lat": "0", "lng": "0", "distance": "-5"}, "distance must be a distance in meters"),
    ({"lat": "0", "lng": "0", "distance": "NaN"}, "distance must be a distance in meters"),
    ({"lat": "0", "lng": "0", "count": "0"}, "count must be an integer from 1 to 100, got '0'"),
    ({"lat": "0", "lng": "0", "count": "101"}, "count must be an integer from 1 to 100"),
    ({"lat": "0", "lng": "0", "count": "2.5"}, "count must be an integer from 1 to 100"),
    ({"lat": "0", "lng": "0", "min_timestamp": "yesterday"},
     "min_timestamp must be a Unix timestamp in seconds (0 or more), got 'yesterday'"),
    ({"lat": "0", "lng": "0", "min_timestamp": "20", "max_timestamp": "10"},
     "min_timestamp must not be after max_timestamp"),
    ({"lat": "0", "lng": "0", "order": "random"}, "order must be one of: time, distance"),
])
def test_bad_parameters_of_media_search_are_named(api: Api, token: str,
                                                  params: dict[str, str], message: str) -> None:
    """Each bad coordinate, distance, time or count is a 400 naming the parameter."""
    r = api.get("/v1/media/search", token, **params)
    assert r.status_code == 400, r.text
    meta = r.json()["meta"]
    assert meta["error_type"] == "APIInvalidParametersError"
    assert meta["error_message"].startswith(message), meta["error_message"]


def test_locations_are_created_shared_found_and_listed(api: Api) -> None:
    """A new place named at upload gets the medium's id as its id; a same-named upload
    nearby and an upload giving the id share it; it is found by point and by name; its
    recent media page newest first. A private account's new place is not published."""
    alice, ta = api.user()
    r = upload(api, ta, picture(), lat=str(LOCATIONS[0]), lng=str(LOCATIONS[1]),
               location_name="Café de Flore")
    assert r.status_code == 200, r.text
    first = r.json()["data"]
    loc_id = first["location"]["id"]
    assert loc_id == first["id"]
    settle(api.env)
    got = api.get(f"/v1/locations/{loc_id}", ta).json()["data"]
    assert got == {"id": loc_id, "name": "Café de Flore", "latitude": LOCATIONS[0],
                   "longitude": LOCATIONS[1]}
    second = upload(api, ta, picture(), lat=str(LOCATIONS[0] + 0.0004),
                    lng=str(LOCATIONS[1]), location_name="CAFÉ DE FLORE").json()["data"]
    third = upload(api, ta, picture(), lat=str(LOCATIONS[0]), lng=str(LOCATIONS[1]),
                   location_id=loc_id).json()["data"]
    assert second["location"]["id"] == third["location"]["id"] == loc_id
    assert third["location"]["name"] == "Café de Flore"
    elsewhere = upload(api, ta, picture(), lat=str(LOCATIONS[0] + 0.01), lng=str(LOCATIONS[1]),
                       location_name="Café de Flore").json()["data"]
    assert elsewhere["location"]["id"] == elsewhere["id"]  # 1.1 km away: another place
    settle(api.env)

    near = api.get("/v1/locations/search", ta, lat=LOCATIONS[0], lng=LOCATIONS[1],
                   distance=500).json()["data"]
    assert [x["id"] for x in near] == [loc_id]
    wide = api.get("/v1/locations/search", ta, lat=LOCATIONS[0], lng=LOCATIONS[1],
                   distance=5000).json()["data"]
    assert [x["id"] for x in wide] == [loc_id, elsewhere["id"]]
    named = api.get("/v1/locations/search", ta, q="café de").json()["data"]
    assert {x["id"] for x in named} == {loc_id, elsewhere["id"]}
    assert api.get("/v1/locations/search", ta, q="cafe de").json()["data"] == []

    pages = [[m["id"] for m in page]
             for page in api.pages(f"/v1/locations/{loc_id}/media/recent", ta, count=2)]
    assert pages == [[third["id"], second["id"]], [first["id"]]]

    private, tp = api.user(is_private="true")
    secret = upload(api, tp, picture(), lat="48.9", lng="2.4", location_name="My garden")
    settle(api.env)
    hidden_place = secret.json()["data"]["location"]["id"]
    assert api.get(f"/v1/locations/{hidden_place}", ta).status_code == 404
    r = upload(api, ta, picture(), lat="48.9", lng="2.4", location_id=hidden_place)
    assert r.status_code == 400 and "location_id" in r.json()["meta"]["error_message"]


@pytest.mark.parametrize(("params", "message"), [
    ({}, "lat and lng, or q, are required"),
    ({"lat": "1"}, "lat and lng go together"),
    ({"lat": "95", "lng": "1"}, "lat must be a latitude"),
    ({"lat": "1", "lng": "nan"}, "lng must be a longitude"),
    ({"lat": "1", "lng": "1", "distance": "9000"}, "distance must be a distance in meters"),
    ({"q": "  "}, "q must be 1-100 characters"),
])
def test_bad_parameters_of_location_search_are_named(api: Api, token: str,
                                                     params: dict[str, str], message: str
                                                     ) -> None:
    """A location search needs a point or a name; bad ones are 400s naming the parameter."""
    r = api.get("/v1/locations/search", token, **params)
    assert r.status_code == 400, r.text
    assert r.json()["meta"]["error_message"].startswith(message)


def test_privacy_switch_is_idempotent_and_checked(api: Api) -> None:
    """Switching privacy appends one event; the same switch again, or a retry with its
    Idempotency-Key, appends nothing; a non-boolean is a 400."""
    me, token = api.user()

    def events() -> int:
        stream = f"user:{me['id']}"
        return len(api.env.store.read_stream(decode_id(int(me["id"])).shard, stream))

    before = events()
    key = {"Idempotency-Key": "privacy-1"}
    for _ in range(2):
        r = api.post("/v1/users/self", token, headers=key, is_private="true")
        assert r.status_code == 200 and r.json()["data"]["is_private"] is True
    assert api.post("/v1/users/self", token, is_private="true").status_code == 200
    assert events() == before + 1
    r = api.post("/v1/users/self", token, is_private="maybe")
    assert r.status_code == 400
    assert r.json()["meta"]["error_message"] == "is_private must be a boolean (true or false)"
    assert api.get("/v1/users/self", token).json()["data"]["is_private"] is True


EVERYWHERE = [GeoQuery(lat, lng, 5000, limit=1000) for lat, lng in
              (NORTH_POLE, ANTIMERIDIAN, SOUTH, EQUATOR, PRIVACY, BLOCKS, LOCATIONS, REPLAYS)]


def same_index(api: Api, built: IGeoIndex, live: IGeoIndex) -> None:
    """After a public and a private medium of their own, the consumer run from the origin
    into ``built`` (what a replay does) makes it hold as many points as the live index and
    answer every area's anonymous search alike."""
    public, _ = api.user()
    private, _ = api.user(is_private="true")
    shown, hidden = (ready_medium(api.env.store, api.env.router, int(user["id"]),
                                  place=REPLAYS) for user in (public, private))
    settle(api.env)
    driver = Driver(api.env)
    driver.ctx.geo = built
    driver.drive("geo_index")
    built.refresh()
    assert built.count() == live.count() > 1
    found = {h.media_id for h in built.search(GeoQuery(*REPLAYS))}
    assert shown in found and hidden not in found
    for q in EVERYWHERE:
        assert [h.media_id for h in built.search(q)] == [h.media_id for h in live.search(q)]


def test_replay_into_a_fresh_namespace_builds_the_same_index(api: Api, geo_index: IGeoIndex
                                                             ) -> None:
    """The consumer run from the origin with ``ctx.geo`` bound to a new namespace (what the
    replay CLI does) builds the index the live consumer built, hidden flags included."""
    fresh = geo_index.create("rebuild_test")
    try:
        same_index(api, fresh, geo_index)
    finally:
        geo_index.drop("rebuild_test")


def test_the_consumer_builds_the_same_index_on_solr(api: Api, geo_index: IGeoIndex) -> None:
    """The same consumer writing to the Solr backend (the local Solr server) builds an index
    that answers as the live PostGIS one does."""
    fake = FakeSolr()
    fake.start()
    try:
        same_index(api, SolrGeoIndex(solr_client(fake.url, 5000)), geo_index)
    finally:
        fake.stop()
