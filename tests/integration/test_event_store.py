"""The PostgreSQL event store: appends, concurrency, idempotency, append-only, routing."""

from __future__ import annotations

import threading
from typing import Any

import psycopg2
import pytest

from server.db import Txn
from server.domain.events import Event, EventRegistry, EventSchemaError
from server.domain.log import (
    ORIGIN,
    AppendRequest,
    AppendResult,
    NewEvent,
    Position,
    RecordedEvent,
    StreamConflict,
)
from server.store.events import (
    IdempotencyKeyReused,
    PostgresEventStore,
    UnreadableEvent,
    append_latest_txn,
)
from server.store.inline import InlineProjections
from tests.helpers import wait_for
from tests.integration.conftest import Env

REG = EventRegistry()


@REG.event("Noted", version=1)
class Noted(Event):
    n: int
    text: str = ""


def store(env: Env, inline: InlineProjections | None = None) -> PostgresEventStore:
    return PostgresEventStore(env.router, registry=REG, inline=inline or InlineProjections())


def noted(*ns: int) -> list[NewEvent]:
    return [NewEvent(Noted(n=n), actor=42) for n in ns]


def numbers(events: list[RecordedEvent]) -> list[int]:
    """The ``n`` of each (Noted) event."""
    return [e.data.n for e in events if isinstance(e.data, Noted)]


def test_append_and_read_stream(env: Env) -> None:
    """Appended events come back from their stream in version order, with their fields."""
    s = store(env)
    first = s.append(3, "note:1", noted(1, 2), expected_version=0)
    second = s.append(3, "note:1", noted(3), expected_version=2, metadata={"request_id": "r1"})
    assert (first.version, second.version) == (2, 3)
    events = s.read_stream(3, "note:1")
    assert numbers(events) == [1, 2, 3]
    assert [e.version for e in events] == [1, 2, 3]
    assert [e.id for e in events] == list(first.event_ids + second.event_ids)
    assert events[2].metadata == {"request_id": "r1"} and events[0].actor == 42
    assert s.read_stream(3, "note:1", after_version=2) == events[2:]
    assert s.get(events[1].id) == events[1]
    assert s.get(123) is None


def test_wrong_expected_version_is_a_conflict(env: Env) -> None:
    """Appending at a version the stream is not at raises StreamConflict and writes nothing."""
    s = store(env)
    s.append(4, "note:2", noted(1), expected_version=0)
    for expected in (0, 2):
        with pytest.raises(StreamConflict) as info:
            s.append(4, "note:2", noted(9), expected_version=expected)
        assert (info.value.expected, info.value.actual) == (expected, 1)
    assert numbers(s.read_stream(4, "note:2")) == [1]


def _blocked_on_lock(env: Env, shard: int) -> bool:
    row = env.router.database(shard).run_interaction(
        "locks", lambda txn: txn.fetchone(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()"
        ),
    )
    return bool(row and row[0] > 0)


def test_two_writers_same_expected_version_exactly_one_wins(env: Env) -> None:
    """A holds its append open; B appends at the same version and waits; A commits: B loses."""
    s = store(env)
    conn = env.router.database(6).connect()
    txn = Txn(conn.cursor())
    s.append_txn(txn, [AppendRequest(6, "note:race", tuple(noted(1)), expected_version=0)])
    outcome: dict[str, Any] = {}

    def writer_b() -> None:
        try:
            outcome["b"] = s.append(6, "note:race", noted(2), expected_version=0)
        except StreamConflict as e:
            outcome["b"] = e

    b = threading.Thread(target=writer_b)
    b.start()
    wait_for(lambda: _blocked_on_lock(env, 6), message="B to wait on A's row")
    conn.commit()
    conn.close()
    b.join(10)
    assert isinstance(outcome["b"], StreamConflict)
    assert numbers(s.read_stream(6, "note:race")) == [1]


def test_idempotency_key_appends_once(env: Env) -> None:
    """The same key twice gives one event and the same answer, flagged as a replay."""
    s = store(env)
    first = s.append(7, "note:3", noted(1), idempotency_key="user1:abc")
    again = s.append(7, "note:3", noted(1), idempotency_key="user1:abc")
    assert not first.replayed and again.replayed
    assert (again.event_ids, again.version) == (first.event_ids, first.version)
    assert len(s.read_stream(7, "note:3")) == 1
    with pytest.raises(IdempotencyKeyReused):
        s.append(7, "note:other", noted(1), idempotency_key="user1:abc")


def test_idempotency_key_race(env: Env) -> None:
    """Eight concurrent appends with one key: exactly one event, every caller the same ids."""
    s = store(env)
    results = []
    barrier = threading.Barrier(8)

    def go() -> None:
        barrier.wait()
        results.append(s.append(8, "note:4", noted(1), idempotency_key="k"))

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.event_ids for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert len(s.read_stream(8, "note:4")) == 1


@pytest.mark.parametrize(
    "sql", ["UPDATE events SET type = 'x'", "DELETE FROM events", "TRUNCATE events"]
)
def test_events_are_append_only(env: Env, sql: str) -> None:
    """UPDATE, DELETE and TRUNCATE on the events table fail, even for the superuser."""
    store(env).append(1, "note:5", noted(1))
    with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="append-only"):
        env.router.database(1).run_interaction("tamper", lambda txn: txn.execute(sql))
    assert len(store(env).read_stream(1, "note:5")) == 1


def test_late_commit_is_never_skipped(env: Env) -> None:
    """A takes the lower id and commits after B: the reader sees neither until A ends, then
    A before B. (A reader of ``id > last`` would have read B and skipped A forever.)"""
    s = store(env)
    conn_a = env.router.database(2).connect()
    txn_a = Txn(conn_a.cursor())
    [a] = s.append_txn(txn_a, [AppendRequest(2, "note:a", tuple(noted(1)))])
    b = s.append(2, "note:b", noted(2))
    assert a.event_ids[0] < b.event_ids[0]
    page = s.read_page(2, ORIGIN)
    assert page.events == [] and page.more, "B must wait behind A, which is still open"
    conn_a.commit()
    conn_a.close()
    page = s.read_page(2, ORIGIN)
    assert [e.id for e in page.events] == [a.event_ids[0], b.event_ids[0]]
    assert not page.more
    assert s.read_page(2, page.next).events == []


def test_concurrent_writers_and_a_tailing_reader_agree(env: Env) -> None:
    """Many writers committing in random order while a reader tails: the reader ends with
    every committed event exactly once, in a position order that never goes backwards."""
    s = store(env)
    written: list[int] = []
    lock = threading.Lock()
    done = threading.Event()

    def writer(w: int) -> None:
        for i in range(40):
            r = s.append(11, f"note:w{w}:{i % 5}", noted(i))
            with lock:
                written.extend(r.event_ids)

    seen: list[int] = []
    positions: list[Position] = []

    def reader() -> None:
        pos = ORIGIN
        while True:
            finished = done.is_set()
            page = s.read_page(11, pos, limit=7)
            seen.extend(e.id for e in page.events)
            positions.extend(e.position for e in page.events)
            pos = page.next
            if finished and not page.more and not page.events:
                return

    rt = threading.Thread(target=reader)
    rt.start()
    writers = [threading.Thread(target=writer, args=(w,)) for w in range(6)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    rt.join(30)
    assert sorted(seen) == sorted(written) and len(seen) == len(set(seen)) == 240
    assert positions == sorted(positions)


def test_page_passes_over_unwanted_types_and_limits(env: Env) -> None:
    """A type filter returns only wanted events but still advances past the others."""
    s = store(env)
    s.append(5, "note:6", noted(1, 2, 3))
    page = s.read_page(5, ORIGIN, types={"SomethingElse"})
    assert page.events == [] and page.scanned == 3 and not page.more
    assert s.read_page(5, page.next).events == []
    page = s.read_page(5, ORIGIN, limit=2)
    assert numbers(page.events) == [1, 2] and page.more
    assert s.head(5) == s.read_page(5, page.next).events[0].position


def test_inline_projection_runs_in_the_append_transaction(env: Env) -> None:
    """A hook's writes commit with the events; a hook that raises rolls the append back."""
    inline = InlineProjections()
    seen: list[int] = []

    @inline.on("Noted")
    def hook(txn: Txn, events: list[RecordedEvent]) -> None:
        seen.extend(numbers(events))
        if any(n < 0 for n in numbers(events)):
            raise ValueError("negative")

    s = store(env, inline)
    s.append(3, "note:7", noted(1, 2))
    assert seen == [1, 2]
    with pytest.raises(ValueError):
        s.append(3, "note:7", noted(-1))
    assert numbers(s.read_stream(3, "note:7")) == [1, 2]


def test_batched_appends_route_by_shard(env: Env) -> None:
    """append_many writes each stream to its shard's database and nowhere else."""
    s = store(env)
    requests = [AppendRequest(sh, f"note:r{sh}", tuple(noted(sh))) for sh in (0, 7, 8, 15)]
    results = s.append_many(requests)
    assert [r.shard for r in results] == [0, 7, 8, 15]
    found: set[int] = set()
    for db in env.router.databases():
        rows = db.run_interaction(
            "where", lambda txn: txn.fetchall("SELECT DISTINCT shard FROM events")
        )
        shards = {r[0] for r in rows}
        assert shards <= set(env.router.shards_of(db)), f"{db} holds foreign shards {shards}"
        found |= shards
    assert found == {0, 7, 8, 15}
    assert env.config.shard_map.dsn_for(7) != env.config.shard_map.dsn_for(8)


def test_unreadable_event_names_itself(env: Env) -> None:
    """A stored event the registry cannot read raises UnreadableEvent with its id."""
    other = EventRegistry()

    @other.event("Noted", version=1)
    class Changed(Event):
        n: str

    store(env).append(3, "note:8", noted(5))
    with pytest.raises(UnreadableEvent) as info:
        PostgresEventStore(env.router, registry=other).read_page(3, ORIGIN)
    assert isinstance(info.value, EventSchemaError) and info.value.event_id > 0


def test_log_order_is_numeric_across_digit_counts(env: Env) -> None:
    """Positions sort by txid as a number (9 < 10 < 100), in pages and in head(); a text sort
    would put 10 and 100 before 9 and break the tailing guarantee."""
    s = store(env)
    payload = REG.encode(Noted(n=0))[2]
    def insert(txn: Txn, txid: int) -> None:
        txn.execute(
            "INSERT INTO events (id, shard, stream, version, type, schema_version, payload, txid)"
            " VALUES (shard_0004.next_id(), 4, %s, 1, 'Noted', 1, %s, %s::xid8)",
            (f"raw:{txid}", payload, str(txid)),
        )

    for txid in (100, 9, 10):  # inserted out of order, with txids below any real xid
        env.router.database(4).run_interaction("raw", insert, txid)
    page = s.read_page(4, ORIGIN)
    assert [e.txid for e in page.events] == [9, 10, 100]
    head = s.head(4)
    assert head is not None and head.txid == 100
    assert [e.txid for e in s.read_page(4, page.events[0].position).events] == [10, 100]


def test_append_latest_decides_on_state_no_older_than_the_version_it_follows(env: Env) -> None:
    """``append_latest_txn`` reads the stream's version before the caller's decision reads
    its state: a writer committing in between (here, from inside the decision) makes the
    append conflict, so the decision runs again on the new state and nothing is lost."""
    s = store(env)
    s.append(2, "counter:1", noted(1))
    seen: list[int] = []

    def decide(txn: Txn) -> list[Event]:
        row = txn.fetchone("SELECT count(*) FROM events WHERE stream = 'counter:1'")
        seen.append(int(row[0]) if row else 0)
        if len(seen) == 1:  # a racing writer commits after the version was read
            s.append(2, "counter:1", noted(2))
        return [Noted(n=10 * seen[-1])]

    def txn_fn(txn: Txn) -> AppendResult | None:
        return append_latest_txn(txn, s, 2, "counter:1", lambda: decide(txn), actor=42)

    result = env.router.database(2).run_interaction("latest", txn_fn)
    assert seen == [1, 2]  # decided again, on the state holding the racing event
    assert result is not None
    assert [e.data.n for e in s.read_stream(2, "counter:1")] == [1, 2, 20]  # type: ignore[attr-defined]
