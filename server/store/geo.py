"""The SQL of the PostGIS geo index (``plugins/geo/postgis.py``; tables from ``0010_geo.sql``).

Each function takes the transaction first and a table: ``geo_live`` (the view over the live
namespace, resolved by PostgreSQL inside each statement) or a namespace's own table. Points
are ``geography(Point, 4326)``; every distance is on the sphere (``use_spheroid => false``),
as Solr's and ``server.domain.geo.haversine_m`` are. Searches are sent with their values
inlined by psycopg2 rather than as prepared statements, so each is planned for its own radius
and point: the planner chooses the GiST index or the time index by how dense the area is, and
the KNN ``<->`` operator needs a constant point to use the index at all.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Iterable, Sequence

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
        (p.media_id, p.owner_id, p.location_id, p.created_ms, p.hidden, p.lng, p.lat)
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
            f"{'t' if p.hidden else 'f'}\t{p.lat!r}\t{p.lng!r}\n"
        )
    buf.seek(0)
    txn.execute(_STAGE)
    txn.cursor.copy_expert(_COPY_STAGE, buf)
    txn.execute(_FROM_STAGE.format(t=t))


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
_SEARCH = (
    "SELECT media_id, ST_Distance(geog, " + _Q + ", false), created_ms FROM {t} "
    "WHERE ST_DWithin(geog, " + _Q + ", %(radius)s, false) "
    "AND created_ms BETWEEN %(min_ms)s AND %(max_ms)s "
    "AND (NOT hidden OR owner_id = ANY(%(owners)s::bigint[])) "
)
_SEARCH_BY = {
    "time": sql.SQL(_SEARCH + "ORDER BY created_ms DESC, media_id DESC LIMIT %(limit)s"),
    "distance": sql.SQL(_SEARCH + "ORDER BY geog <-> " + _Q + ", media_id LIMIT %(limit)s"),
}


def search_txn(
    txn: Txn, t: sql.Identifier, q: GeoQuery, owners: list[int], timeout_ms: int
) -> list[GeoHit]:
    """The hits of ``q`` for a viewer who may see the hidden points of ``owners``."""
    txn.execute("SELECT set_config('statement_timeout', %s, true)", (str(timeout_ms),))
    rows = txn.fetchall(
        _SEARCH_BY[q.order].format(t=t),
        {
            "lat": q.lat, "lng": q.lng, "radius": q.radius_m,
            "min_ms": 0 if q.min_ms is None else q.min_ms,
            "max_ms": _MAX_MS if q.max_ms is None else q.max_ms,
            "owners": owners, "limit": q.limit,
        },
    )
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
