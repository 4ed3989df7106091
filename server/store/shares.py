"""The share ledger in PostgreSQL (``shares``, in the medium's shard): one row per (medium,
service), the durable record of a share's attempts and result.

The ``shareout`` consumer queues rows together with their tasks in ONE transaction (so a
queued share always has a task, and a batch applied again queues nothing); the task moves
the row through ``attempting`` (recorded before the remote create call) to ``posted`` (with
the remote id and URL), ``failed`` (the final error) or ``cancelled`` (the medium was
deleted first); a deletion moves posted rows to ``deleting`` and then ``deleted`` or
``delete_failed``. ``account`` records the account the attempt and the post used
(``account_key``), so a deletion never goes to another account. ``ShareLedger`` is the
``IShareLedger`` that ``share_once`` consults so a redone task never posts twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from zope.interface import implementer

from plugins.shareout import IShareLedger
from server.db import Database, Txn
from server.domain.ids import shard_of
from server.domain.shards import schema_name
from server.domain.shareout import Posted
from server.interfaces import IShardRouter
from server.store import tasks
from server.store.media import by_database

_COLUMNS = ("media_id, service, key, state, remote_id, url, error, attempts, next_ms, "
            "created_ms, updated_ms, account")
#: States the owner sees as "pending".
PENDING = ("queued", "attempting")


@dataclass(frozen=True)
class Share:
    """One ledger row."""

    media_id: int
    service: str
    key: str
    state: str
    remote_id: str | None
    url: str | None
    error: str | None
    attempts: int
    next_ms: int | None
    created_ms: int
    updated_ms: int
    account: str | None = None  # who made the post (``account_key``; None: before it)

    def json(self) -> dict[str, Any]:
        """What the medium's owner sees of it (``shares`` in the media object)."""
        return {"service": self.service,
                "state": "pending" if self.state in PENDING else self.state,
                "remote_id": self.remote_id, "url": self.url, "error": self.error,
                "attempts": self.attempts, "updated_time": str(self.updated_ms // 1000)}


def _share(row: tuple[Any, ...]) -> Share:
    return Share(int(row[0]), *row[1:])


def queue_txn(txn: Txn, media_id: int, keys: dict[str, str], now_ms: int, kind: str,
              payload: Callable[[str], bytes], grace: float) -> list[int]:
    """Queue the shares of ``media_id`` (service -> share key) not queued yet, each with a
    task of ``kind`` (``payload(service)``) inserted in this same transaction; returns the
    new tasks' ids (their jobs are submitted after the commit)."""
    shard = shard_of(media_id)
    rows = txn.fetchall(
        f"INSERT INTO {schema_name(shard)}.shares (media_id, service, key, created_ms, "
        "updated_ms) SELECT %s, s, k, %s, %s FROM unnest(%s::text[], %s::text[]) AS t(s, k) "
        "ON CONFLICT DO NOTHING RETURNING service",
        (media_id, now_ms, now_ms, list(keys), list(keys.values())))
    new = sorted(r[0] for r in rows)
    return tasks.insert_txn(txn, shard, kind, [payload(s) for s in new], grace) if new else []


def unshare_txn(txn: Txn, media_id: int, now_ms: int, kind: str,
                payload: Callable[[str], bytes], grace: float) -> list[int]:
    """Move the medium's posted shares to ``deleting``, each with a task of ``kind``; returns
    the new tasks' ids. Applied again, it finds nothing posted and does nothing."""
    shard = shard_of(media_id)
    rows = txn.fetchall(
        f"UPDATE {schema_name(shard)}.shares SET state = 'deleting', updated_ms = %s, "
        "attempts = 0, next_ms = NULL, error = NULL "
        "WHERE media_id = %s AND state = 'posted' RETURNING service",
        (now_ms, media_id))
    gone = sorted(r[0] for r in rows)
    return tasks.insert_txn(txn, shard, kind, [payload(s) for s in gone], grace) if gone else []


def get_txn(txn: Txn, media_id: int, service: str) -> Share | None:
    row = txn.fetchone(
        f"SELECT {_COLUMNS} FROM {schema_name(shard_of(media_id))}.shares "
        "WHERE media_id = %s AND service = %s", (media_id, service))
    return _share(row) if row else None


def record_txn(txn: Txn, media_id: int, service: str, now_ms: int, **fields: Any) -> None:
    """Set ``fields`` (state, remote_id, url, error, attempts, next_ms, account) of one
    row."""
    names = sorted(fields)
    assert set(names) <= {"state", "remote_id", "url", "error", "attempts", "next_ms",
                          "account"}
    sets = ", ".join(f"{n} = %s" for n in names)
    txn.execute(
        f"UPDATE {schema_name(shard_of(media_id))}.shares SET {sets}, updated_ms = %s "
        "WHERE media_id = %s AND service = %s",
        (*[fields[n] for n in names], now_ms, media_id, service))


def give_up_txn(txn: Txn, media_id: int, service: str, now_ms: int, states: Iterable[str],
                state: str, error: str) -> bool:
    """Record the row ``state`` with ``error`` if it is still in one of ``states`` (a task
    that gave up must not overwrite what a later run recorded); whether it was."""
    return txn.fetchone(
        f"UPDATE {schema_name(shard_of(media_id))}.shares SET state = %s, error = %s, "
        "next_ms = NULL, updated_ms = %s "
        "WHERE media_id = %s AND service = %s AND state = ANY(%s) RETURNING 1",
        (state, error, now_ms, media_id, service, list(states))) is not None


def shares_of(router: IShardRouter, media_ids: Iterable[int]) -> dict[int, list[Share]]:
    """The ledger rows of ``media_ids``, by medium: one query per physical database."""
    out: dict[int, list[Share]] = {}
    for db, shards in by_database(router, media_ids).items():
        sql = " UNION ALL ".join(
            f"SELECT {_COLUMNS} FROM {schema_name(s)}.shares WHERE media_id = ANY(%s)"
            for s in shards)
        for row in db.run_interaction("media_shares", Txn.fetchall, sql + " ORDER BY 2",
                                      list(shards.values())):
            share = _share(row)
            out.setdefault(share.media_id, []).append(share)
    return out


@implementer(IShareLedger)
class ShareLedger:
    """``IShareLedger`` over one share's row (each method commits before it returns);
    ``account``, once the task knows it: the account its attempts use, recorded with them."""

    def __init__(self, db: Database, media_id: int, service: str,
                 clock_ms: Callable[[], int]) -> None:
        self.db = db
        self.media_id = media_id
        self.service = service
        self.clock_ms = clock_ms
        self.account: str | None = None

    def row(self) -> Share | None:
        return self.db.run_interaction("get_share", get_txn, self.media_id, self.service)

    def record(self, **fields: Any) -> None:
        self.db.run_interaction("record_share", record_txn, self.media_id, self.service,
                                self.clock_ms(), **fields)

    def give_up(self, states: Iterable[str], state: str, error: str) -> bool:
        """``give_up_txn`` on this row."""
        return self.db.run_interaction("give_up_share", give_up_txn, self.media_id,
                                       self.service, self.clock_ms(), states, state, error)

    def get(self, key: str) -> Posted | bool | None:
        found = self.row()
        if found is None or found.key != key:
            return None
        if found.remote_id is not None:
            return Posted(found.remote_id, found.url)
        return found.state == "attempting" or None

    def attempting(self, key: str) -> None:
        self.record(state="attempting", account=self.account)

    def posted(self, key: str, result: Posted) -> None:
        self.record(state="posted", remote_id=result.remote_id, url=result.url, error=None,
                    next_ms=None, account=self.account)

