"""The SQL of the PostGIS geo index (``plugins/geo/postgis.py``; tables from ``0010_geo.sql``).

Each function takes the transaction first and a table: ``geo_live`` (the view over the live
namespace, resolved by PostgreSQL inside each statement) or a namespace's own table. Points
are ``geography(Point, 4326)``; every distance is on the sphere (``use_spheroid => false``),
as Solr's and ``server.domain.geo.haversine_m`` are. Searches are sent with their values
inlined by psycopg2 rather than as prepared statements, so each is planned for its own radius
and point (the KNN ``<->`` operator needs a constant point to use the index at all); which
index serves a newest-first search is decided per search, from a probe (``_GIST_NEWEST``).
"""

from __future__ import annotations

import io
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import psycopg2.errors
import psycopg2.extras
from psycopg2 import sql

from server.db import Txn
from server.domain.geo import GeoHit, GeoPoint, GeoQuery, NamespaceError

LIVE = sql.Identifier("geo_live")
_MAX_MS = 2**63 - 1


def table(namespace: str | None) -> sql.Identifier:
    """The relation holding ``namespace`` (already validated), or the live view for None."""
    return LIVE if namespace is None else sql.Identifier(f"geo_points_{namespace}")


_POINT = "ST_SetSRID(ST_MakePoint({lng}, {lat}), 4326)::geography"


def _lng(lng: float) -> float:
    """The antimeridian always as +180. PostGIS's KNN fails ("index returned tuples in wrong
    order") when a point stored at -180 meets a search at +180 (or at 179.9999999), or one
    stored at +180 meets a search at -180: its index bound and its exact distance disagree
    about two spellings of one meridian. One spelling avoids it."""
    return 180.0 if lng == -180.0 else lng


_UPSERT = sql.SQL(
    "INSERT INTO {t} AS g (media_id, owner_id, location_id, created_ms, hidden, geog) "
    "VALUES %s "
    "ON CONFLICT (media_id) DO UPDATE SET owner_id = EXCLUDED.owner_id, "
    "location_id = EXCLUDED.location_id, created_ms = EXCLUDED.created_ms, "
    "hidden = EXCLUDED.hidden, geog = EXCLUDED.geog "
    # A repeat of the same point writes no new row version.
    "WHERE (g.owner_id, g.location_id, g.created_ms, g.hidden, g.geog::text) IS DISTINCT FROM "
    "(EXCLUDED.owner_id, EXCLUDED.location_id, EXCLUDED.created_ms, EXCLUDED.hidden, "
    "EXCLUDED.geog::text)"
)
_UPSERT_ROW = "(%s, %s, %s, %s, %s, " + _POINT.format(lng="%s", lat="%s") + ")"


def _dedupe(points: Iterable[GeoPoint]) -> list[GeoPoint]:
    """One point per media id, the last one given (one statement may not touch a row twice)."""
    return list({p.media_id: p for p in points}.values())


def upsert_txn(txn: Txn, t: sql.Identifier, points: Iterable[GeoPoint]) -> None:
    rows = [
        (p.media_id, p.owner_id, p.location_id, p.created_ms, p.hidden, _lng(p.lng), p.lat)
        for p in _dedupe(points)
    ]
    if rows:
        psycopg2.extras.execute_values(
            txn.cursor, _UPSERT.format(t=t), rows, template=_UPSERT_ROW, page_size=1000
        )


_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS geo_stage (seq bigint, media_id bigint, owner_id bigint,"
    " location_id bigint, created_ms bigint, hidden boolean, lat float8, lng float8)"
    " ON COMMIT DELETE ROWS"
)
_COPY_STAGE = (
    "COPY geo_stage (seq, media_id, owner_id, location_id, created_ms, hidden, lat, lng)"
    " FROM STDIN"
)
_FROM_STAGE = sql.SQL(
    "INSERT INTO {t} AS g (media_id, owner_id, location_id, created_ms, hidden, geog) "
    "SELECT DISTINCT ON (media_id) media_id, owner_id, location_id, created_ms, hidden, "
    + _POINT.format(lng="lng", lat="lat")
    + " FROM geo_stage ORDER BY media_id, seq DESC "
    "ON CONFLICT (media_id) DO UPDATE SET owner_id = EXCLUDED.owner_id, "
    "location_id = EXCLUDED.location_id, created_ms = EXCLUDED.created_ms, "
    "hidden = EXCLUDED.hidden, geog = EXCLUDED.geog"
)


def copy_txn(txn: Txn, t: sql.Identifier, points: Sequence[GeoPoint]) -> None:
    """Upsert ``points`` through COPY into a staging table: the bulk path (replay, bench)."""
    buf = io.StringIO()
    for seq, p in enumerate(points):
        loc = "\\N" if p.location_id is None else p.location_id
        buf.write(
            f"{seq}\t{p.media_id}\t{p.owner_id}\t{loc}\t{p.created_ms}\t"
            f"{'t' if p.hidden else 'f'}\t{p.lat!r}\t{_lng(p.lng)!r}\n"
        )
    buf.seek(0)
    txn.execute(_STAGE)
    txn.cursor.copy_expert(_COPY_STAGE, buf)
    txn.execute(_FROM_STAGE.format(t=t))


def analyze_txn(txn: Txn, namespace: str | None) -> None:
    """Refresh the planner's statistics of a namespace's table (after a bulk load: the
    planner's choices depend on them)."""
    txn.execute(sql.SQL("ANALYZE {t}").format(t=table(namespace or live_txn(txn))))


def remove_txn(txn: Txn, t: sql.Identifier, media_ids: Collection[int]) -> None:
    if media_ids:
        txn.execute(
            sql.SQL("DELETE FROM {t} WHERE media_id = ANY(%s::bigint[])").format(t=t),
            (list(media_ids),),
        )


def set_owner_hidden_txn(txn: Txn, t: sql.Identifier, owner_id: int, hidden: bool) -> None:
    txn.execute(
        sql.SQL("UPDATE {t} SET hidden = %s WHERE owner_id = %s AND hidden <> %s").format(t=t),
        (hidden, owner_id, hidden),
    )


_Q = _POINT.format(lng="%(lng)s", lat="%(lat)s")
_COLUMNS = "SELECT media_id, ST_Distance(geog, " + _Q + ", false), created_ms "
_WHERE = (
    "WHERE ST_DWithin(geog, " + _Q + ", RADIUS, false) "
    "AND created_ms BETWEEN %(min_ms)s AND %(max_ms)s "
    "AND (NOT hidden OR owner_id = ANY(%(owners)s::bigint[])) "
)
_IN_RADIUS = _WHERE.replace("RADIUS", "%(radius)s")
_NEWEST = "ORDER BY created_ms DESC, media_id DESC LIMIT %(limit)s"
# Nearest first, in two steps, because a KNN index scan can only order by the distance alone
# (PostgreSQL matches ORDER BY to an index's ordering operator only as a whole): find the
# distance of the limit-th nearest hit by KNN, then sort the few hits within that distance
# (plus 1 mm, so rounding never drops the last) by distance and media id.
_NTH = (
    "LEAST(%(radius)s, (SELECT max(d) + 0.001 FROM (SELECT geog <-> " + _Q + " AS d FROM {t} "
    + _IN_RADIUS + "ORDER BY geog <-> " + _Q + " LIMIT %(limit)s) AS nearest))"
)
_NEAREST = sql.SQL(
    _COLUMNS + "FROM {t} " + _WHERE.replace("RADIUS", _NTH)
    + "ORDER BY geog <-> " + _Q + ", media_id LIMIT %(limit)s"
)
# Newest first, two ways. The GiST index finds every hit in the circle and they are sorted
# by time: cheap where the circle holds few points, a cost in proportion to the hits in a
# city. There, walking the time index down from the newest point, keeping those inside the
# circle, reaches the limit much sooner. The planner cannot choose (PostGIS estimates that
# ST_DWithin matches next to nothing), so the search does, from a probe: how far away the
# PROBE_K-th nearest point is (a KNN step, about as cheap as one small search) and how many
# rows the table has (the planner's statistics).
_GIST_NEWEST = sql.SQL(_COLUMNS + "FROM {t} " + _IN_RADIUS + _NEWEST)
_WALK_NEWEST = sql.SQL(
    _COLUMNS + "FROM (SELECT * FROM {t} WHERE created_ms BETWEEN %(min_ms)s AND %(max_ms)s "
    "ORDER BY created_ms DESC, media_id DESC LIMIT %(window)s) AS recent "
    + _IN_RADIUS + _NEWEST
)
_PROBE = sql.SQL(
    "SELECT (SELECT geog <-> " + _Q + " FROM {t} ORDER BY geog <-> " + _Q
    + " OFFSET %(k)s LIMIT 1), (SELECT reltuples FROM pg_class WHERE oid = to_regclass("
    "COALESCE(%(relname)s, 'geo_points_' || (SELECT name FROM geo_namespaces WHERE live))))"
)
PROBE_K = 64


def newest_first_window(limit: int, rows: float, kth_m: float | None, radius_m: float
                        ) -> int | None:
    """How many of the newest points to walk to find ``limit`` hits, or None when taking all
    hits from the GiST index and sorting them is cheaper.

    ``kth_m`` is the distance of the PROBE_K-th nearest point (None: there are fewer), and
    ``rows`` the table's size. PROBE_K points within ``kth_m`` make the circle hold about
    PROBE_K * (radius / kth_m)^2 points; a walk reads about ``limit`` * rows / hits points
    before it has ``limit`` hits. Walk when that is fewer than the hits, reading four times
    the expectation (the caller falls back to the GiST index if even that is not enough).
    """
    if kth_m is None or rows <= 0 or kth_m >= radius_m:
        return None
    hits = min(rows, PROBE_K * (radius_m / max(kth_m, 0.01)) ** 2)
    walk = limit * rows / hits
    if walk >= hits:
        return None
    return int(4 * walk) + limit


def search_params(q: GeoQuery, owners: list[int]) -> dict[str, object]:
    """The parameters of every search statement for ``q``."""
    return {
        "lat": q.lat, "lng": _lng(q.lng), "radius": q.radius_m,
        "min_ms": 0 if q.min_ms is None else q.min_ms,
        "max_ms": _MAX_MS if q.max_ms is None else q.max_ms,
        "owners": owners, "limit": q.limit,
    }


def search_sql(t: sql.Identifier, q: GeoQuery, window: int | None = None) -> sql.Composed:
    """The statement of ``q``: nearest first, newest first from the GiST index, or (with a
    ``window``) newest first by walking that many of the newest points. Separate so tests can
    EXPLAIN exactly what searches run."""
    if q.order == "distance":
        return _NEAREST.format(t=t)
    return (_GIST_NEWEST if window is None else _WALK_NEWEST).format(t=t)


def search_settings_txn(txn: Txn, q: GeoQuery, timeout_ms: int) -> None:
    """Settings for the rest of this transaction's search.

    - ``statement_timeout``: a search never runs longer than ``geo.timeout_ms``.
    - ``jit = off``: PostGIS declares its functions costly, so search plans cross the JIT
      threshold; compiling costs 10-15 ms, more than the search itself.
    - ``enable_sort = off`` for nearest-first: with ST_DWithin's estimate of next to no
      rows, the planner may collect every hit and sort them; discouraged from sorting, it
      walks the GiST index in distance order (KNN) and stops at the limit. (Sorting the few
      hits of the second step remains.)
    """
    txn.execute("SELECT set_config('statement_timeout', %s, true), set_config('jit', 'off', "
                "true), set_config('enable_sort', %s, true)",
                (str(timeout_ms), "off" if q.order == "distance" else "on"))


def search_txn(
    txn: Txn, namespace: str | None, q: GeoQuery, owners: list[int], timeout_ms: int
) -> list[GeoHit]:
    """The hits of ``q`` in ``namespace`` (None: the live one) for a viewer who may see the
    hidden points of ``owners``."""
    search_settings_txn(txn, q, timeout_ms)
    t = table(namespace)
    params = search_params(q, owners)
    rows: list[tuple[Any, ...]] = []
    if q.order == "time":
        probe = txn.fetchone(_PROBE.format(t=t), params | {
            "k": PROBE_K - 1, "relname": None if namespace is None else f"geo_points_{namespace}"})
        assert probe is not None
        window = newest_first_window(q.limit, float(probe[1] or 0), probe[0], q.radius_m)
        if window is not None:
            rows = txn.fetchall(search_sql(t, q, window), params | {"window": window})
    if len(rows) < q.limit:  # nearest first, a sparse circle, or a walk that fell short
        rows = txn.fetchall(search_sql(t, q), params)
    return [GeoHit(media_id, float(dist), created_ms) for media_id, dist, created_ms in rows]


def count_txn(txn: Txn, t: sql.Identifier) -> int:
    row = txn.fetchone(sql.SQL("SELECT count(*) FROM {t}").format(t=t))
    assert row is not None
    return int(row[0])


# --- namespaces ------------------------------------------------------------------------------


def live_txn(txn: Txn) -> str:
    row = txn.fetchone("SELECT name FROM geo_namespaces WHERE live")
    if row is None:
        raise NamespaceError("the geo index has no live namespace: run shutterlog migrate")
    return str(row[0])


def namespaces_txn(txn: Txn) -> list[str]:
    return [str(r[0]) for r in txn.fetchall("SELECT name FROM geo_namespaces ORDER BY name")]


def exists_txn(txn: Txn, namespace: str) -> bool:
    return txn.fetchone("SELECT 1 FROM geo_namespaces WHERE name = %s", (namespace,)) is not None


def create_txn(txn: Txn, namespace: str) -> None:
    try:
        txn.execute("SELECT geo_create_namespace(%s)", (namespace,))
    except psycopg2.errors.UniqueViolation:
        raise NamespaceError(f"geo namespace {namespace!r} already exists") from None


def swap_txn(txn: Txn, namespace: str) -> str:
    try:
        row = txn.fetchone("SELECT geo_swap(%s)", (namespace,))
    except psycopg2.errors.UndefinedObject:
        raise NamespaceError(f"no geo namespace {namespace!r}") from None
    assert row is not None
    return str(row[0])


def drop_txn(txn: Txn, namespace: str) -> None:
    try:
        txn.execute("SELECT geo_drop_namespace(%s)", (namespace,))
    except psycopg2.errors.UndefinedObject:
        raise NamespaceError(f"no geo namespace {namespace!r}") from None
    except psycopg2.errors.ObjectInUse:
        raise NamespaceError(f"geo namespace {namespace!r} is live: swap another in first") \
            from None
