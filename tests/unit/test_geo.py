"""The pure geo core: validation messages, great-circle distances, bounding boxes."""

from __future__ import annotations

import math
import random

import pytest

from server.domain.geo import (
    DEFAULT_COUNT,
    DEFAULT_DISTANCE_M,
    EARTH_RADIUS_M,
    GeoPoint,
    GeoQuery,
    GeoValueError,
    bounding_boxes,
    haversine_m,
    parse_count,
    parse_distance,
    parse_latitude,
    parse_longitude,
    parse_namespace,
    parse_timestamp_ms,
    search_query,
    within,
)


@pytest.mark.parametrize("raw", ["abc", "", " 1", "1 ", "nan", "NaN", "inf", "-Infinity",
                                 "1e999", "1_0", "0x10", "--1", "1,5", None, True, [1], 90.5,
                                 "-90.0001", float("nan"), float("inf")])
def test_bad_latitudes_name_the_parameter_and_the_value(raw: object) -> None:
    """Latitudes that are not finite decimal numbers from -90 to 90 are refused, and the
    message names the parameter, the range and the value received."""
    with pytest.raises(GeoValueError) as e:
        parse_latitude(raw)
    assert e.value.param == "lat"
    assert str(e.value) == f"lat must be a latitude in degrees between -90 and 90, got {raw!r}"


@pytest.mark.parametrize(("raw", "value"), [("48.8566", 48.8566), ("-90", -90.0), (90, 90.0),
                                            ("+1.5e1", 15.0), (".5", 0.5), ("7.", 7.0)])
def test_good_latitudes(raw: object, value: float) -> None:
    """Decimal strings and numbers in range are read as floats, the bounds included."""
    assert parse_latitude(raw) == value


def test_longitude_range_and_message() -> None:
    """Longitudes run from -180 to 180 inclusive; anything else says so."""
    assert parse_longitude("-180") == -180.0 and parse_longitude(180) == 180.0
    with pytest.raises(GeoValueError, match=r"^lng must be a longitude in degrees between "
                                            r"-180 and 180, got '180.5'$"):
        parse_longitude("180.5")
    with pytest.raises(GeoValueError, match="^lon must"):
        parse_longitude("west", "lon")


def test_distance_default_bounds_and_message() -> None:
    """distance defaults to 1,000 m, must be above 0 and at most 5,000 m."""
    assert parse_distance(None) == parse_distance("") == DEFAULT_DISTANCE_M == 1000.0
    assert parse_distance("5000") == 5000.0 and parse_distance("0.5") == 0.5
    for bad in ("0", "-1", "5000.01", "1e4", "nan", "ten"):
        with pytest.raises(GeoValueError, match=r"^distance must be a distance in meters above "
                                                r"0 and at most 5,000, got "):
            parse_distance(bad)


def test_count_and_timestamps() -> None:
    """count is 1 to 100 (default 20); timestamps are whole Unix seconds, read as ms."""
    assert parse_count(None) == DEFAULT_COUNT and parse_count("100") == 100
    for bad in ("0", "101", "2.5", "x", True):
        with pytest.raises(GeoValueError, match="^count must be an integer from 1 to 100"):
            parse_count(bad)
    assert parse_timestamp_ms("1700000000", "min_timestamp") == 1_700_000_000_000
    assert parse_timestamp_ms(None, "min_timestamp") is None
    # a max_timestamp is "at or before" that second: its last millisecond
    assert parse_timestamp_ms("1700000000", "max_timestamp", end=True) == 1_700_000_000_999
    assert search_query(0, 0, max_timestamp="1700000000").max_ms == 1_700_000_000_999
    for bad in ("-1", "1.5", "soon"):
        with pytest.raises(GeoValueError, match="^max_timestamp must be a Unix timestamp"):
            parse_timestamp_ms(bad, "max_timestamp")


def test_search_query_from_request_parameters() -> None:
    """The API's raw parameters make a GeoQuery; the first bad one is named."""
    q = search_query("48.85", "2.35", "250", "1700000000", "1700000100", "5")
    assert q == GeoQuery(48.85, 2.35, 250.0, 1_700_000_000_000, 1_700_000_100_999, 5, "time")
    assert search_query(0, 0) == GeoQuery(0.0, 0.0, 1000.0, None, None, 20, "time")
    with pytest.raises(GeoValueError) as e:
        search_query("48.85", "east")
    assert e.value.param == "lng"
    with pytest.raises(GeoValueError, match="min_timestamp must not be after max_timestamp"):
        search_query(0, 0, None, "20", "10")


def test_points_and_queries_validate_themselves() -> None:
    """GeoPoint and GeoQuery refuse values the index must never see."""
    with pytest.raises(GeoValueError, match="^media_id"):
        GeoPoint(0, 1, 0.0, 0.0, 0)
    with pytest.raises(GeoValueError, match="^lat"):
        GeoPoint(1, 1, 91.0, 0.0, 0)
    with pytest.raises(GeoValueError, match="^created_ms"):
        GeoPoint(1, 1, 0.0, 0.0, -5)
    with pytest.raises(GeoValueError, match="^location_id"):
        GeoPoint(1, 1, 0.0, 0.0, 0, location_id=0)
    with pytest.raises(GeoValueError, match="^order"):
        GeoQuery(0.0, 0.0, order="random")  # type: ignore[arg-type]
    with pytest.raises(GeoValueError, match="^limit"):
        GeoQuery(0.0, 0.0, limit=1001)
    with pytest.raises(GeoValueError, match="^radius_m"):
        GeoQuery(0.0, 0.0, radius_m=5001)


def test_namespace_names() -> None:
    """Namespaces are short lower-case identifiers (they name tables and Solr terms)."""
    assert parse_namespace("rebuild_2024") == "rebuild_2024"
    for bad in ("", "Main", "1st", "a-b", "a b", "x" * 33, "geo;drop"):
        with pytest.raises(GeoValueError, match="^namespace"):
            parse_namespace(bad)


def test_haversine_known_values() -> None:
    """One degree along the equator or a meridian, pole to pole, Paris to London, and across
    the antimeridian."""
    degree = EARTH_RADIUS_M * math.pi / 180
    assert haversine_m(0, 0, 0, 1) == pytest.approx(degree, rel=1e-12)
    assert haversine_m(10, 20, 11, 20) == pytest.approx(degree, rel=1e-12)
    assert haversine_m(90, 0, -90, 0) == pytest.approx(math.pi * EARTH_RADIUS_M, rel=1e-12)
    assert haversine_m(0, 0, 0, 180) == pytest.approx(math.pi * EARTH_RADIUS_M, rel=1e-12)
    assert haversine_m(48.8566, 2.3522, 51.5074, -0.1278) == pytest.approx(343_560, abs=100)
    assert haversine_m(0, 179.9, 0, -179.9) == pytest.approx(0.2 * degree, rel=1e-9)
    assert haversine_m(89.9, 0, 89.9, 180) == pytest.approx(0.2 * degree, rel=1e-9)
    assert haversine_m(1, 2, 3, 4) == haversine_m(3, 4, 1, 2)
    assert haversine_m(12.5, -7.25, 12.5, -7.25) == 0.0
    # PostGIS's sphere and Lucene use 6,371,008.7714 m: one degree is 111,195.0797 m there.
    assert degree == pytest.approx(111_195.0797, abs=1e-4)


def test_bounding_boxes_split_at_the_antimeridian_and_open_at_the_poles() -> None:
    """A circle across 180 gives two boxes; one around a pole spans every longitude."""
    east = bounding_boxes(0.0, 179.99, 5000)
    assert len(east) == 2
    assert east[0].max_lng == 180.0 and east[1].min_lng == -180.0
    assert within(east, 0.0, -179.99) and within(east, 0.0, 179.96)
    assert not within(east, 0.0, 0.0)
    west = bounding_boxes(0.0, -179.99, 5000)
    assert len(west) == 2 and within(west, 0.01, 179.99)
    (polar,) = bounding_boxes(89.99, 0.0, 5000)
    assert (polar.min_lng, polar.max_lng, polar.max_lat) == (-180.0, 180.0, 90.0)
    assert within((polar,), 89.99, 180.0)
    (plain,) = bounding_boxes(60.0, 10.0, 1000)
    # The longitude half-width grows as 1 / cos(lat): twice the latitude's at 60 degrees.
    assert (plain.max_lng - plain.min_lng) == pytest.approx(2 * (plain.max_lat - plain.min_lat),
                                                            rel=1e-6)


def _destination(lat: float, lng: float, bearing: float, d: float) -> tuple[float, float]:
    a = d / EARTH_RADIUS_M
    p1, l1 = math.radians(lat), math.radians(lng)
    p2 = math.asin(math.sin(p1) * math.cos(a) + math.cos(p1) * math.sin(a) * math.cos(bearing))
    l2 = l1 + math.atan2(math.sin(bearing) * math.sin(a) * math.cos(p1),
                         math.cos(a) - math.sin(p1) * math.sin(p2))
    return math.degrees(p2), (math.degrees(l2) + 540) % 360 - 180


def test_bounding_boxes_contain_every_point_of_the_circle() -> None:
    """Points on and inside random circles (anywhere, poles and antimeridian included) all
    fall in the circle's boxes, and a point just outside the latitude band does not."""
    rng = random.Random(7)
    centers = [(89.995, 10.0), (-89.99, -170.0), (0.0, 180.0), (-16.5, -179.999),
               (70.0, 179.98)]
    for i in range(3000):
        lat, lng = centers[i % 5] if i % 3 == 0 else \
            (math.degrees(math.asin(rng.uniform(-1, 1))), rng.uniform(-180, 180))
        radius = math.exp(rng.uniform(math.log(10), math.log(5000)))
        boxes = bounding_boxes(lat, lng, radius)
        for edge in (1.0, rng.random()):
            plat, plng = _destination(lat, lng, rng.uniform(0, 2 * math.pi), radius * edge)
            assert within(boxes, plat, plng), (lat, lng, radius, plat, plng)
        outside = lat + math.degrees(radius * 1.01 / EARTH_RADIUS_M)
        if outside < 90:
            assert not within(boxes, outside, lng)


def test_newest_first_walks_the_time_index_only_where_hits_are_dense() -> None:
    """PostGIS newest-first reads the newest points only when the probe says the circle
    holds so many that a walk reaches the limit sooner than sorting every hit would."""
    from server.store.geo import PROBE_K, newest_first_window

    # 64 points within 50 m: about 640,000 in 5 km, one in 1.6 of a million-point table.
    assert newest_first_window(20, 1e6, 50.0, 5000.0) == int(4 * 20 * 1e6 / 640_000) + 20
    # 64 points within 1 km: about 1,600 in 5 km; sorting them beats a 12,500-point walk.
    assert newest_first_window(20, 1e6, 1000.0, 5000.0) is None
    assert newest_first_window(20, 1e6, 6000.0, 5000.0) is None  # fewer than 64 in the circle
    assert newest_first_window(20, 1e6, None, 5000.0) is None  # fewer than 64 in the table
    assert newest_first_window(20, 0.0, 50.0, 5000.0) is None  # never analyzed
    # 64 points on the very spot of a 100-point table: all are hits, walk the newest 100.
    assert newest_first_window(20, 100.0, 0.0, 5000.0) == 100
    assert PROBE_K == 64
