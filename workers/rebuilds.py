"""What rebuilding each projection means: one ``Build`` per kind of namespace.

A build owns a namespace of one replay run: it creates it (or finds it again to resume),
applies events to it, swaps it live, drops it, and compares it with the live projection.
The engine (``workers/replay.py``) reads the log, keeps the run's checkpoints and takes the
live consumers' locks around ``swap`` and ``compare``.

- ``RedisBuild``: the consumer's handler with a ``WorkerContext`` whose ``key_prefix`` is
  ``replay:{run}:`` (feeds, activity, counters, tags), or whose ``realtime`` store writes
  histories under that prefix without publishing (realtime).
- ``LikedBuild``: the ``liked`` handler with ``ctx.tables`` naming shadow tables.
- ``FollowersBuild``: ``Follower*`` events re-projected into shadow ``followers`` tables
  (``server.domain.replay.fold_edges``, batch by batch), never the consumer (it appends events).
- ``GeoBuild``: the ``geo_index`` handler with ``ctx.geo`` bound to a new geo namespace and
  ``ctx.locations`` to a shadow table.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from collections.abc import Callable, Sequence

from server.db import Database, Txn
from server.domain import replay as dom
from server.domain.graph import FOLLOWER_EDGE_AFTER, FOLLOWER_TYPES
from server.domain.log import ORIGIN, Position, RecordedEvent
from server.domain.replay import Difference, Spec
from server.domain.shards import schema_name
from server.store import geo as geostore
from server.store import replay as store
from server.store.places import LocationStore, geo_database
from server.store.realtime import RealtimeStore
from workers.consumers import Consumer
from workers.context import WorkerContext

#: Fan-out sizes a replay never splits into chunk tasks: the tasks would run in the live
#: workers, with the live context.
_NO_CHUNKS = 2**62


class Build:
    """One run's namespace of one projection."""

    spec: Spec
    run: int
    types: frozenset[str]

    def __init__(self, spec: Spec, run: int, live: WorkerContext) -> None:
        self.spec = spec
        self.run = run
        self.live = live

    def exists(self) -> bool:
        """Whether the namespace is still there (a run can resume only then)."""
        raise NotImplementedError

    def create(self) -> None:
        raise NotImplementedError

    def apply(self, events: list[RecordedEvent]) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Last touches before the swap (the build is complete up to the live head)."""

    def swap(self, positions: dict[int, Position]) -> str:
        """Make the namespace live atomically and retire the old one; says what it did."""
        raise NotImplementedError

    def drop(self) -> None:
        raise NotImplementedError

    def compare(self, positions: dict[int, Position]) -> list[Difference]:
        """Every difference between the namespace (expected) and the live projection
        (found)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the build holds."""


def build_for(spec: Spec, run: int, live: WorkerContext, consumer: Consumer | None,
              shards: Sequence[int] | None = None) -> Build:
    """The build of ``spec`` for run ``run`` (``shards``: the logical shards a per-shard
    projection is limited to)."""
    if spec.kind == "redis":
        assert consumer is not None
        return RedisBuild(spec, run, live, consumer)
    if spec.kind == "liked":
        assert consumer is not None
        return LikedBuild(spec, run, live, consumer)
    if spec.kind == "followers":
        return FollowersBuild(spec, run, live, shards)
    assert consumer is not None
    return GeoBuild(spec, run, live, consumer)


def _replay_context(live: WorkerContext, prefix: str = "") -> WorkerContext:
    """A context like the live one writing under ``prefix``, never splitting fan-outs."""
    config = dataclasses.replace(
        live.config, feeds=dataclasses.replace(live.config.feeds, chunk_size=_NO_CHUNKS))
    return WorkerContext(config, live.router, live.store, live.redis, key_prefix=prefix)


class _Handled(Build):
    """A build that runs its consumer's handler with a context of its own (``ctx``)."""

    def __init__(self, spec: Spec, run: int, live: WorkerContext, consumer: Consumer,
                 prefix: str = "") -> None:
        super().__init__(spec, run, live)
        self.consumer = consumer
        self.types = consumer.types
        self.ctx = _replay_context(live, prefix)

    def apply(self, events: list[RecordedEvent]) -> None:
        self.consumer.handle(self.ctx, events)


class RedisBuild(_Handled):
    """A Redis projection under ``replay:{run}:``."""

    def __init__(self, spec: Spec, run: int, live: WorkerContext, consumer: Consumer) -> None:
        super().__init__(spec, run, live, consumer, dom.prefix(run))
        self.prefix = dom.prefix(run)
        self.ns = store.RedisNamespaces(live.redis)
        if spec.name == "realtime":
            r = live.config.realtime
            self.ctx.realtime = RealtimeStore(live.redis, r.history_size,
                                              r.history_ttl * 1000, prefix=self.prefix + "rt:",
                                              publish=False)
            self.since_ms = int(time.time() * 1000) - r.history_ttl * 1000

    def exists(self) -> bool:
        return self.ns.exists(dom.marker(self.run))

    def create(self) -> None:
        self.ns.mark(dom.marker(self.run))

    def apply(self, events: list[RecordedEvent]) -> None:
        if self.spec.name == "realtime":
            # Histories hold the last history_ttl seconds: older events would expire at once.
            events = [e for e in events if e.created_ms >= self.since_ms]
            if not events:
                return
        super().apply(events)

    def finish(self) -> None:
        if self.spec.complete:
            self.ns.mark_complete(self.prefix, self.spec.complete)
        if self.spec.name == "realtime":
            self._reset_old_cursors()

    def _reset_old_cursors(self) -> None:
        """Clients' cursors are ids of the old histories: mark each rebuilt history's first
        id as trimmed, so any older cursor resuming gets ``reset`` (refetch, then live)
        instead of messages it already had under other ids."""
        streams = [self.prefix + k for k in self.ns.built_keys(self.spec, self.prefix)
                   if not k.endswith(":meta")]
        firsts = self.ns.first_ids(streams)
        self.ns.set_fields({f"{k}:meta": ("low", first) for k, first in firsts.items()})

    def swap(self, positions: dict[int, Position]) -> str:
        swapped, retired = self.ns.swap(self.spec, self.prefix, dom.marker(self.run))
        self.ns.drop(self.prefix, dom.marker(self.run))
        return f"{swapped} keys swapped in, {retired} retired"

    def drop(self) -> None:
        self.ns.drop(self.prefix, dom.marker(self.run))

    def compare(self, positions: dict[int, Position]) -> list[Difference]:
        built = self.ns.built_keys(self.spec, self.prefix)
        expected = self.ns.snapshot(built, self.prefix)
        found = self.ns.snapshot(self.ns.live_keys(self.spec))
        if self.spec.name == "realtime":
            expected = {k: v for k, v in expected.items() if not k.endswith(":meta")}
            found = {k: v for k, v in found.items() if not k.endswith(":meta")}
        return dom.compare(expected, found, tail=self.spec.name == "realtime")


class _ShadowTables(Build):
    """A build into shadow copies of a table in every logical shard's schema."""

    table: str

    def _each(self) -> list[tuple[Database, list[int]]]:
        router = self.live.router
        return [(db, list(router.shards_of(db))) for db in router.databases()]

    def exists(self) -> bool:
        return all(db.run_interaction("shadow", store.shadow_exists_txn, schema_name(s),
                                      self.table, self.run)
                   for db, shards in self._each() for s in shards[:1])

    def create(self) -> None:
        self._each_schema(store.create_shadow_txn)

    def drop(self) -> None:
        self._each_schema(store.drop_shadow_txn)

    def _each_schema(self, fn: Callable[[Txn, str | None, str, int], None]) -> None:
        for db, shards in self._each():
            def txn_fn(txn: Txn, shards: list[int] = shards) -> None:
                for s in shards:
                    fn(txn, schema_name(s), self.table, self.run)

            db.run_interaction("shadow", txn_fn)

    def _rows(self, txn: Txn, shards: Sequence[int], table: str) -> list[tuple[object, ...]]:
        raise NotImplementedError

    def _compare_txn(self, txn: Txn, shards: Sequence[int]) -> list[Difference]:
        expected = self._rows(txn, shards, store.shadow_name(self.table, self.run))
        found = self._rows(txn, shards, self.table)
        return dom.compare_rows(self.table, expected, found)


class LikedBuild(_Handled, _ShadowTables):
    """The liker-side ``liked`` tables, by the ``liked`` handler into shadow tables."""

    table = "liked"

    def __init__(self, spec: Spec, run: int, live: WorkerContext, consumer: Consumer) -> None:
        super().__init__(spec, run, live, consumer)
        self.ctx.tables = {"liked": store.shadow_name("liked", run)}

    def swap(self, positions: dict[int, Position]) -> str:
        for db, shards in self._each():
            db.run_interaction("swap_liked", self._swap_txn, shards)
        return "liked tables replaced"

    def _swap_txn(self, txn: Txn, shards: Sequence[int]) -> None:
        for s in shards:
            store.lock_tables_txn(txn, schema_name(s), [self.table])
            store.replace_from_shadow_txn(txn, schema_name(s), self.table, self.run)

    def _rows(self, txn: Txn, shards: Sequence[int], table: str) -> list[tuple[object, ...]]:
        return [r for s in shards for r in store.table_rows_txn(
            txn, schema_name(s), table, ("user_id", "media_id"), "like_id")]

    def compare(self, positions: dict[int, Position]) -> list[Difference]:
        out: list[Difference] = []
        for db, shards in self._each():
            out += db.run_interaction("compare_liked", self._compare_txn, shards)
        return out


class FollowersBuild(_ShadowTables):
    """The followee-side edges: ``Follower*`` events re-projected into shadow tables.

    Nothing runs the ``followers`` consumer (it would append the mirrors again). The swap
    locks the live tables against the append transactions that project into them, brings
    the shadow up to every committed event (no snapshot-xmin guard needed: every writer of
    these tables is finished or waiting on the lock), replaces the rows and recounts
    ``followed_by_count``, all in one transaction per database.
    """

    table = "followers"
    types = frozenset(FOLLOWER_TYPES)

    def __init__(self, spec: Spec, run: int, live: WorkerContext,
                 shards: Sequence[int] | None = None) -> None:
        super().__init__(spec, run, live)
        self.only = set(shards) if shards is not None else None
        self.table_name = store.shadow_name(self.table, run)

    def _each(self) -> list[tuple[Database, list[int]]]:
        return [(db, [s for s in shards if self.only is None or s in self.only])
                for db, shards in super()._each()]

    def apply(self, events: list[RecordedEvent]) -> None:
        by_db: dict[Database, list[RecordedEvent]] = defaultdict(list)
        for e in events:
            by_db[self.live.router.database(e.shard)].append(e)
        for db, mine in by_db.items():
            db.run_interaction("replay_followers", self._apply_txn, mine)

    def _apply_txn(self, txn: Txn, events: list[RecordedEvent]) -> None:
        by_shard: dict[int, list[tuple[tuple[int, int], str, int, int]]] = defaultdict(list)
        for e in events:
            d = e.data
            edge = (d.followee, d.follower)  # type: ignore[attr-defined]
            by_shard[e.shard].append((edge, FOLLOWER_EDGE_AFTER[e.type].value, e.id,
                                      e.created_ms))
        for shard, changes in by_shard.items():
            store.project_edges_txn(txn, schema_name(shard), self.table_name, changes)

    def swap(self, positions: dict[int, Position]) -> str:
        for db, shards in self._each():
            if shards:
                db.run_interaction("swap_followers", self._swap_txn, shards, positions, True)
        return "followers tables replaced, followed_by_count recounted"

    def compare(self, positions: dict[int, Position]) -> list[Difference]:
        out: list[Difference] = []
        for db, shards in self._each():
            if shards:
                out += db.run_interaction("compare_followers", self._swap_txn, shards,
                                          positions, False)
        return out

    def _swap_txn(self, txn: Txn, shards: Sequence[int], positions: dict[int, Position],
                  replace: bool) -> list[Difference]:
        """Lock the live tables, catch the shadow up to every committed event, then replace
        the live rows (``replace``) or compare them with the shadow's."""
        for s in shards:
            store.lock_tables_txn(txn, schema_name(s), [self.table])
        for s in shards:
            rows = store.committed_after_txn(txn, s, positions.get(s, ORIGIN), self.types)
            self._apply_txn(txn, [self.live.store._decode(r) for r in rows])
        if not replace:
            return self._compare_txn(txn, shards)
        for s in shards:
            store.replace_from_shadow_txn(txn, schema_name(s), self.table, self.run)
            store.recount_followers_txn(txn, s)
        return []

    def _rows(self, txn: Txn, shards: Sequence[int], table: str) -> list[tuple[object, ...]]:
        return [r for s in shards for r in store.table_rows_txn(
            txn, schema_name(s), table, ("followee", "follower"), "state || ' ' || id")]

    def _compare_txn(self, txn: Txn, shards: Sequence[int]) -> list[Difference]:
        """The rows, then each user's ``followed_by_count`` (live state too: the swap
        recounts it) against the shadow's active rows."""
        expected = [r for s in shards
                    for r in store.followed_by_counts_txn(txn, s, self.table_name)]
        found = [r for s in shards for r in store.table_rows_txn(
            txn, schema_name(s), "users", ("id",), "followed_by_count")]
        return (super()._compare_txn(txn, shards)
                + dom.compare_rows("followed_by_count", expected, found))


class GeoBuild(_Handled):
    """The geo index in a new namespace, and the locations table in a shadow table."""

    table = "locations"

    def __init__(self, spec: Spec, run: int, live: WorkerContext, consumer: Consumer) -> None:
        super().__init__(spec, run, live, consumer)
        self.name = f"replay{run}"
        self.db = geo_database(live.config, live.router)
        self.ctx.locations = LocationStore(self.db, store.shadow_name(self.table, run))

    def exists(self) -> bool:
        return self.name in self.live.geo.namespaces() and self.db.run_interaction(
            "shadow", store.shadow_exists_txn, None, self.table, self.run)

    def create(self) -> None:
        self.live.geo.create(self.name)
        self.db.run_interaction("shadow", store.create_shadow_txn, None, self.table, self.run)

    def apply(self, events: list[RecordedEvent]) -> None:
        if "geo" not in self.ctx.__dict__:
            self.ctx.geo = self.live.geo.open(self.name)
        super().apply(events)

    def swap(self, positions: dict[int, Position]) -> str:
        def txn_fn(txn: Txn) -> None:
            store.lock_tables_txn(txn, None, [self.table])
            store.replace_from_shadow_txn(txn, None, self.table, self.run)

        self.db.run_interaction("swap_locations", txn_fn)
        old = self.live.geo.swap(self.name)
        self.live.geo.drop(old)
        return f"geo namespace {self.name} live ({old} dropped), locations replaced"

    def drop(self) -> None:
        if self.name in self.live.geo.namespaces():
            self.live.geo.drop(self.name)
        self.db.run_interaction("shadow", store.drop_shadow_txn, None, self.table, self.run)

    def compare(self, positions: dict[int, Position]) -> list[Difference]:
        cols = ("media_id",)
        value = ("owner_id || ' ' || coalesce(location_id::text, '-') || ' ' || created_ms "
                 "|| ' ' || hidden || ' ' || ST_AsText(geog::geometry)")
        out: list[Difference] = []
        if self.live.config.geo.backend == "postgis":
            live_ns = self.live.geo.live()
            expected, found = (self.db.run_interaction(
                "geo_rows", store.table_rows_txn, None, geostore.table(ns).strings[0], cols,
                value) for ns in (self.name, live_ns))
            out += dom.compare_rows("geo", expected, found)
        else:  # another backend: the points are compared by their number
            built, now = self.live.geo.open(self.name).count(), self.live.geo.count()
            if built != now:
                out.append(Difference("geo count", built, now))
        rows = [self.db.run_interaction(
            "locations", store.table_rows_txn, None, t, ("id",),
            "name || ' ' || lat || ' ' || lng || ' ' || first_media_id")
            for t in (store.shadow_name(self.table, self.run), self.table)]
        out += dom.compare_rows(self.table, rows[0], rows[1])
        return out

    def close(self) -> None:
        if "geo" in self.ctx.__dict__:
            self.ctx.geo.close()
