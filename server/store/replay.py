"""What the replay CLI stores: runs and their checkpoints (migration 0060, in the shard
map's first database), shadow tables of PostgreSQL projections, and Redis namespaces.

A run's checkpoints are its own (``replay_checkpoints``); the live consumers' stay in
``checkpoints`` until the swap moves them (``set_live_checkpoints_txn``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from psycopg2 import sql

from server.db import Database, Txn
from server.domain.log import ORIGIN, Position
from server.domain.replay import Spec, fold_edges, is_projection_key, normalize
from server.domain.shards import schema_name
from server.store import log_sql

#: Replay runs of one projection exclude each other: a session advisory lock in the runs'
#: database (two ints, so it never meets the consumers' bigint keys), released by a crash.
_RUN_LOCK_CLASS = 7007


@dataclass(frozen=True)
class Run:
    """A row of ``replay_runs``."""

    id: int
    kind: str
    projection: str
    shards: tuple[int, ...] | None
    until_id: int | None
    status: str
    events: int


_RUN = "id, kind, projection, shards, until_id, status, events"


def _run(row: Sequence[Any]) -> Run:
    return Run(row[0], row[1], row[2], tuple(row[3]) if row[3] is not None else None, row[4],
               row[5], row[6])


def try_lock_projection_txn(txn: Txn, projection: str) -> bool:
    """Take the session lock of ``projection``'s replays (autocommit connection)."""
    row = txn.fetchone("SELECT pg_try_advisory_lock(%s, hashtext(%s))",
                       (_RUN_LOCK_CLASS, projection))
    return bool(row and row[0])


def unlock_all_txn(txn: Txn) -> None:
    """Release every session advisory lock of the connection."""
    txn.execute("SELECT pg_advisory_unlock_all()")


def open_run_txn(txn: Txn, kind: str, projection: str, shards: Sequence[int] | None,
                 until_id: int | None) -> Run | None:
    """The newest unfinished run of the same kind, projection, shards and bound."""
    row = txn.fetchone(
        f"SELECT {_RUN} FROM replay_runs WHERE status = 'building' AND kind = %s AND "
        "projection = %s AND shards IS NOT DISTINCT FROM %s::int[] AND until_id IS NOT "
        "DISTINCT FROM %s ORDER BY id DESC LIMIT 1",
        (kind, projection, list(shards) if shards is not None else None, until_id))
    return _run(row) if row else None


def other_open_runs_txn(txn: Txn, kind: str, projection: str) -> list[Run]:
    """Unfinished runs of that kind of ``projection`` (left by crashes): a run starting over
    drops them. Replays and verifications leave each other's alone."""
    rows = txn.fetchall(f"SELECT {_RUN} FROM replay_runs WHERE status = 'building' AND "
                        "kind = %s AND projection = %s", (kind, projection))
    return [_run(r) for r in rows]


def new_run_txn(txn: Txn, kind: str, projection: str, shards: Sequence[int] | None,
                until_id: int | None) -> Run:
    row = txn.fetchone(
        f"INSERT INTO replay_runs (kind, projection, shards, until_id) VALUES (%s, %s, %s, %s) "
        f"RETURNING {_RUN}",
        (kind, projection, list(shards) if shards is not None else None, until_id))
    assert row is not None
    return _run(row)


def finish_run_txn(txn: Txn, run: int, status: str) -> None:
    txn.execute("UPDATE replay_runs SET status = %s, updated_at = now() WHERE id = %s",
                (status, run))


def run_positions_txn(txn: Txn, run: int) -> dict[int, Position]:
    rows = txn.fetchall(
        "SELECT shard, txid::text, event_id FROM replay_checkpoints WHERE run = %s", (run,))
    return {shard: Position(int(t), e) for shard, t, e in rows}


def save_run_txn(txn: Txn, shard: int, positions: dict[int, Position],
                 events: dict[int, int]) -> None:
    """Save where runs stand in ``shard`` (``{run: position}``) and how many events each
    has applied (``{run: events}``), in one transaction."""
    for run, p in positions.items():
        txn.execute(
            "INSERT INTO replay_checkpoints (run, shard, txid, event_id) VALUES "
            "(%s, %s, %s::xid8, %s) ON CONFLICT (run, shard) DO UPDATE SET "
            "txid = excluded.txid, event_id = excluded.event_id",
            (run, shard, str(p.txid), p.id))
        txn.execute("UPDATE replay_runs SET events = %s, updated_at = now() WHERE id = %s",
                    (events[run], run))


# --- the live consumers (on the shard's database) -----------------------------------------------


def live_positions_txn(txn: Txn, consumer: str, shards: Collection[int]) -> dict[int, Position]:
    """The live checkpoints of ``consumer`` on ``shards`` (the origin where none exists)."""
    rows = txn.fetchall(
        "SELECT shard, txid::text, event_id FROM checkpoints WHERE consumer = %s "
        "AND shard = ANY(%s)", (consumer, list(shards)))
    found = {s: Position(int(t), e) for s, t, e in rows}
    return {s: found.get(s, ORIGIN) for s in shards}


def set_live_checkpoints_txn(txn: Txn, consumer: str, positions: dict[int, Position]) -> None:
    """Move ``consumer``'s live checkpoints to where the rebuild stands (creating them); a
    stopped pair stays stopped (its dead letter still needs an operator)."""
    for shard, p in positions.items():
        txn.execute(
            "INSERT INTO checkpoints (consumer, shard, txid, event_id) VALUES "
            "(%s, %s, %s::xid8, %s) ON CONFLICT (consumer, shard) DO UPDATE SET "
            "txid = excluded.txid, event_id = excluded.event_id, failures = 0, "
            "last_error = NULL, updated_at = now()",
            (consumer, shard, str(p.txid), p.id))


def count_after_txn(txn: Txn, shard: int, after: Position, types: Collection[str],
                    upto: Position | None = None) -> int:
    """Events of ``types`` after ``after`` (up to ``upto``, if given) in ``shard`` (the
    progress bar's total)."""
    query = ("SELECT count(*) FROM events WHERE shard = %s AND type = ANY(%s) "
             "AND (txid, id) > (%s::xid8, %s)")
    params: list[object] = [shard, list(types), str(after.txid), after.id]
    if upto is not None:
        query += " AND (txid, id) <= (%s::xid8, %s)"
        params += [str(upto.txid), upto.id]
    row = txn.fetchone(query, params)
    return int(row[0]) if row else 0


def committed_after_txn(txn: Txn, shard: int, after: Position, types: Collection[str]
                        ) -> list[tuple[Any, ...]]:
    """Every committed event of ``types`` after ``after``, in log order, as ``read_page``
    rows, WITHOUT the snapshot-xmin guard. Only for a caller holding a lock that every
    writer of what it projects must take (``followers``' swap locks the live tables): then
    no event it cares about can still commit behind it, and an unrelated open transaction
    must not hide the last events."""
    return txn.fetchall(
        log_sql.SELECT_ALL + " WHERE shard = %s AND type = ANY(%s) AND (txid, id) > "
        "(%s::xid8, %s) ORDER BY events.txid, events.id",
        (shard, list(types), str(after.txid), after.id))


# --- shadow tables -------------------------------------------------------------------------------


def shadow_name(table: str, run: int) -> str:
    return f"{table}_r{run}"


def _ident(schema: str | None, table: str) -> sql.Composable:
    return sql.Identifier(schema, table) if schema else sql.Identifier(table)


def create_shadow_txn(txn: Txn, schema: str | None, table: str, run: int) -> None:
    """An empty copy of ``table`` (columns, defaults, indexes) for run ``run``."""
    txn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {s} (LIKE {t} INCLUDING ALL)").format(
        s=_ident(schema, shadow_name(table, run)), t=_ident(schema, table)))


def shadow_exists_txn(txn: Txn, schema: str | None, table: str, run: int) -> bool:
    name = f"{schema}.{shadow_name(table, run)}" if schema else shadow_name(table, run)
    row = txn.fetchone("SELECT to_regclass(%s) IS NOT NULL", (name,))
    return bool(row and row[0])


def drop_shadow_txn(txn: Txn, schema: str | None, table: str, run: int) -> None:
    txn.execute(sql.SQL("DROP TABLE IF EXISTS {s}").format(
        s=_ident(schema, shadow_name(table, run))))


def project_edges_txn(txn: Txn, schema: str, table: str,
                      changes: list[tuple[tuple[int, int], str, int, int]]) -> None:
    """Apply followers-side edge changes ((followee, follower), state, event id, ms), in log
    order, to ``schema.table``: the rows touched are read once, folded
    (``server.domain.replay.fold_edges``) and written back in two statements."""
    t = _ident(schema, table)
    edges = sorted({c[0] for c in changes})
    rows = txn.fetchall(sql.SQL(
        "SELECT followee, follower, state, id, created_ms FROM {t} WHERE (followee, follower) "
        "IN (SELECT * FROM unnest(%s::bigint[], %s::bigint[]))").format(t=t),
        ([e[0] for e in edges], [e[1] for e in edges]))
    final = fold_edges({(r[0], r[1]): (r[2], r[3], r[4]) for r in rows}, changes)
    gone = sorted(e for e, row in final.items() if row is None)
    kept = sorted((e, row) for e, row in final.items() if row is not None)
    if gone:
        txn.execute(sql.SQL(
            "DELETE FROM {t} WHERE (followee, follower) IN (SELECT * FROM "
            "unnest(%s::bigint[], %s::bigint[]))").format(t=t),
            ([e[0] for e in gone], [e[1] for e in gone]))
    if kept:
        txn.execute(sql.SQL(
            "INSERT INTO {t} (followee, follower, state, id, created_ms) SELECT * FROM "
            "unnest(%s::bigint[], %s::bigint[], %s::text[], %s::bigint[], %s::bigint[]) "
            "ON CONFLICT (followee, follower) DO UPDATE SET state = excluded.state, "
            "id = excluded.id, created_ms = excluded.created_ms").format(t=t),
            ([e[0] for e, _ in kept], [e[1] for e, _ in kept], [r[0] for _, r in kept],
             [r[1] for _, r in kept], [r[2] for _, r in kept]))


def lock_tables_txn(txn: Txn, schema: str | None, tables: Sequence[str]) -> None:
    """Block writers of the live tables until the transaction ends (readers go on)."""
    for t in tables:
        txn.execute(sql.SQL("LOCK TABLE {t} IN SHARE ROW EXCLUSIVE MODE").format(
            t=_ident(schema, t)))


def replace_from_shadow_txn(txn: Txn, schema: str | None, table: str, run: int) -> None:
    """The live table's rows become the shadow's, in the caller's transaction (readers see
    the old rows or the new ones, never a mix); the shadow is dropped."""
    live, shadow = _ident(schema, table), _ident(schema, shadow_name(table, run))
    txn.execute(sql.SQL("DELETE FROM {t}").format(t=live))
    txn.execute(sql.SQL("INSERT INTO {t} SELECT * FROM {s}").format(t=live, s=shadow))
    txn.execute(sql.SQL("DROP TABLE {s}").format(s=shadow))


def _followed_by(shard: int, table: str) -> str:
    """A query of (user id, n): each user of ``shard`` and the active rows of its ``table``
    (``followers`` or a shadow copy) that follow them."""
    s = schema_name(shard)
    return (f"SELECT u.id, count(f.follower) AS n FROM {s}.users u LEFT JOIN {s}.{table} f "
            f"ON f.followee = u.id AND f.state = 'active' GROUP BY u.id")


def recount_followers_txn(txn: Txn, shard: int) -> None:
    """``users.followed_by_count`` from the followers table (after a swap)."""
    txn.execute(
        f"UPDATE {schema_name(shard)}.users u SET followed_by_count = c.n FROM "
        f"({_followed_by(shard, 'followers')}) c WHERE u.id = c.id AND "
        f"u.followed_by_count <> c.n")


def followed_by_counts_txn(txn: Txn, shard: int, table: str) -> list[tuple[Any, ...]]:
    """(user id, followed_by_count) of every user of ``shard`` as counted from ``table``
    (what ``recount_followers_txn`` would set once ``table`` is live)."""
    return txn.fetchall(_followed_by(shard, table))


def table_rows_txn(txn: Txn, schema: str | None, table: str, key: Sequence[str],
                   value: str) -> list[tuple[Any, ...]]:
    """(key columns..., value expression) of every row of a table, for comparisons."""
    return txn.fetchall(sql.SQL("SELECT {k}, {v} FROM {t}").format(
        k=sql.SQL(", ").join(sql.Identifier(c) for c in key), v=sql.SQL(value),
        t=_ident(schema, table)))


# --- Redis namespaces -------------------------------------------------------------------------


class RedisNamespaces:
    """Keys of Redis projections, live or under a replay namespace's prefix."""

    #: Commands per pipeline round trip when reading or deleting many keys.
    CHUNK = 1000

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def scan(self, pattern: str) -> Iterator[str]:
        for key in self.redis.scan_iter(match=pattern, count=self.CHUNK):
            yield key.decode()

    def live_keys(self, spec: Spec) -> set[str]:
        return {k for p in spec.patterns for k in self.scan(p) if is_projection_key(spec, k)}

    def built_keys(self, spec: Spec, prefix: str) -> set[str]:
        """Keys of the namespace, without the prefix."""
        n = len(prefix)
        return {k[n:] for p in spec.patterns for k in self.scan(prefix + p)
                if is_projection_key(spec, k[n:])}

    def mark(self, key: str) -> None:
        self.redis.set(key, "1")

    def exists(self, key: str) -> bool:
        return bool(self.redis.exists(key))

    def drop(self, prefix: str, marker: str) -> int:
        """Delete a namespace: every key under ``prefix``, and its marker."""
        n = 0
        batch: list[str] = []
        for key in self.scan(prefix + "*"):
            batch.append(key)
            if len(batch) >= self.CHUNK:
                n += int(self.redis.unlink(*batch))
                batch = []
        if batch:
            n += int(self.redis.unlink(*batch))
        self.redis.unlink(marker)
        return n

    def mark_complete(self, prefix: str, heads: Sequence[str]) -> None:
        """Add the completeness marker (``-``, score 0) to the namespace's sorted sets whose
        names start with ``heads``: a feed rebuilt from the origin of the log is complete."""
        pipe = self.redis.pipeline(transaction=False)
        for head in heads:
            for key in self.scan(f"{prefix}{head}*"):
                pipe.execute_command("ZADD", key, 0, "-")
                if len(pipe) >= self.CHUNK:
                    pipe.execute()
        pipe.execute()

    def first_ids(self, keys: Sequence[str]) -> dict[str, str]:
        """The first entry id of each stream key that has one."""
        pipe = self.redis.pipeline(transaction=False)
        for k in keys:
            pipe.xrange(k, count=1)
        return {k: r[0][0].decode() for k, r in zip(keys, pipe.execute(), strict=True) if r}

    def set_fields(self, values: dict[str, tuple[str, str]]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for key, (f, v) in values.items():
            pipe.hset(key, f, v)
        pipe.execute()

    def swap(self, spec: Spec, prefix: str, marker: str) -> tuple[int, int]:
        """Make the namespace live in ONE transaction (MULTI/EXEC): each built key is renamed
        over its live name (keeping its TTL), the projection's live keys the build does not
        have are deleted, and the namespace's ``marker`` too: a namespace swapped (emptied)
        can never be resumed, whatever happens before its leftovers are dropped. Readers see
        the old projection or the new one, never a mix. Returns (keys swapped in, live keys
        retired)."""
        built = self.built_keys(spec, prefix)
        stale = self.live_keys(spec) - built
        pipe = self.redis.pipeline(transaction=True)
        for key in sorted(built):
            pipe.execute_command("RENAME", prefix + key, key)
        for key in sorted(stale):
            pipe.execute_command("UNLINK", key)
        pipe.execute_command("UNLINK", marker)
        pipe.execute()
        return len(built), len(stale)

    def snapshot(self, keys: Collection[str], prefix: str = "") -> dict[str, Any]:
        """``{key: normalized value}`` of ``keys`` (read under ``prefix``)."""
        keys = sorted(keys)
        out: dict[str, Any] = {}
        for i in range(0, len(keys), self.CHUNK):
            chunk = keys[i:i + self.CHUNK]
            pipe = self.redis.pipeline(transaction=False)
            for k in chunk:
                pipe.type(prefix + k)
            kinds = [t.decode() for t in pipe.execute()]
            pipe = self.redis.pipeline(transaction=False)
            for k, kind in zip(chunk, kinds, strict=True):
                _read(pipe, kind, prefix + k)
            for k, kind, value in zip(chunk, kinds, pipe.execute(), strict=True):
                if kind != "none":
                    out[k] = normalize(k, kind, value)
        return out


def _read(pipe: Any, kind: str, key: str) -> None:
    if kind == "zset":
        pipe.zrange(key, 0, -1, withscores=True)
    elif kind == "hash":
        pipe.hgetall(key)
    elif kind == "set":
        pipe.smembers(key)
    elif kind == "stream":
        pipe.xrange(key)
    elif kind == "string":
        pipe.get(key)
    else:
        pipe.exists(key)


def control_database(databases: Sequence[Database]) -> Database:
    """The database holding replay runs: the shard map's first."""
    return databases[0]


def lock_live_txn(txn: Txn, key: int, timeout_ms: int) -> None:
    """Wait (at most ``timeout_ms``) for a live consumer's session advisory lock ``key``
    (``server.domain.checkpoints.lock_key``) and hold it: no worker advances that pair
    meanwhile (workers only try the lock, so waiting on it deadlocks nobody)."""
    txn.execute(f"SET lock_timeout = {int(timeout_ms)}")
    try:
        txn.execute("SELECT pg_advisory_lock(%s)", (key,))
    finally:
        txn.execute("SET lock_timeout = 0")
