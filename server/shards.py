"""The shard router: one connection pool per physical database of the shard map."""

from __future__ import annotations

from zope.interface import implementer

from server.db import Database
from server.domain.ids import shard_of
from server.domain.shards import ShardMap
from server.interfaces import IShardRouter


@implementer(IShardRouter)
class ShardRouter:
    """Routes logical shards to pooled ``Database`` objects."""

    def __init__(self, shard_map: ShardMap, *, pool_size: int = 10, name: str = "shutterlog"):
        self.map = shard_map
        self.count = shard_map.count
        self._dbs = {dsn: Database(dsn, pool_size=pool_size, name=name) for dsn in shard_map.dsns()}
        self._by_shard = [self._dbs[shard_map.dsn_for(s)] for s in range(shard_map.count)]

    def database(self, shard: int) -> Database:
        if not 0 <= shard < self.count:
            raise ValueError(f"no such logical shard: {shard}")
        return self._by_shard[shard]

    def databases(self) -> list[Database]:
        return list(self._dbs.values())

    def shards_of(self, database: Database) -> list[int]:
        return self.map.shards_of(database.dsn)

    def close(self) -> None:
        for db in self._dbs.values():
            db.close()


def mapped_shard(router: IShardRouter, row_id: int) -> int | None:
    """The shard a row's id names (its ``next_id()`` made it), or None if it names none of
    the map's: such an id cannot exist."""
    try:
        shard = shard_of(row_id)
    except ValueError:
        return None
    return shard if shard < router.count else None


def database_of_id(router: IShardRouter, row_id: int) -> Database | None:
    """The database holding a row whose id came from a shard's ``next_id()``; None if the id
    names no shard of the map."""
    shard = mapped_shard(router, row_id)
    return router.database(shard) if shard is not None else None
