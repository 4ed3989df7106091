"""Where media were posted, in PostgreSQL: the media rows' places (read by the ``geo_index``
consumer, which makes the geo index agree with them), a location's media across every shard,
and the ``locations`` table (``0020_locations.sql``), the projection of named places.

The locations table lives in the geo database (``geo.postgis_dsn``); ``LocationStore`` takes
its table name, so the replay CLI can build a copy and swap it in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from psycopg2 import sql

from server.config import Config
from server.db import Database, Txn
from server.domain.locations import Location
from server.domain.media import State
from server.domain.shards import schema_name
from server.interfaces import IShardRouter
from server.store.accounts import like_prefix
from server.store.media import by_database

_MAX_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Placed:
    """What the geo index needs of a medium."""

    id: int
    owner: int
    state: State
    lat: float | None
    lng: float | None
    location_id: int | None
    created_ms: int


def placed(router: IShardRouter, ids: Iterable[int]) -> dict[int, Placed]:
    """The places of media (missing ids are absent): one query per physical database."""
    out: dict[int, Placed] = {}
    for db, shards in by_database(router, ids).items():
        query = " UNION ALL ".join(
            f"SELECT id, owner_id, state, lat, lng, location_id, created_ms "
            f"FROM {schema_name(s)}.media WHERE id = ANY(%s)" for s in shards)
        for row in db.run_interaction("placed_media", Txn.fetchall, query,
                                      list(shards.values())):
            out[row[0]] = Placed(row[0], row[1], State(row[2]), *row[3:])
    return out


def location_media(router: IShardRouter, location_id: int, max_id: int | None,
                   min_id: int | None, min_ms: int | None, max_ms: int | None, limit: int
                   ) -> list[int]:
    """Ids of the ready media naming ``location_id``, newest first, within the bounds (ids
    exclusive, times in Unix ms inclusive): one query per physical database over its shards
    (the ``media_location`` index). Visibility is the caller's to check."""
    found: list[int] = []
    for db in router.databases():
        parts = [
            f"(SELECT id FROM {schema_name(s)}.media WHERE location_id = %s AND state = 'ready' "
            "AND id < %s AND id > %s AND created_ms BETWEEN %s AND %s ORDER BY id DESC LIMIT %s)"
            for s in router.shards_of(db)
        ]
        bounds = (location_id, max_id or _MAX_ID, min_id or 0, min_ms or 0,
                  max_ms if max_ms is not None else 2**62, limit)
        query = f"SELECT id FROM ({' UNION ALL '.join(parts)}) t ORDER BY 1 DESC LIMIT %s"
        rows = db.run_interaction("location_media", Txn.fetchall, query,
                                  [*bounds * len(parts), limit])
        found += [int(r[0]) for r in rows]
    return sorted(found, reverse=True)[:limit]


def geo_database(config: Config, router: IShardRouter) -> Database:
    """The database of the locations table: ``geo.postgis_dsn`` (always one of the map's)."""
    for db in router.databases():
        if db.dsn == config.geo.postgis_dsn:
            return db
    raise ValueError("geo.postgis_dsn is not a database of the shard map")


_POINT = "ST_SetSRID(ST_MakePoint(%(lng)s, %(lat)s), 4326)::geography"
_COLUMNS = "SELECT id, name, lat, lng, first_media_id FROM {t} "


class LocationStore:
    """The locations projection in table ``table`` of ``db``."""

    def __init__(self, db: Database, table: str = "locations") -> None:
        self.db = db
        self.table = table
        self._t = sql.Identifier(table)

    def record(self, locations: Iterable[Location]) -> None:
        """Record places; a place already known keeps the name and coordinates of the
        smallest media id that named it (so the order of calls does not matter)."""
        rows: dict[int, Location] = {}
        for loc in locations:
            if loc.id not in rows or loc.first_media_id < rows[loc.id].first_media_id:
                rows[loc.id] = loc
        if rows:
            self.db.run_interaction("record_locations", self._record_txn, list(rows.values()))

    def _record_txn(self, txn: Txn, rows: list[Location]) -> None:
        txn.execute(sql.SQL(
            "INSERT INTO {t} AS l (id, name, lat, lng, geog, first_media_id) "
            "SELECT id, name, lat, lng, ST_SetSRID(ST_MakePoint(lng, lat), 4326)::geography, "
            "m FROM unnest(%s::bigint[], %s::text[], %s::float8[], %s::float8[], %s::bigint[]) "
            "AS r(id, name, lat, lng, m) ORDER BY id "
            "ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, lat = EXCLUDED.lat, "
            "lng = EXCLUDED.lng, geog = EXCLUDED.geog, first_media_id = EXCLUDED.first_media_id "
            "WHERE EXCLUDED.first_media_id < l.first_media_id").format(t=self._t),
            ([r.id for r in rows], [r.name for r in rows], [r.lat for r in rows],
             [r.lng for r in rows], [r.first_media_id for r in rows]))

    def _fetch(self, name: str, where: str, params: dict[str, Any]) -> list[Location]:
        query = sql.SQL(_COLUMNS + where).format(t=self._t)
        rows = self.db.run_interaction(name, Txn.fetchall, query, params)
        return [Location(*row) for row in rows]

    def get(self, location_id: int) -> Location | None:
        found = self._fetch("location", "WHERE id = %(id)s", {"id": location_id})
        return found[0] if found else None

    def near(self, lat: float, lng: float, radius_m: float, limit: int,
             prefix: str | None = None) -> list[Location]:
        """Places within ``radius_m`` of (lat, lng), nearest first (ties: lower id), whose
        name starts with ``prefix`` (case-insensitive) if given."""
        where = ("WHERE ST_DWithin(geog, " + _POINT + ", %(radius)s, false) "
                 "AND lower(name) LIKE %(like)s "
                 "ORDER BY ST_Distance(geog, " + _POINT + ", false), id LIMIT %(limit)s")
        return self._fetch("locations_near", where, {
            "lat": lat, "lng": 180.0 if lng == -180.0 else lng, "radius": radius_m,
            "like": like_prefix((prefix or "").lower()), "limit": limit})

    def named(self, prefix: str, limit: int) -> list[Location]:
        """Places whose name starts with ``prefix`` (case-insensitive), by name then id."""
        return self._fetch("locations_named", "WHERE lower(name) LIKE %(like)s "
                           "ORDER BY lower(name), id LIMIT %(limit)s",
                           {"like": like_prefix(prefix.lower()), "limit": limit})
