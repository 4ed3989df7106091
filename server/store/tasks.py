"""Durable chunk tasks (table of migration 0003): insert, lease, finish, find the late ones.

A task's id comes from a logical shard's ``next_id()``, so the id says which physical database
holds it. A worker leases a task before running it (``state = 'running'`` until ``due_at``);
nobody else may take it while the lease holds, and the relay re-submits tasks whose deadline
has passed (pending ones never picked up, running ones whose worker died).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from server.db import Database, Txn
from server.domain.shards import schema_name
from server.interfaces import IShardRouter
from server.shards import database_of_id


@dataclass(frozen=True, slots=True)
class Task:
    id: int
    kind: str
    payload: bytes
    state: str  # pending, running, done, failed
    attempts: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class Lease:
    """A task taken by one worker until its lease ends; ``attempt`` identifies the lease."""

    id: int
    kind: str
    payload: bytes
    attempt: int


class TaskStore:
    """The tasks tables of every physical database."""

    def __init__(self, router: IShardRouter) -> None:
        self.router = router

    def insert(self, shard: int, kind: str, payloads: Sequence[bytes], grace: float) -> list[int]:
        """Insert pending tasks in ``shard``'s database, due for re-submission after
        ``grace`` seconds if nobody has taken them; returns their ids in order."""
        return self.router.database(shard).run_interaction(
            "insert_tasks", insert_txn, shard, kind, payloads, grace)

    def lease(self, task_id: int, seconds: float) -> Lease | None:
        """Take the task for ``seconds`` if it is pending, or running on an expired lease;
        None if it is done, failed, unknown, or leased to someone else."""
        db = database_of_id(self.router, task_id)
        if db is None:
            return None
        row = db.run_interaction("lease_task", lambda txn: txn.fetchone(
            """
            UPDATE tasks SET state = 'running', attempts = attempts + 1,
                             due_at = now() + make_interval(secs => %s)
            WHERE id = %s AND (state = 'pending' OR (state = 'running' AND due_at < now()))
            RETURNING kind, payload, attempts
            """,
            (seconds, task_id),
        ))
        return Lease(task_id, row[0], bytes(row[1]), row[2]) if row else None

    def finish(self, lease: Lease, error: str | None = None, retry_in: float | None = None,
               count_attempt: bool = True) -> bool:
        """End a lease: done (no ``error``), pending again after ``retry_in`` seconds, or
        failed for good. False if the lease was lost (another worker took the task over).
        With ``count_attempt`` False the lease gives back the attempt it took (a retry the
        handler asked for, which must not use up the kind's schedule)."""
        args: tuple[object, ...]
        if error is None:
            sql, args = "state = 'done', done_at = now(), last_error = NULL", ()
        elif retry_in is not None:
            sql = "state = 'pending', due_at = now() + make_interval(secs => %s), last_error = %s"
            args = (retry_in, error[:2000])
        else:
            sql, args = "state = 'failed', done_at = now(), last_error = %s", (error[:2000],)
        if not count_attempt:
            sql += ", attempts = attempts - 1"
        db = database_of_id(self.router, lease.id)
        assert db is not None
        return bool(db.run_interaction("finish_task", lambda txn: txn.fetchone(
            f"UPDATE tasks SET {sql} WHERE id = %s AND state = 'running' AND attempts = %s "
            "RETURNING 1",
            (*args, lease.id, lease.attempt),
        )))

    def extend(self, lease: Lease, seconds: float) -> bool:
        """Push the lease's end ``seconds`` ahead; False if it is no longer ours."""
        db = database_of_id(self.router, lease.id)
        assert db is not None
        return bool(db.run_interaction("extend_task", lambda txn: txn.fetchone(
            "UPDATE tasks SET due_at = now() + make_interval(secs => %s) "
            "WHERE id = %s AND state = 'running' AND attempts = %s RETURNING 1",
            (seconds, lease.id, lease.attempt),
        )))

    def overdue(self, db: Database, again_in: float, limit: int = 1000) -> list[int]:
        """Ids of unfinished tasks past their deadline in ``db``, each given ``again_in`` more
        seconds (so the next scan does not re-submit them at once). A running task past its
        deadline has lost its lease (its worker died): it becomes pending again, so the
        re-submitted job may lease it (extending a running task's deadline instead would keep
        it leased to the dead worker for ever)."""
        return db.run_interaction("overdue_tasks", lambda txn: [r[0] for r in txn.fetchall(
            """
            UPDATE tasks SET due_at = now() + make_interval(secs => %s), state = 'pending'
            WHERE id IN (SELECT id FROM tasks WHERE state IN ('pending', 'running')
                         AND due_at < now() ORDER BY due_at LIMIT %s FOR UPDATE SKIP LOCKED)
            RETURNING id
            """,
            (again_in, limit),
        )])

    def get(self, task_id: int) -> Task | None:
        db = database_of_id(self.router, task_id)
        row = db and db.run_interaction("get_task", lambda txn: txn.fetchone(
            "SELECT id, kind, payload, state, attempts, last_error FROM tasks WHERE id = %s",
            (task_id,),
        ))
        return Task(row[0], row[1], bytes(row[2]), *row[3:]) if row else None

    def counts(self, db: Database, kind: str | None = None) -> dict[str, int]:
        """Tasks of ``db`` (of ``kind`` only, if given) by state."""
        return dict(db.run_interaction("count_tasks", _counts, kind))


def insert_txn(txn: Txn, shard: int, kind: str, payloads: Sequence[bytes], grace: float
               ) -> list[int]:
    """``TaskStore.insert`` inside the caller's transaction (on ``shard``'s database), so the
    tasks exist exactly when what the transaction records does."""
    rows = txn.fetchall(
        f"""
        INSERT INTO tasks (id, kind, payload, due_at)
        SELECT i.id, %s, p.payload, now() + make_interval(secs => %s)
        FROM unnest({schema_name(shard)}.next_ids(%s)) WITH ORDINALITY AS i(id, n)
        JOIN unnest(%s::bytea[]) WITH ORDINALITY AS p(payload, n) USING (n)
        RETURNING id
        """,
        (kind, grace, len(payloads), list(payloads)),
    )
    return sorted(int(r[0]) for r in rows)  # ids increase in next_ids order


def _counts(txn: Txn, kind: str | None) -> list[tuple[str, int]]:
    return [(r[0], int(r[1])) for r in txn.fetchall(
        "SELECT state, count(*) FROM tasks WHERE %(kind)s IS NULL OR kind = %(kind)s "
        "GROUP BY state", {"kind": kind}
    )]
