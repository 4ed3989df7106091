"""Geography, pure: coordinates and their validation, great-circle distance, bounding boxes,
and the values the geo index takes and returns (``GeoPoint``, ``GeoQuery``, ``GeoHit``).

**One sphere everywhere.** Distances are great-circle distances on a sphere of radius
``EARTH_RADIUS_M`` = 6,371,008.7714 m, the mean radius R1 = (2a + b) / 3 of the WGS84
ellipsoid (6,371,008.8 m rounded). It is the radius PostGIS uses for geography on the sphere
(``use_spheroid => false``, and its KNN ``<->`` operator) and the one Lucene/Solr use for
``LatLonPointSpatialField``, ``{!geofilt}`` and ``geodist()``. Distances on the WGS84 spheroid
differ from the sphere's by up to about 0.5% (about 25 m on a 5 km radius); the backends are
told to use the sphere, so every backend, their radius filters, their distance ordering and
the distances they return agree with ``haversine_m`` to float rounding (PostGIS) or to
Lucene's coordinate quantization of under 1 cm (Solr). ``BOUNDARY_TOLERANCE_M`` bounds that
disagreement: a point closer than it to the edge of a search circle may be found or not, and
the contract tests accept either.

Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

#: Mean Earth radius (WGS84 R1 = (2a + b) / 3), in meters: see the module docstring.
EARTH_RADIUS_M = 6_371_008.7714

DEFAULT_DISTANCE_M = 1_000.0
MAX_DISTANCE_M = 5_000.0
DEFAULT_COUNT = 20
MAX_COUNT = 100
#: The largest ``GeoQuery.limit`` the index accepts (the API's ``count`` stops at MAX_COUNT).
MAX_LIMIT = 1_000

#: How far from a search circle's edge a point may be found or missed: 1 ppm of the radius for
#: float rounding, plus 2 cm for Lucene's quantization of stored coordinates (under 1 cm each
#: way). Nothing user-visible depends on it; the contract tests use it.
BOUNDARY_TOLERANCE_PPM = 1.0
BOUNDARY_TOLERANCE_M = 0.02

Order = Literal["time", "distance"]
ORDERS: tuple[Order, ...] = ("time", "distance")

#: A namespace (generation) of the index: lower-case letters, digits and underscores.
NAMESPACE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
#: The namespace a fresh index starts with, live.
DEFAULT_NAMESPACE = "main"

# A decimal number as people and HTTP clients write it; float() alone would also accept
# "nan", "inf", "1_000" and surrounding whitespace.
_DECIMAL = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_INTEGER = re.compile(r"^[+-]?\d+$")


class GeoValueError(ValueError):
    """A bad coordinate, distance, time or count; ``param`` names the offending parameter."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param} {message}")
        self.param = param


class NamespaceError(RuntimeError):
    """A namespace that does not exist, already exists, or is live and so cannot be dropped."""


# --- validation ------------------------------------------------------------------------------


def _number(value: Any, param: str, expected: str, lo: float, hi: float,
            *, above_lo: bool = False) -> float:
    """A finite number from ``lo`` (exclusive if ``above_lo``) to ``hi``, given as a number
    or a decimal string; GeoValueError saying what was ``expected`` otherwise."""
    number = math.nan
    if isinstance(value, int | float | str) and not isinstance(value, bool) and \
            (not isinstance(value, str) or _DECIMAL.match(value)):
        number = float(value)
    if not math.isfinite(number) or not (lo < number if above_lo else lo <= number) \
            or number > hi:
        raise GeoValueError(param, f"must be {expected}, got {value!r}")
    return number


def parse_latitude(value: Any, param: str = "lat") -> float:
    """A latitude in degrees, -90 to 90, from a number or a decimal string."""
    return _number(value, param, "a latitude in degrees between -90 and 90", -90.0, 90.0)


def parse_longitude(value: Any, param: str = "lng") -> float:
    """A longitude in degrees, -180 to 180, from a number or a decimal string."""
    return _number(value, param, "a longitude in degrees between -180 and 180", -180.0, 180.0)


def parse_distance(value: Any, param: str = "distance") -> float:
    """A search radius in meters: above 0, at most MAX_DISTANCE_M; None gives the default."""
    if value is None or value == "":
        return DEFAULT_DISTANCE_M
    expected = f"a distance in meters above 0 and at most {MAX_DISTANCE_M:,.0f}"
    return _number(value, param, expected, 0.0, MAX_DISTANCE_M, above_lo=True)


def _integer(value: Any, param: str, expected: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise GeoValueError(param, f"must be {expected}, got {value!r}")
    if isinstance(value, str) and not _INTEGER.match(value):
        raise GeoValueError(param, f"must be {expected}, got {value!r}")
    return int(value)


def parse_timestamp_ms(value: Any, param: str, end: bool = False) -> int | None:
    """A Unix timestamp in whole seconds (the API's ``min_timestamp``) as milliseconds, or
    None when absent; ``end`` (a ``max_timestamp``: at or before that second): its last
    millisecond."""
    if value is None or value == "":
        return None
    expected = "a Unix timestamp in seconds (0 or more)"
    seconds = _integer(value, param, expected)
    if not 0 <= seconds <= 2**42:
        raise GeoValueError(param, f"must be {expected}, got {value!r}")
    return seconds * 1000 + (999 if end else 0)


def parse_count(value: Any, param: str = "count") -> int:
    """How many results to return: 1 to MAX_COUNT; None gives DEFAULT_COUNT."""
    if value is None or value == "":
        return DEFAULT_COUNT
    n = _integer(value, param, f"an integer from 1 to {MAX_COUNT}")
    if not 1 <= n <= MAX_COUNT:
        raise GeoValueError(param, f"must be an integer from 1 to {MAX_COUNT}, got {value!r}")
    return n


def parse_namespace(value: str) -> str:
    """A valid namespace name (see NAMESPACE), or GeoValueError."""
    if not isinstance(value, str) or not NAMESPACE.match(value):
        raise GeoValueError(
            "namespace", f"must be 1-32 of a-z, 0-9 and _, starting with a letter, got {value!r}"
        )
    return value


# --- values ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GeoPoint:
    """A medium's place, as the index holds it.

    ``hidden`` is true while the owner's account is private: the point is then found only by
    the owner and by viewers the search names as allowed (see ``IGeoIndex.search``).
    """

    media_id: int
    owner_id: int
    lat: float
    lng: float
    created_ms: int  # Unix milliseconds
    location_id: int | None = None
    hidden: bool = False

    def __post_init__(self) -> None:
        for name in ("media_id", "owner_id"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise GeoValueError(name, f"must be a positive integer, got {v!r}")
        if self.location_id is not None and (
            isinstance(self.location_id, bool) or not isinstance(self.location_id, int)
            or self.location_id <= 0
        ):
            raise GeoValueError("location_id", f"must be a positive integer or None, got "
                                f"{self.location_id!r}")
        if isinstance(self.created_ms, bool) or not isinstance(self.created_ms, int) \
                or self.created_ms < 0:
            raise GeoValueError("created_ms", f"must be Unix milliseconds, got {self.created_ms!r}")
        parse_latitude(self.lat)
        parse_longitude(self.lng)


@dataclass(frozen=True, slots=True)
class GeoQuery:
    """A radius search: points within ``radius_m`` of (lat, lng), created between ``min_ms``
    and ``max_ms`` (inclusive, Unix milliseconds; None: unbounded), newest first
    (``order="time"``; ties by media id, highest first) or nearest first (``"distance"``;
    ties by media id, lowest first), at most ``limit`` of them."""

    lat: float
    lng: float
    radius_m: float = DEFAULT_DISTANCE_M
    min_ms: int | None = None
    max_ms: int | None = None
    limit: int = DEFAULT_COUNT
    order: Order = "time"

    def __post_init__(self) -> None:
        parse_latitude(self.lat)
        parse_longitude(self.lng)
        parse_distance(self.radius_m, "radius_m")
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) \
                or not 1 <= self.limit <= MAX_LIMIT:
            raise GeoValueError("limit", f"must be an integer from 1 to {MAX_LIMIT}, got "
                                f"{self.limit!r}")
        if self.order not in ORDERS:
            raise GeoValueError("order", f"must be 'time' or 'distance', got {self.order!r}")
        if self.min_ms is not None and self.max_ms is not None and self.min_ms > self.max_ms:
            raise GeoValueError("min_timestamp", "must not be after max_timestamp")


@dataclass(frozen=True, slots=True)
class GeoHit:
    """One search result: the medium, its distance from the search point, its creation time."""

    media_id: int
    distance_m: float
    created_ms: int


def search_query(
    lat: Any,
    lng: Any,
    distance_m: Any = None,
    min_timestamp: Any = None,
    max_timestamp: Any = None,
    count: Any = None,
    order: Order = "time",
) -> GeoQuery:
    """A GeoQuery from the API's raw parameters (strings or numbers, as a request carries
    them): ``distance`` in meters (default 1,000, at most 5,000), timestamps in Unix seconds,
    ``count`` 1 to 100 (default 20). Raises GeoValueError naming the first bad parameter."""
    return GeoQuery(
        lat=parse_latitude(lat),
        lng=parse_longitude(lng),
        radius_m=parse_distance(distance_m),
        min_ms=parse_timestamp_ms(min_timestamp, "min_timestamp"),
        max_ms=parse_timestamp_ms(max_timestamp, "max_timestamp", end=True),
        limit=parse_count(count),
        order=order,
    )


# --- geometry --------------------------------------------------------------------------------


def haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """The great-circle distance in meters between two points given in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def boundary_tolerance_m(radius_m: float) -> float:
    """How far inside or outside a circle of ``radius_m`` a point may be found or missed."""
    return radius_m * BOUNDARY_TOLERANCE_PPM * 1e-6 + BOUNDARY_TOLERANCE_M


@dataclass(frozen=True, slots=True)
class Box:
    """A latitude/longitude rectangle, ``min_lng <= max_lng`` (never crossing 180)."""

    min_lat: float
    max_lat: float
    min_lng: float
    max_lng: float

    def contains(self, lat: float, lng: float) -> bool:
        return self.min_lat <= lat <= self.max_lat and self.min_lng <= lng <= self.max_lng


#: Padding of every box, in degrees (about 0.1 mm), so rounding never drops a point on the edge.
_PAD_DEG = 1e-9


def bounding_boxes(lat: float, lng: float, radius_m: float) -> tuple[Box, ...]:
    """Boxes that together contain every point within ``radius_m`` of (lat, lng).

    One box normally; two when the circle crosses the antimeridian (split at +/-180); one
    box spanning every longitude when the circle reaches a pole. The longitude half-width is
    the exact tangent for a sphere, asin(sin(r) / cos(lat)), not r / cos(lat), which is too
    narrow away from the equator.
    """
    ang = radius_m / EARTH_RADIUS_M  # angular radius, radians
    dlat = math.degrees(ang) + _PAD_DEG
    min_lat, max_lat = lat - dlat, lat + dlat
    if max_lat >= 90.0 or min_lat <= -90.0 or ang >= math.pi / 2:
        return (Box(max(min_lat, -90.0), min(max_lat, 90.0), -180.0, 180.0),)
    ratio = math.sin(ang) / math.cos(math.radians(lat))
    if ratio >= 1.0:
        return (Box(min_lat, max_lat, -180.0, 180.0),)
    dlng = math.degrees(math.asin(ratio)) + _PAD_DEG
    west, east = lng - dlng, lng + dlng
    if west < -180.0:
        return (Box(min_lat, max_lat, west + 360.0, 180.0), Box(min_lat, max_lat, -180.0, east))
    if east > 180.0:
        return (Box(min_lat, max_lat, west, 180.0), Box(min_lat, max_lat, -180.0, east - 360.0))
    return (Box(min_lat, max_lat, west, east),)


def within(boxes: tuple[Box, ...], lat: float, lng: float) -> bool:
    """Whether (lat, lng) is in any of ``boxes`` (a cheap test before ``haversine_m``)."""
    return any(b.contains(lat, lng) for b in boxes)


def in_radius(center_lat: float, center_lng: float, radius_m: float, lat: float, lng: float
              ) -> bool:
    """Whether (lat, lng) lies within ``radius_m`` meters of the centre, on the index's
    sphere: the same answer a radius search gives (up to ``boundary_tolerance_m``). For
    real-time matching of new media against subscribed areas (``geo:`` channels, geography
    subscriptions), without the index."""
    return within(bounding_boxes(center_lat, center_lng, radius_m), lat, lng) and \
        haversine_m(center_lat, center_lng, lat, lng) <= radius_m
