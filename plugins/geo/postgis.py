"""The geo index in PostGIS: one table of ``geography(Point, 4326)`` per namespace, with a
GiST index for the radius filter and nearest-first order, and a time index for newest-first
order (see ``server/store/sql/global/0010_geo.sql``; the SQL is in ``server/store/geo.py``).

Everything runs through ``server.db.Database``, plain psycopg2, so the same object works in
the service's threadpool and in gevent workers.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

from zope.interface import implementer

from plugins.geo import chunks
from server.config import Config
from server.db import Database
from server.domain.geo import GeoHit, GeoPoint, GeoQuery, NamespaceError, parse_namespace
from server.interfaces import IGeoIndex, IShardRouter
from server.store import geo as store

#: Points per transaction of ``bulk_load``.
BULK_CHUNK = 50_000


@implementer(IGeoIndex)
class PostgisGeoIndex:
    """``IGeoIndex`` over the database ``db``; ``namespace`` None reads and writes the live one
    through the ``geo_live`` view, which PostgreSQL resolves inside each statement."""

    def __init__(
        self, db: Database, *, namespace: str | None = None, timeout_ms: int = 5000,
        owns_db: bool = False,
    ) -> None:
        self.db = db
        self.namespace = None if namespace is None else parse_namespace(namespace)
        self.timeout_ms = timeout_ms
        self._table = store.table(self.namespace)
        self._owns_db = owns_db

    @classmethod
    def from_config(cls, config: Config, router: IShardRouter | None = None) -> PostgisGeoIndex:
        dsn = config.geo.postgis_dsn
        if router is not None:
            for db in router.databases():
                if db.dsn == dsn:
                    return cls(db, timeout_ms=config.geo.timeout_ms)
        db = Database(dsn, pool_size=config.postgres.pool_size, name="shutterlog-geo")
        return cls(db, timeout_ms=config.geo.timeout_ms, owns_db=True)

    def __repr__(self) -> str:
        return f"<PostgisGeoIndex {self.db.dsn_label} {self.namespace or '(live)'}>"

    # --- points ----------------------------------------------------------------------------

    def upsert(self, points: Iterable[GeoPoint]) -> None:
        self.db.run_interaction("geo_upsert", store.upsert_txn, self._table, list(points))

    def bulk_load(
        self, points: Iterable[GeoPoint], progress: Callable[[int], None] | None = None
    ) -> int:
        total = 0
        for chunk in chunks(points, BULK_CHUNK):
            self.db.run_interaction("geo_bulk_load", store.copy_txn, self._table, chunk)
            total += len(chunk)
            if progress is not None:
                progress(total)
        self.db.run_interaction("geo_analyze", store.analyze_txn, self.namespace)
        return total

    def remove(self, media_ids: Iterable[int]) -> None:
        self.db.run_interaction("geo_remove", store.remove_txn, self._table, list(media_ids))

    def set_owner_hidden(self, owner_id: int, hidden: bool) -> None:
        self.db.run_interaction(
            "geo_set_owner_hidden", store.set_owner_hidden_txn, self._table, owner_id, hidden
        )

    def search(
        self, query: GeoQuery, viewer_id: int | None = None, visible_owners: Collection[int] = ()
    ) -> list[GeoHit]:
        owners = sorted({*visible_owners, *([viewer_id] if viewer_id is not None else [])})
        return self.db.run_interaction(
            "geo_search", store.search_txn, self.namespace, query, owners, self.timeout_ms
        )

    def count(self) -> int:
        return self.db.run_interaction("geo_count", store.count_txn, self._table)

    def refresh(self) -> None:
        """Nothing to do: a committed write is visible to the next search."""

    # --- namespaces ------------------------------------------------------------------------

    def live(self) -> str:
        return self.db.run_interaction("geo_live", store.live_txn)

    def namespaces(self) -> list[str]:
        return self.db.run_interaction("geo_namespaces", store.namespaces_txn)

    def _bound(self, namespace: str) -> PostgisGeoIndex:
        return PostgisGeoIndex(self.db, namespace=namespace, timeout_ms=self.timeout_ms)

    def create(self, namespace: str) -> PostgisGeoIndex:
        name = parse_namespace(namespace)
        self.db.run_interaction("geo_create", store.create_txn, name)
        return self._bound(name)

    def open(self, namespace: str) -> PostgisGeoIndex:
        name = parse_namespace(namespace)
        if not self.db.run_interaction("geo_exists", store.exists_txn, name):
            raise NamespaceError(f"no geo namespace {name!r}")
        return self._bound(name)

    def swap(self, namespace: str) -> str:
        return self.db.run_interaction("geo_swap", store.swap_txn, parse_namespace(namespace))

    def drop(self, namespace: str) -> None:
        self.db.run_interaction("geo_drop", store.drop_txn, parse_namespace(namespace))

    def close(self) -> None:
        if self._owns_db:
            self.db.close()
