"""PostgreSQL access: connection pools and transactions ("interactions").

Store code is synchronous: a ``_txn`` function takes a ``Txn`` first and runs inside one
transaction, as in Synapse. The worker pool calls interactions directly (psycogreen makes them
cooperative under gevent); the Twisted service runs them in its threadpool. The pool only uses
``threading`` and ``queue``, which gevent's monkey-patching turns green, so one implementation
serves both.
"""

from __future__ import annotations

import functools
import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

#: Errors after which the whole interaction is run again from the start.
RETRYABLE = (
    psycopg2.errors.SerializationFailure,
    psycopg2.errors.DeadlockDetected,
)
MAX_ATTEMPTS = 8


def _loads_json(text: str) -> Any:
    """jsonb values as Python: most events' metadata is ``{}``, which skips the parser (it
    cost more than the event's own payload on the log readers' hot path)."""
    return {} if text == "{}" else json.loads(text)


psycopg2.extras.register_default_jsonb(globally=True, loads=_loads_json)


class RetryTransaction(Exception):
    """Raised inside an interaction to roll it back and run it again (e.g. lost a race)."""


class PoolTimeout(RuntimeError):
    """No connection became free in time."""


class Connection(psycopg2.extensions.connection):
    """A connection that remembers its server-side prepared statements."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prepared: set[str] = set()


@functools.cache
def _execute_statement(name: str, nargs: int) -> str:
    return f"EXECUTE {name} ({', '.join(['%s'] * nargs)})"


class Txn:
    """A transaction in progress: its cursor, and work to run once it has committed."""

    __slots__ = ("cursor", "_after")

    def __init__(self, cursor: psycopg2.extensions.cursor) -> None:
        self.cursor = cursor
        self._after: list[Callable[[], None]] = []

    def execute_prepared(self, name: str, sql: str, args: tuple[Any, ...]) -> None:
        """Run ``sql`` (with ``$1``.. parameters) as the server-side prepared statement
        ``name``, preparing it on first use on this connection. Hot statements skip
        planning this way (for the append statement, planning costs more than executing).

        A PREPARE survives a rollback, and fails inside an aborted transaction (then it is
        not remembered), so the per-connection record stays true.
        """
        prepared = self.cursor.connection.prepared  # connections come from Database.connect
        if name not in prepared:
            self.cursor.execute(f"PREPARE {name} AS {sql}")
            prepared.add(name)
        self.cursor.execute(_execute_statement(name, len(args)), args)

    def execute(self, sql: Any, args: Any = None) -> None:
        self.cursor.execute(sql, args)

    def fetchall(self, sql: Any, args: Any = None) -> list[tuple[Any, ...]]:
        self.cursor.execute(sql, args)
        return self.cursor.fetchall()

    def fetchone(self, sql: Any, args: Any = None) -> tuple[Any, ...] | None:
        self.cursor.execute(sql, args)
        return self.cursor.fetchone()

    def call_after(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` after the transaction commits (never if it rolls back)."""
        self._after.append(fn)


class Database:
    """One physical database: a bounded pool of connections and interactions over it."""

    def __init__(
        self, dsn: str, *, pool_size: int = 10, name: str = "shutterlog", autocommit: bool = False
    ) -> None:
        self.dsn = dsn
        self.name = name
        self._size = pool_size
        self._autocommit = autocommit  # for pools of session connections (advisory locks)
        self._idle: queue.LifoQueue[psycopg2.extensions.connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(pool_size)
        self._closed = False

    def __repr__(self) -> str:
        return f"<Database {self.dsn_label}>"

    @property
    def dsn_label(self) -> str:
        """The DSN without credentials, for logs and metrics."""
        parts = psycopg2.extensions.parse_dsn(self.dsn)
        return f"{parts.get('host', '')}:{parts.get('port', '5432')}/{parts.get('dbname', '')}"

    def connect(self, *, autocommit: bool = False) -> psycopg2.extensions.connection:
        """A new connection outside the pool (LISTEN, COPY, long reads); the caller closes it."""
        conn = psycopg2.connect(
            self.dsn, application_name=self.name, connect_timeout=10,
            connection_factory=Connection,
            # Our prepared statements are written for generic plans; left to choose,
            # PostgreSQL re-plans the append on every call (planning costs more than running it).
            options="-c plan_cache_mode=force_generic_plan",
        )
        conn.autocommit = autocommit
        return conn

    def run_interaction(
        self,
        desc: str,
        fn: Callable[Concatenate[Txn, P], R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Run ``fn(txn, *args, **kwargs)`` in one transaction and commit it.

        Serialization failures, deadlocks and ``RetryTransaction`` roll back and run ``fn``
        again (so ``fn`` must not have effects outside the transaction: use
        ``txn.call_after``). Any other exception rolls back and propagates.
        """
        for attempt in range(1, MAX_ATTEMPTS + 1):
            with self.lease() as conn:
                txn = Txn(conn.cursor())
                try:
                    result = fn(txn, *args, **kwargs)
                    conn.commit()
                except (RetryTransaction, *RETRYABLE) as e:
                    conn.rollback()
                    if attempt == MAX_ATTEMPTS:
                        raise
                    log.debug("%s: retrying after %s (attempt %d)", desc, type(e).__name__, attempt)
                    time.sleep(random.uniform(0, 0.002 * attempt))
                    continue
                except BaseException:
                    conn.rollback()
                    raise
                finally:
                    txn.cursor.close()
            for after in txn._after:
                after()
            return result
        raise AssertionError("unreachable")

    def lease(self) -> _Lease:
        """``with db.lease() as conn``: a pooled connection for the block, returned after it
        (closed instead if it broke or was left inside a transaction)."""
        return _Lease(self)

    def _get(self, timeout: float = 30.0) -> psycopg2.extensions.connection:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        if not self._slots.acquire(timeout=timeout):
            raise PoolTimeout(f"no free connection to {self.dsn_label} within {timeout}s")
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        try:
            return self.connect(autocommit=self._autocommit)
        except BaseException:
            self._slots.release()
            raise

    def _put(self, conn: psycopg2.extensions.connection) -> None:
        try:
            if conn.closed or self._closed:
                conn.close()
            elif conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
                conn.close()  # broken or left mid-transaction: never hand it out again
            else:
                self._idle.put(conn)
        finally:
            self._slots.release()

    def close(self) -> None:
        """Close idle connections; connections in use close when they come back."""
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


class _Lease:
    """``with`` a pooled connection; a connection that failed is dropped, not reused."""

    __slots__ = ("_db", "_conn")

    def __init__(self, db: Database) -> None:
        self._db = db
        self._conn: psycopg2.extensions.connection | None = None

    def __enter__(self) -> psycopg2.extensions.connection:
        self._conn = self._db._get()
        return self._conn

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        assert self._conn is not None
        if isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError):
            self._conn.close()
        self._db._put(self._conn)
