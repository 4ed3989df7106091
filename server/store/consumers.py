"""Checkpoints and dead letters of the log's consumers (tables of migration 0002).

The ``*_txn`` functions take a ``Txn``: the worker runs them on its own session connection
(autocommit: each statement is its own short transaction, and the advisory lock lives on the
session, never in a transaction that would hold back every reader's snapshot xmin). The
``ConsumerStore`` methods run pooled interactions for the relay, ``status`` and the CLI.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from server.db import Database, Txn
from server.domain.checkpoints import RUNNING, STOPPED, Checkpoint, Lag, lag
from server.domain.log import ORIGIN, Position
from server.domain.shards import schema_name
from server.interfaces import IShardRouter
from server.shards import database_of_id
from server.store.events import safe_head_txn

#: Lag in events is counted up to this many (beyond it, "at least"). The relay's scan walks
#: up to this many events after every checkpoint each ``relay.poll_interval``, so the cap is
#: what a backlog (a new consumer starting from the origin, a long outage) costs per scan.
LAG_CAP = 10_000

_CHECKPOINT = "consumer, shard, txid::text, event_id, status, reason, failures, last_error"
_LETTER = (
    "id, consumer, shard, event_id, txid::text, error, traceback, attempts, "
    "(extract(epoch FROM first_failed_at) * 1000)::bigint, "
    "(extract(epoch FROM last_failed_at) * 1000)::bigint, status"
)


@dataclass(frozen=True, slots=True)
class PairState:
    """A checkpoint with its shard's head and its lag, as the relay and ``status`` see it."""

    checkpoint: Checkpoint
    head: Position | None
    lag: Lag
    scanned: int  # events of every type after the checkpoint (up to ``LAG_CAP``)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event a consumer failed to apply after every retry."""

    id: int
    consumer: str
    shard: int
    event_id: int
    position: Position
    error: str
    traceback: str
    attempts: int
    first_failed_ms: int
    last_failed_ms: int
    status: str  # "parked": the consumer went on; "blocking": the consumer stopped here


def _checkpoint(row: Sequence[Any]) -> Checkpoint:
    consumer, shard, txid, event_id, status, reason, failures, last_error = row
    return Checkpoint(consumer, shard, Position(int(txid), event_id), status, reason, failures,
                      last_error)


def _letter(row: Sequence[Any]) -> DeadLetter:
    return DeadLetter(row[0], row[1], row[2], row[3], Position(int(row[4]), row[3]), *row[5:])


# --- on the worker's session connection -------------------------------------------------------


def lock_txn(txn: Txn, key: int, consumer: str, shard: int, from_head: bool
             ) -> Checkpoint | None:
    """Take the session advisory lock ``key`` of (consumer, shard) and read its checkpoint
    (created first if missing), one round trip (migration 0005); None if another session
    holds the lock."""
    txn.execute_prepared(
        "shutterlog_consumer_lock",
        "SELECT * FROM consumer_lock($1::bigint, $2::text, $3::int)", (key, consumer, shard))
    row = txn.cursor.fetchone()
    if row is None or not row[0]:
        return None
    if row[1] is None:
        return checkpoint_txn(txn, consumer, shard, from_head)
    return _checkpoint((consumer, shard, *row[1:]))


def unlock_txn(txn: Txn, key: int) -> None:
    txn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def release_txn(txn: Txn, key: int, shard: int, position: Position) -> bool:
    """Release the lock ``key``, then say whether any event (safe to read yet or not)
    follows ``position`` in ``shard``: one round trip (migration 0005)."""
    txn.execute_prepared(
        "shutterlog_consumer_release",
        "SELECT consumer_release($1::bigint, $2::int, $3::text, $4::bigint)",
        (key, shard, str(position.txid), position.id))
    row = txn.cursor.fetchone()
    return bool(row and row[0])


def checkpoint_txn(txn: Txn, consumer: str, shard: int, from_head: bool) -> Checkpoint:
    """The checkpoint of (consumer, shard), created first if missing: at the origin of the
    log, or for a ``from_head`` consumer at the shard's newest event safe to read (below
    every transaction still open: an event one of them is writing comes after it)."""
    row = txn.fetchone(f"SELECT {_CHECKPOINT} FROM checkpoints WHERE consumer = %s AND shard = %s",
                       (consumer, shard))
    if row is None:
        start = safe_head_txn(txn, shard) if from_head else ORIGIN
        txn.execute(
            "INSERT INTO checkpoints (consumer, shard, txid, event_id) "
            "VALUES (%s, %s, %s::xid8, %s) ON CONFLICT DO NOTHING",
            (consumer, shard, str(start.txid), start.id),
        )
        row = txn.fetchone(
            f"SELECT {_CHECKPOINT} FROM checkpoints WHERE consumer = %s AND shard = %s",
            (consumer, shard),
        )
    assert row is not None
    return _checkpoint(row)


def save_txn(txn: Txn, consumer: str, shard: int, position: Position) -> None:
    """Move the checkpoint to ``position``; the failing batch, if any, is behind it now."""
    txn.execute_prepared(
        "shutterlog_save_checkpoint",
        "UPDATE checkpoints SET txid = $3::text::xid8, event_id = $4::bigint, failures = 0, "
        "last_error = NULL, updated_at = now() WHERE consumer = $1::text AND shard = $2::int",
        (consumer, shard, str(position.txid), position.id),
    )


def failed_txn(txn: Txn, consumer: str, shard: int, error: str) -> None:
    """Count one more failed attempt at the batch after the checkpoint."""
    txn.execute(
        "UPDATE checkpoints SET failures = failures + 1, last_error = %s, updated_at = now() "
        "WHERE consumer = %s AND shard = %s",
        (error[:2000], consumer, shard),
    )


def stop_txn(txn: Txn, consumer: str, shard: int, position: Position, reason: str) -> None:
    """Stop (consumer, shard) at ``position`` until an operator re-drives it."""
    txn.execute(
        "UPDATE checkpoints SET txid = %s::xid8, event_id = %s, status = %s, reason = %s, "
        "updated_at = now() WHERE consumer = %s AND shard = %s",
        (str(position.txid), position.id, STOPPED, reason[:2000], consumer, shard),
    )


def park_txn(txn: Txn, consumer: str, shard: int, event_id: int, position: Position,
             error: str, traceback: str, attempts: int, first_failed_ms: int,
             blocking: bool) -> int:
    """Park an event in dead letters (again: adds the attempts); returns the letter's id."""
    row = txn.fetchone(
        f"""
        INSERT INTO dead_letters (id, consumer, shard, event_id, txid, error, traceback,
                                  attempts, first_failed_at, last_failed_at, status)
        VALUES ({schema_name(shard)}.next_id(), %s, %s, %s, %s::xid8, %s, %s, %s,
                to_timestamp(%s / 1000.0), now(), %s)
        ON CONFLICT (consumer, event_id) DO UPDATE SET
            attempts = dead_letters.attempts + EXCLUDED.attempts, error = EXCLUDED.error,
            traceback = EXCLUDED.traceback, last_failed_at = now(), status = EXCLUDED.status
        RETURNING id
        """,
        (consumer, shard, event_id, str(position.txid), error[:2000], traceback[-20000:],
         attempts, first_failed_ms, "blocking" if blocking else "parked"),
    )
    assert row is not None
    return int(row[0])


# --- pooled, for the relay, status and the CLI ------------------------------------------------


class ConsumerStore:
    """Checkpoints and dead letters over every physical database of a shard router."""

    def __init__(self, router: IShardRouter) -> None:
        self.router = router

    def ensure(self, db: Database, consumers: Sequence[tuple[str, bool]]) -> None:
        """Create the missing checkpoints of (name, from_head) consumers for ``db``'s shards."""
        shards = self.router.shards_of(db)
        db.run_interaction("ensure_checkpoints", lambda txn: [
            checkpoint_txn(txn, name, shard, from_head)
            for name, from_head in consumers for shard in shards
        ])

    def scan(self, db: Database, wanted: Mapping[str, Collection[str]],
             only_wanted: bool = False) -> list[PairState]:
        """Every checkpoint of ``db`` (of the consumers in ``wanted`` only, if
        ``only_wanted``) with its shard's head and lag. ``wanted`` gives the event types of
        each declared consumer: lag counts those only (a checkpoint of a consumer not in it,
        left by an older release, counts events of every type)."""
        names = list(wanted)
        rows = db.run_interaction("scan_checkpoints", lambda txn: txn.fetchall(
            f"""
            WITH heads AS MATERIALIZED (
                SELECT s.shard, h.txid, h.id
                FROM (SELECT DISTINCT shard FROM checkpoints) s
                LEFT JOIN LATERAL (
                    SELECT txid, id FROM events e WHERE e.shard = s.shard
                    ORDER BY e.txid DESC, e.id DESC LIMIT 1
                ) h ON true
            )
            SELECT {', '.join('c.' + col for col in _CHECKPOINT.split(', '))},
                   h.txid::text, h.id, p.wanted, p.scanned, p.oldest_ms,
                   (extract(epoch FROM now()) * 1000)::bigint
            FROM checkpoints c
            JOIN heads h USING (shard)
            LEFT JOIN unnest(%(names)s::text[], %(types)s::text[]) AS w(consumer, types)
                ON w.consumer = c.consumer
            LEFT JOIN LATERAL (
                SELECT count(*) FILTER (WHERE x.wanted) AS wanted, count(*) AS scanned,
                       (extract(epoch FROM min(x.created_at) FILTER (WHERE x.wanted))
                        * 1000)::bigint AS oldest_ms
                FROM (
                    SELECT e.created_at,
                           w.types IS NULL OR e.type = ANY(string_to_array(w.types, ','))
                               AS wanted
                    FROM events e WHERE e.shard = c.shard
                      AND (e.txid, e.id) > (c.txid, c.event_id)
                    ORDER BY e.txid, e.id LIMIT %(cap)s
                ) x
            ) p ON true
            WHERE NOT %(only)s OR w.consumer IS NOT NULL
            ORDER BY c.consumer, c.shard
            """,
            {"names": names, "types": [",".join(sorted(wanted[n])) for n in names],
             "cap": LAG_CAP, "only": only_wanted},
        ))
        return [
            PairState(
                _checkpoint(r[:8]),
                Position(int(r[8]), r[9]) if r[8] is not None else None,
                lag(r[10], r[11], LAG_CAP, r[12], r[13]),
                r[11],
            )
            for r in rows
        ]

    def caught_up(self, wanted: Mapping[str, Collection[str]],
                  shards: Collection[int] | None = None) -> bool:
        """Whether every consumer in ``wanted`` (name -> event types) has a checkpoint on
        every shard (of ``shards``, if given) with no event of its types left to apply."""
        want = set(range(self.router.count) if shards is None else shards)
        states = [state for db in self.router.databases() if want & set(self.router.shards_of(db))
                  for state in self.scan(db, wanted, only_wanted=True)
                  if state.checkpoint.shard in want]
        return len(states) == len(wanted) * len(want) and not any(s.lag.behind for s in states)

    def letters(self, consumer: str | None = None) -> list[DeadLetter]:
        """Dead letters over every database, oldest first."""
        out: list[DeadLetter] = []
        for db in self.router.databases():
            out += db.run_interaction("dead_letters", lambda txn: [
                _letter(r) for r in txn.fetchall(
                    f"SELECT {_LETTER} FROM dead_letters "
                    "WHERE %(c)s::text IS NULL OR consumer = %(c)s ORDER BY first_failed_at, id",
                    {"c": consumer},
                )
            ])
        return sorted(out, key=lambda d: (d.first_failed_ms, d.id))

    def letter(self, letter_id: int) -> DeadLetter | None:
        db = database_of_id(self.router, letter_id)
        if db is None:
            return None
        row = db.run_interaction("dead_letter", lambda txn: txn.fetchone(
            f"SELECT {_LETTER} FROM dead_letters WHERE id = %s", (letter_id,)
        ))
        return _letter(row) if row else None

    def resolved(self, letter: DeadLetter) -> bool:
        """The letter's event was applied (or given up): delete the letter and, if its
        consumer stopped at the event, move the checkpoint onto it and resume. True if a stop
        was lifted."""

        def txn_fn(txn: Txn) -> bool:
            txn.execute("DELETE FROM dead_letters WHERE id = %s", (letter.id,))
            row = txn.fetchone(
                "UPDATE checkpoints SET txid = %s::xid8, event_id = %s, status = %s, "
                "reason = NULL, failures = 0, last_error = NULL, updated_at = now() "
                "WHERE consumer = %s AND shard = %s AND status = %s "
                "AND (txid, event_id) < (%s::xid8, %s) RETURNING 1",
                (str(letter.position.txid), letter.event_id, RUNNING, letter.consumer,
                 letter.shard, STOPPED, str(letter.position.txid), letter.event_id),
            )
            return row is not None

        return self.router.database(letter.shard).run_interaction("resolve_letter", txn_fn)

    def failed_again(self, letter: DeadLetter, error: str, traceback: str) -> None:
        """A retry of the letter failed: count it and keep the newest error."""
        self.router.database(letter.shard).run_interaction("letter_failed", lambda txn: txn.execute(
            "UPDATE dead_letters SET attempts = attempts + 1, error = %s, traceback = %s, "
            "last_failed_at = now() WHERE id = %s",
            (error[:2000], traceback[-20000:], letter.id),
        ))

    def checkpoint(self, consumer: str, shard: int) -> Checkpoint | None:
        row = self.router.database(shard).run_interaction("checkpoint", lambda txn: txn.fetchone(
            f"SELECT {_CHECKPOINT} FROM checkpoints WHERE consumer = %s AND shard = %s",
            (consumer, shard),
        ))
        return _checkpoint(row) if row else None

    def letter_counts(self, db: Database) -> dict[str, int]:
        """Dead letters in ``db`` by consumer."""
        return dict(db.run_interaction("count_letters", lambda txn: [
            (r[0], int(r[1]))
            for r in txn.fetchall("SELECT consumer, count(*) FROM dead_letters GROUP BY consumer")
        ]))
