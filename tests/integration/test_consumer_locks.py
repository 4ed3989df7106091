"""The worker's lock and release of a (consumer, shard) pair (migration 0005), on two session
connections: exclusion, the checkpoint read once the lock is held, and the look for later
events as it is released."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg2.extensions
import pytest

from server.db import Txn
from server.domain.checkpoints import lock_key
from server.domain.log import ORIGIN, AppendRequest, NewEvent
from server.store import consumers as cstore
from tests.integration.conftest import Env
from tests.integration.recording import Noted, append

SHARD = 3
NAME = "locks_probe"
KEY = lock_key(NAME, SHARD)


@pytest.fixture
def sessions(env: Env) -> Iterator[tuple[Txn, Txn]]:
    """Two autocommit session connections to SHARD's database, as two workers hold them."""
    conns: list[psycopg2.extensions.connection] = [
        env.router.database(SHARD).connect(autocommit=True) for _ in range(2)]
    try:
        yield Txn(conns[0].cursor()), Txn(conns[1].cursor())
    finally:
        for conn in conns:
            conn.close()


@contextlib.contextmanager
def unsafe_event(env: Env) -> Iterator[None]:
    """For the block: an event in SHARD committed behind a transaction that is still open
    (it took an xid first), so not safe to read yet."""
    older = env.router.database(SHARD).connect()
    try:
        Txn(older.cursor()).execute("SELECT pg_current_xact_id()")  # an xid below the next
        append(env.store, [(SHARD, Noted(n=1))])
        yield
    finally:
        older.rollback()
        older.close()


def test_one_holder_at_a_time_and_the_next_reads_what_it_saved(
        env: Env, sessions: tuple[Txn, Txn]) -> None:
    a, b = sessions
    append(env.store, [(SHARD, Noted(n=i)) for i in range(3)])
    first = cstore.lock_txn(a, KEY, NAME, SHARD, from_head=False)
    assert first is not None and first.position == ORIGIN, "created at the origin"
    assert cstore.lock_txn(b, KEY, NAME, SHARD, from_head=False) is None, "A holds it"
    page = env.store.read_page(SHARD, ORIGIN, limit=2)
    cstore.save_txn(a, NAME, SHARD, page.next)
    assert cstore.release_txn(a, KEY, SHARD, page.next), "a third event follows"
    second = cstore.lock_txn(b, KEY, NAME, SHARD, from_head=False)
    assert second is not None and second.position == page.next, "B starts where A saved"
    assert cstore.lock_txn(a, KEY, NAME, SHARD, from_head=False) is None, "now B holds it"
    head = env.store.head(SHARD)
    assert head is not None
    assert not cstore.release_txn(b, KEY, SHARD, head), "nothing follows the head"
    assert cstore.lock_txn(a, KEY, NAME, SHARD, from_head=False) is not None


def test_release_sees_an_event_not_yet_safe_to_read(
        env: Env, sessions: tuple[Txn, Txn]) -> None:
    """An event committed behind an open older transaction counts as following: the holder
    must go on (and wait for it), not stop."""
    a, _ = sessions
    append(env.store, [(SHARD, Noted(n=0))])
    head = env.store.head(SHARD)
    assert head is not None
    with unsafe_event(env):
        assert env.store.read_page(SHARD, head).events == [], "not safe to read yet"
        assert cstore.lock_txn(a, KEY, NAME, SHARD, from_head=False) is not None
        assert cstore.release_txn(a, KEY, SHARD, head)


def test_a_short_page_without_lookahead_leaves_the_look_to_the_caller(
        env: Env, sessions: tuple[Txn, Txn]) -> None:
    """``lookahead=False``: a page with events but shorter than the limit says no more at
    once, even with an unsafe event after it; an empty page still looks (blocked)."""
    append(env.store, [(SHARD, Noted(n=0))])
    with unsafe_event(env):
        txn, _ = sessions
        short = env.store.read_page_txn(txn, SHARD, ORIGIN, 10, lookahead=False)
        assert len(short.events) == 1 and not short.more
        full = env.store.read_page_txn(txn, SHARD, ORIGIN, 10)
        assert len(full.events) == 1 and full.more, "the default looks ahead"
        empty = env.store.read_page_txn(txn, SHARD, short.next, 10, lookahead=False)
        assert empty.events == [] and empty.scanned == 0 and empty.more


def test_a_checkpoint_at_the_head_misses_no_event_of_a_transaction_still_open(
        env: Env, sessions: tuple[Txn, Txn]) -> None:
    """A ``from_head`` consumer's checkpoint is made at the newest event safe to read: an
    event whose transaction is still open then (so its position is below a newer committed
    event's) comes after the checkpoint once it commits, and is applied."""
    a, _ = sessions
    older = env.router.database(SHARD).connect()
    try:
        late = AppendRequest(SHARD, f"note:late:{SHARD}", (NewEvent(Noted(n=1)),))
        env.store.append_txn(Txn(older.cursor()), [late])  # written, not committed
        append(env.store, [(SHARD, Noted(n=2))])  # a newer transaction, committed
        made = cstore.lock_txn(a, KEY, NAME, SHARD, from_head=True)
        assert made is not None
        older.commit()
    finally:
        older.close()
    page = env.store.read_page(SHARD, made.position)
    assert sorted(e.data.n for e in page.events) == [1, 2]  # type: ignore[attr-defined]
