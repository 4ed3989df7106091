"""The geo index: build rate, and radius searches/s and latency next to a brute-force scan.

Points (default 1,000,000, seeded): 80% in twelve cities (a normal spread of 6 km around each
centre), 20% spread uniformly over the land latitudes (-55 to 70 degrees); creation times
uniform over two years; 5% hidden (private owners). Searches: 90% centred on a random city
point, 10% on a random background point, anonymous, 20 results, at 1 km and 5 km, newest
first and nearest first.

Measured, in the same run over the same points:

- build: ``bulk_load`` (COPY into a staging table, one upsert per 50,000 points, GiST and
  time indexes maintained as rows arrive, then ANALYZE);
- searches: one client, back to back, for ``--seconds`` per case; searches/s and p50/p99;
- brute force: numpy haversine over all the points (distance of every point, mask, top 20),
  on the same searches, in the same process: what the index saves;
- the first 100 searches of each case are checked against the brute force.

Run: ``python -m scripts.bench.geo [--points N] [--seconds S] [--solr-url URL]``. With
``--solr-url`` (a throwaway core made from ``etc/solr/shutterlog-geo``) Solr is measured too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from plugins.geo import open_index
from plugins.geo.solr import SolrGeoIndex, solr_client
from scripts.bench.common import arguments, bench_stack, machine, progress, rate, table
from server.domain.geo import EARTH_RADIUS_M, GeoHit, GeoPoint, GeoQuery, boundary_tolerance_m
from server.interfaces import IGeoIndex

CITIES = [  # (lat, lng): Tokyo, Delhi, Shanghai, São Paulo, Mexico City, Cairo, Mumbai,
    # New York, Lagos, Paris, Istanbul, Suva (on the antimeridian)
    (35.68, 139.69), (28.61, 77.21), (31.23, 121.47), (-23.55, -46.63), (19.43, -99.13),
    (30.04, 31.24), (19.08, 72.88), (40.71, -74.01), (6.52, 3.38), (48.86, 2.35),
    (41.01, 28.98), (-18.14, 178.44),
]
CITY_SHARE = 0.8
CITY_SPREAD_M = 6000.0
HIDDEN_SHARE = 0.05
TWO_YEARS_MS = 2 * 365 * 86_400_000
LIMIT = 20
CHECKED = 100


@dataclass
class Points:
    """The points as numpy columns (for the brute force) and as GeoPoints (for the index)."""

    lat: np.ndarray
    lng: np.ndarray
    created: np.ndarray
    hidden: np.ndarray

    @classmethod
    def generate(cls, n: int, rng: np.random.Generator) -> Points:
        in_city = int(n * CITY_SHARE)
        city = rng.integers(0, len(CITIES), in_city)
        centre = np.array(CITIES)[city]
        spread = np.degrees(CITY_SPREAD_M / EARTH_RADIUS_M)
        lat = centre[:, 0] + rng.normal(0, spread, in_city)
        lng = centre[:, 1] + rng.normal(0, spread, in_city) / np.cos(np.radians(centre[:, 0]))
        lng = (lng + 540) % 360 - 180
        sin_lo, sin_hi = math.sin(math.radians(-55)), math.sin(math.radians(70))
        bg_lat = np.degrees(np.arcsin(rng.uniform(sin_lo, sin_hi, n - in_city)))
        bg_lng = rng.uniform(-180, 180, n - in_city)
        return cls(
            lat=np.concatenate([lat, bg_lat]), lng=np.concatenate([lng, bg_lng]),
            created=rng.integers(1_700_000_000_000, 1_700_000_000_000 + TWO_YEARS_MS, n),
            hidden=rng.random(n) < HIDDEN_SHARE,
        )

    def __len__(self) -> int:
        return len(self.lat)

    def geo_points(self) -> Iterator[GeoPoint]:
        for i, (lat, lng, created, hidden) in enumerate(zip(
                self.lat.tolist(), self.lng.tolist(), self.created.tolist(),
                self.hidden.tolist(), strict=True)):
            yield GeoPoint(i + 1, 1 + i % 100_000, lat, lng, created, None, hidden)

    def brute_force(self, q: GeoQuery) -> list[GeoHit]:
        """The anonymous search ``q`` by scanning every point."""
        p1, p2 = math.radians(q.lat), np.radians(self.lat)
        dl = np.radians(self.lng - q.lng)
        a = np.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
        d = 2 * EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(a)))
        hit = np.flatnonzero((d <= q.radius_m) & ~self.hidden)
        if q.order == "time":
            order = np.lexsort((-hit, -self.created[hit]))[:q.limit]
        else:
            order = np.lexsort((hit, d[hit]))[:q.limit]
        return [GeoHit(int(i) + 1, float(d[i]), int(self.created[i])) for i in hit[order]]


def queries(points: Points, radius: float, order: str, rng: np.random.Generator, n: int
            ) -> list[GeoQuery]:
    in_city = int(len(points) * CITY_SHARE)
    picks = np.where(rng.random(n) < 0.9, rng.integers(0, in_city, n),
                     rng.integers(in_city, len(points), n))
    return [GeoQuery(float(points.lat[i]), float(points.lng[i]), radius, limit=LIMIT,
                     order=order)  # type: ignore[arg-type]
            for i in picks]


def same(a: list[GeoHit], b: list[GeoHit], radius: float) -> bool:
    """Equal up to the boundary tolerance (points on the edge of the circle)."""
    tol = boundary_tolerance_m(radius)
    return [h.media_id for h in a] == [h.media_id for h in b] and all(
        abs(x.distance_m - y.distance_m) <= tol for x, y in zip(a, b, strict=True))


def timed_run(search: Callable[[GeoQuery], list[GeoHit]], qs: list[GeoQuery], seconds: float
              ) -> tuple[float, float, float, float]:
    """(searches/s, p50 ms, p99 ms, mean hits) of ``search`` over ``qs`` for ``seconds``."""
    latencies: list[float] = []
    hits = 0
    stop = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < stop:
        q = qs[len(latencies) % len(qs)]
        t0 = time.perf_counter()
        hits += len(search(q))
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return (rate(len(latencies), elapsed), float(np.percentile(ms, 50)),
            float(np.percentile(ms, 99)), hits / len(latencies))


def build(index: IGeoIndex, points: Points) -> float:
    """Bulk-load ``points`` into ``index``; returns points/s."""
    n = len(points)
    step = max(n // 20, 1)
    marks = iter(range(step, n + step, step))
    mark = next(marks)

    def report(done: int) -> None:
        nonlocal mark
        if done >= mark or done == n:
            progress(f"loaded {done:,} of {n:,} points")
            while mark <= done:
                mark = next(marks, n + 1)

    start = time.perf_counter()
    index.bulk_load(points.geo_points(), report)
    return rate(n, time.perf_counter() - start)


def measure(name: str, index: IGeoIndex, points: Points, seconds: float,
            rng: np.random.Generator, rows: list[list[str]]) -> None:
    for radius in (1000.0, 5000.0):
        for order in ("time", "distance"):
            qs = queries(points, radius, order, rng, 2000)
            progress(f"{name}: checking {CHECKED} searches at {radius:.0f} m, {order} order, "
                     "against the brute force")
            bad = sum(not same(index.search(q), points.brute_force(q), radius)
                      for q in qs[:CHECKED])
            case = f"{radius / 1000:.0f} km, {'newest' if order == 'time' else 'nearest'} first"
            for label, search in ((name, index.search), ("numpy brute force",
                                                         points.brute_force)):
                progress(f"{label}: {case} for {seconds:.0f}s")
                per_s, p50, p99, mean = timed_run(search, qs, seconds)
                rows.append([case, label, f"{per_s:,.1f}", f"{p50:.2f}", f"{p99:.2f}",
                             f"{mean:.1f}", f"{CHECKED - bad}/{CHECKED}" if label == name
                             else "-"])


def main() -> None:
    p = arguments(__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=1_000_000,
                   help="points to index (default: %(default)s)")
    p.add_argument("--solr-url", default="",
                   help="also measure a real Solr core at this URL (it is emptied first)")
    args = p.parse_args()
    rng = np.random.default_rng(20240601)
    progress(f"generating {args.points:,} points")
    points = Points.generate(args.points, rng)
    rows: list[list[str]] = []
    builds: list[list[str]] = []
    with bench_stack(durable=args.durable) as bench:
        index = open_index(bench.config)
        progress("PostGIS: bulk load")
        builds.append(["PostGIS", f"{build(index, points):,.0f}"])
        measure("PostGIS", index, points, args.seconds, rng, rows)
        index.close()
    if args.solr_url:
        solr = SolrGeoIndex(solr_client(args.solr_url, 60_000), commit_within_ms=10_000)
        solr.solr.delete(q="*:*", commit=True)
        progress("Solr: bulk load")
        builds.append(["Solr", f"{build(solr, points):,.0f}"])
        measure("Solr", solr, points, args.seconds, rng, rows)
    table(f"geo index build, {args.points:,} points ({machine()})",
          ["backend", "points/s (bulk load, indexes and statistics included)"], builds)
    table(f"radius searches, {LIMIT} results, one client, {args.seconds:.0f}s per case "
          f"({machine()})",
          ["search", "by", "searches/s", "p50 ms", "p99 ms", "mean hits", "= brute force"],
          rows)


if __name__ == "__main__":
    main()
