"""The contract every IGeoIndex backend keeps, as checks over a fresh, empty index.

``test_geo_contract.py`` runs each check against PostGIS (the suite's PostgreSQL), Solr (the
local Solr server) and, when ``SOLR_URL`` is set, a real Solr. Correctness is judged against
a brute-force haversine over the same points: a point nearer than
``boundary_tolerance_m(radius)`` to a search circle's edge may be found or not (float
rounding; Lucene's 1 cm coordinate quantization), every other point must be exactly where
the brute force says.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Collection
from dataclasses import dataclass

import pytest

from server.domain.geo import (
    GeoHit,
    GeoPoint,
    GeoQuery,
    GeoValueError,
    NamespaceError,
    boundary_tolerance_m,
    haversine_m,
)
from server.interfaces import IGeoIndex

Check = Callable[[IGeoIndex], None]
CHECKS: list[Check] = []


def check(fn: Check) -> Check:
    CHECKS.append(fn)
    return fn


def within_radius(index: IGeoIndex, lat: float, lng: float, radius_m: float = 5000, **kw: object
                  ) -> list[int]:
    """Media ids found around (lat, lng), nearest first."""
    q = GeoQuery(lat, lng, radius_m, limit=1000, order="distance")
    return [h.media_id for h in index.search(q, **kw)]  # type: ignore[arg-type]


# --- the brute force -------------------------------------------------------------------------


@dataclass
class Viewer:
    user_id: int | None
    allowed: frozenset[int]

    def sees(self, p: GeoPoint) -> bool:
        return not p.hidden or p.owner_id == self.user_id or p.owner_id in self.allowed


def assert_matches_brute_force(
    hits: list[GeoHit], points: dict[int, GeoPoint], q: GeoQuery, viewer: Viewer
) -> None:
    """``hits`` are what a brute-force scan of ``points`` gives for ``q``, up to the boundary
    tolerance; the message says which query failed and how."""
    tol = boundary_tolerance_m(q.radius_m)
    lo = -math.inf if q.min_ms is None else q.min_ms
    hi = math.inf if q.max_ms is None else q.max_ms
    dist: dict[int, float] = {}
    sure: set[int] = set()
    maybe: set[int] = set()
    for p in points.values():
        if not viewer.sees(p) or not lo <= p.created_ms <= hi:
            continue
        d = haversine_m(q.lat, q.lng, p.lat, p.lng)
        dist[p.media_id] = d
        if d <= q.radius_m - tol:
            sure.add(p.media_id)
        elif d <= q.radius_m + tol:
            maybe.add(p.media_id)
    where = f"{q} viewer={viewer}"
    ids = [h.media_id for h in hits]
    assert len(ids) == len(set(ids)), f"duplicates in {ids} for {where}"
    assert len(ids) <= q.limit, where
    for h in hits:
        assert h.media_id in sure | maybe, f"{h} should not be found by {where}"
        assert abs(h.distance_m - dist[h.media_id]) <= tol, f"{h}: distance {dist[h.media_id]}"
        assert h.created_ms == points[h.media_id].created_ms, f"{h}: wrong created_ms"
    if len(ids) < q.limit:
        missing = sure - set(ids)
        assert not missing, f"{sorted(missing)} not found by {where}"
    if not hits:
        return
    if q.order == "time":
        keys = [(-h.created_ms, -h.media_id) for h in hits]
        assert keys == sorted(keys), f"not newest first: {hits}"
        last = keys[-1]
        skipped = {m for m in sure - set(ids) if (-points[m].created_ms, -m) < last}
        assert not skipped, f"{sorted(skipped)} rank before the last hit of {where}"
    else:
        assert all(a.distance_m <= b.distance_m for a, b in zip(hits, hits[1:], strict=False)), \
            f"not nearest first: {hits}"
        last_d = dist[hits[-1].media_id]
        skipped = {m for m in sure - set(ids) if dist[m] < last_d - 2 * tol}
        assert not skipped, f"{sorted(skipped)} are nearer than the last hit of {where}"


# --- random points: a city, both poles, the antimeridian, and a sparse background ------------


def _around(rng: random.Random, lat: float, lng: float, spread_m: float) -> tuple[float, float]:
    """A point at a random bearing and a random distance up to ``spread_m`` (clamped/wrapped)."""
    d = spread_m * math.sqrt(rng.random()) / 6_371_008.7714
    b = rng.uniform(0, 2 * math.pi)
    p1, l1 = math.radians(lat), math.radians(lng)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
    l2 = l1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(p1),
                         math.cos(d) - math.sin(p1) * math.sin(p2))
    lng2 = (math.degrees(l2) + 540) % 360 - 180
    return max(-90.0, min(90.0, math.degrees(p2))), lng2


CLUSTERS = [  # (lat, lng, spread in meters, points)
    (48.8566, 2.3522, 6000, 900),  # a city
    (90.0, 0.0, 4000, 400),  # the north pole
    (-90.0, 0.0, 4000, 300),  # the south pole
    (-16.5, 180.0, 5000, 400),  # Fiji, across the antimeridian
    (0.0, -180.0, 3000, 200),  # the equator at the antimeridian
    (71.0, 179.99, 3000, 200),  # far north, across the antimeridian
]


def random_points(rng: random.Random) -> list[GeoPoint]:
    private = {1, 2, 3, 4, 5}
    out: list[GeoPoint] = []
    spots = [(lat, lng, spread) for lat, lng, spread, n in CLUSTERS for _ in range(n)]
    spots += [(math.degrees(math.asin(rng.uniform(-1, 1))), rng.uniform(-180, 180), 0)
              for _ in range(300)]
    for i, (lat, lng, spread) in enumerate(spots, start=1):
        plat, plng = _around(rng, lat, lng, spread) if spread else (lat, lng)
        owner = rng.randint(1, 40)
        out.append(GeoPoint(
            media_id=1000 + i, owner_id=owner, lat=plat, lng=plng,
            created_ms=rng.randint(0, 1500) * 1000,  # ties on purpose
            location_id=rng.choice([None, rng.randint(1, 99)]), hidden=owner in private,
        ))
    out.append(GeoPoint(99, 7, 90.0, 123.0, 5000))  # exactly on the pole
    out.append(GeoPoint(98, 7, 0.0, 180.0, 5000))  # exactly on the antimeridian
    return out


def random_query(rng: random.Random, points: list[GeoPoint]) -> tuple[GeoQuery, Viewer]:
    radius = math.exp(rng.uniform(math.log(10), math.log(5000)))
    centers = [(90.0, rng.uniform(-180, 180)), (-90.0, 0.0), (0.0, 180.0), (0.0, -180.0),
               (-16.5, 180.0), (48.8566, 2.3522)]
    if rng.random() < 0.7:
        p = rng.choice(points)
        lat, lng = _around(rng, p.lat, p.lng, radius)
    else:
        lat, lng = rng.choice(centers)
    times = sorted(rng.randint(0, 1_500_000) for _ in range(2))
    min_ms, max_ms = rng.choice([(None, None), (times[0], None), (None, times[1]), times])
    viewer = rng.choice([
        Viewer(None, frozenset()), Viewer(rng.randint(1, 40), frozenset()),
        Viewer(rng.randint(1, 40), frozenset(rng.sample(range(1, 6), 2))),
    ])
    q = GeoQuery(lat, lng, radius, min_ms, max_ms, limit=rng.choice([1, 5, 20, 100, 1000]),
                 order=rng.choice(["time", "distance"]))
    return q, viewer


def search(index: IGeoIndex, q: GeoQuery, viewer: Viewer) -> list[GeoHit]:
    return index.search(q, viewer.user_id, viewer.allowed)


# --- the checks ------------------------------------------------------------------------------


@check
def search_matches_brute_force(index: IGeoIndex) -> None:
    """Random searches (10 m to 5 km; poles, antimeridian, a city; both orders; limits, time
    ranges, viewers) return what a brute-force haversine over the same points returns."""
    rng = random.Random(20240601)
    points = random_points(rng)
    for start in range(0, len(points), 500):
        index.upsert(points[start:start + 500])
    index.refresh()
    assert index.count() == len(points)
    by_id = {p.media_id: p for p in points}
    found = answered = 0
    for _ in range(150):
        q, viewer = random_query(rng, points)
        hits = search(index, q, viewer)
        assert_matches_brute_force(hits, by_id, q, viewer)
        found += len(hits)
        answered += bool(hits)
    # The data and queries are such that most searches find something (not vacuous).
    assert found > 600 and answered > 80, (found, answered)


@check
def poles_and_antimeridian_wrap(index: IGeoIndex) -> None:
    """A circle on a pole finds points at every longitude; one on the antimeridian finds
    points on both sides of it."""
    index.upsert([
        GeoPoint(1, 9, 89.99, -170.0, 1), GeoPoint(2, 9, 89.99, 10.0, 2),
        GeoPoint(3, 9, 89.99, 100.0, 3), GeoPoint(4, 9, 0.0, 179.995, 4),
        GeoPoint(5, 9, 0.0, -179.995, 5), GeoPoint(6, 9, 0.0, 179.9, 6),
    ])
    index.refresh()
    assert sorted(within_radius(index, 90.0, 0.0, 2000)) == [1, 2, 3]
    assert sorted(within_radius(index, 0.0, 180.0, 1000)) == [4, 5]
    assert sorted(within_radius(index, 0.0, -180.0, 1000)) == [4, 5]


@check
def both_spellings_of_the_antimeridian(index: IGeoIndex) -> None:
    """Points stored at longitude -180 or 180, searched from -180, 180 or next to it, are the
    same places (PostGIS's KNN index trips over mixed spellings unless they are unified)."""
    index.upsert([GeoPoint(1, 9, 0.0, 180.0, 1), GeoPoint(2, 9, 0.0, -180.0, 2),
                  GeoPoint(3, 9, 0.0, 179.9999999, 3), GeoPoint(4, 9, 0.0, -179.9999999, 4)])
    index.refresh()
    for lng in (-180.0, 180.0, 179.9999999, -179.9999999):
        for order in ("time", "distance"):
            hits = index.search(GeoQuery(0.0, lng, 10, order=order))
            assert sorted(h.media_id for h in hits) == [1, 2, 3, 4], (lng, order, hits)
            assert all(h.distance_m < 0.05 for h in hits), hits


@check
def orders_and_limits(index: IGeoIndex) -> None:
    """Newest first breaks ties by the higher media id, nearest first by the lower; the limit
    keeps the first ones in that order."""
    base = (45.0, 7.0)
    # media id: (steps of 0.0009 degrees, about 100 m, north of base; time)
    layout = {10: (0, 500), 11: (1, 900), 12: (2, 900), 13: (3, 100), 14: (4, 700), 15: (0, 300)}
    points = {m: GeoPoint(m, 9, base[0] + step * 0.0009, base[1], t)
              for m, (step, t) in layout.items()}
    index.upsert(points.values())
    index.refresh()
    newest = index.search(GeoQuery(*base, 1000, order="time", limit=10))
    assert [h.media_id for h in newest] == [12, 11, 14, 10, 15, 13]
    nearest = index.search(GeoQuery(*base, 1000, order="distance", limit=10))
    assert [h.media_id for h in nearest] == [10, 15, 11, 12, 13, 14]
    for h in nearest:
        expected = haversine_m(*base, points[h.media_id].lat, base[1])
        assert abs(h.distance_m - expected) <= boundary_tolerance_m(1000)
    assert [h.media_id for h in index.search(GeoQuery(*base, 1000, limit=2))] == [12, 11]
    top = index.search(GeoQuery(*base, 1000, order="distance", limit=3))
    assert [h.media_id for h in top] == [10, 15, 11]
    assert [h.media_id for h in index.search(GeoQuery(*base, 150, order="distance"))] == \
        [10, 15, 11]


@check
def time_range_is_inclusive(index: IGeoIndex) -> None:
    """min and max times are inclusive bounds on the creation time."""
    index.upsert([GeoPoint(m, 9, 10.0, 10.0, m * 1000) for m in range(1, 8)])
    index.refresh()

    def ids(min_ms: int | None, max_ms: int | None) -> list[int]:
        return [h.media_id for h in index.search(GeoQuery(10.0, 10.0, 100, min_ms, max_ms))]

    assert ids(3000, 5000) == [5, 4, 3]
    assert ids(5000, None) == [7, 6, 5]
    assert ids(None, 2000) == [2, 1]
    assert ids(3001, 3999) == []


@check
def upsert_is_idempotent_and_replaces(index: IGeoIndex) -> None:
    """Applying the same points twice changes nothing; a point upserted again with a new
    place and time replaces the old one."""
    points = [GeoPoint(m, 9, 30.0 + m * 1e-4, 30.0, m, location_id=m) for m in range(1, 6)]
    index.upsert(points)
    index.upsert(points)
    index.refresh()
    before = index.search(GeoQuery(30.0, 30.0, 2000, limit=100))
    index.upsert(points)
    index.refresh()
    assert index.count() == 5
    assert index.search(GeoQuery(30.0, 30.0, 2000, limit=100)) == before
    assert [h.media_id for h in before] == [5, 4, 3, 2, 1]
    index.upsert([GeoPoint(3, 9, -30.0, -30.0, 77)])
    index.refresh()
    assert index.count() == 5
    assert 3 not in within_radius(index, 30.0, 30.0)
    assert index.search(GeoQuery(-30.0, -30.0, 10)) == [GeoHit(3, 0.0, 77)]


@check
def removed_points_are_never_found(index: IGeoIndex) -> None:
    """A removed point is found by nobody, its owner included; removing twice, or removing
    what was never indexed, changes nothing."""
    index.upsert([GeoPoint(m, 9, 20.0, 20.0, m) for m in (1, 2, 3)])
    index.refresh()
    index.remove([2])
    assert within_radius(index, 20.0, 20.0, viewer_id=9) == [1, 3]
    index.remove([2, 12345])
    assert within_radius(index, 20.0, 20.0, viewer_id=9) == [1, 3]
    assert index.count() == 2
    index.remove([])
    assert index.count() == 2


@check
def hidden_points_are_not_found_by_strangers(index: IGeoIndex) -> None:
    """A private account's points are found by the owner and by viewers allowed to see them,
    never by strangers or anonymous searches; going public and private again is applied to
    every point of that owner only, and repeating it changes nothing."""
    index.upsert([GeoPoint(1, 7, 5.0, 5.0, 1, hidden=True), GeoPoint(2, 8, 5.0, 5.0, 2)])
    index.refresh()
    assert within_radius(index, 5.0, 5.0) == [2]
    assert within_radius(index, 5.0, 5.0, viewer_id=100) == [2]
    assert within_radius(index, 5.0, 5.0, viewer_id=100, visible_owners={8}) == [2]
    assert within_radius(index, 5.0, 5.0, viewer_id=7) == [1, 2]
    assert within_radius(index, 5.0, 5.0, viewer_id=100, visible_owners={7}) == [1, 2]
    index.set_owner_hidden(7, False)
    assert within_radius(index, 5.0, 5.0) == [1, 2]
    index.set_owner_hidden(8, True)
    index.set_owner_hidden(8, True)
    assert within_radius(index, 5.0, 5.0) == [1]
    assert within_radius(index, 5.0, 5.0, viewer_id=8) == [1, 2]
    index.upsert([GeoPoint(3, 8, 5.0, 5.0, 3, hidden=True)])  # a new post while private
    index.refresh()
    assert within_radius(index, 5.0, 5.0, viewer_id=100) == [1]
    index.set_owner_hidden(8, False)
    assert within_radius(index, 5.0, 5.0, viewer_id=100) == [1, 2, 3]
    assert index.count() == 3


@check
def namespaces_rebuild_and_swap_atomically(index: IGeoIndex) -> None:
    """A new namespace is filled aside while the live one keeps answering, becomes live in
    one swap, and the old one can then be dropped; misuse is refused."""
    assert index.live() == "main" and index.namespaces() == ["main"]
    index.upsert([GeoPoint(1, 9, 1.0, 1.0, 1)])
    index.refresh()
    fresh = index.create("rebuild_1")
    assert fresh.namespace == "rebuild_1" and fresh.count() == 0
    fresh.upsert([GeoPoint(2, 9, 1.0, 1.0, 2), GeoPoint(3, 9, 1.0, 1.0, 3)])
    assert within_radius(index, 1.0, 1.0) == [1]
    assert index.namespaces() == ["main", "rebuild_1"]
    assert index.swap("rebuild_1") == "main"
    assert index.live() == "rebuild_1"
    assert within_radius(index, 1.0, 1.0) == [2, 3]
    assert index.count() == 2
    assert index.open("main").count() == 1
    index.upsert([GeoPoint(4, 9, 1.0, 1.0, 4)])  # the live object now writes the new one
    index.refresh()
    assert fresh.count() == 3
    index.drop("main")
    assert index.namespaces() == ["rebuild_1"]
    for misuse in (lambda: index.create("rebuild_1"), lambda: index.open("main"),
                   lambda: index.drop("rebuild_1"), lambda: index.swap("nope"),
                   lambda: index.drop("main")):
        with pytest.raises(NamespaceError):
            misuse()
    with pytest.raises(GeoValueError):
        index.create("Bad-Name")
    assert within_radius(index, 1.0, 1.0) == [2, 3, 4]


@check
def bulk_load_upserts_and_reports_progress(index: IGeoIndex) -> None:
    """bulk_load adds a stream of points (the last of repeated media ids wins) and reports
    the running total."""
    fresh = index.create("bulk")
    points = [GeoPoint(m, 9, 60.0, 60.0 + m * 1e-5, m) for m in range(1, 1201)]
    points.append(GeoPoint(5, 9, -60.0, -60.0, 5))
    seen: list[int] = []
    assert fresh.bulk_load(iter(points), seen.append) == len(points)
    assert seen and seen[-1] == len(points) and seen == sorted(seen)
    fresh.refresh()
    assert fresh.count() == 1200
    assert [h.media_id for h in fresh.search(GeoQuery(-60.0, -60.0, 10))] == [5]
    assert index.count() == 0


def run_all(make_index: Callable[[], IGeoIndex], checks: Collection[Check] = CHECKS) -> None:
    """Run ``checks``, each on a fresh index from ``make_index``."""
    for fn in checks:
        fn(make_index())
