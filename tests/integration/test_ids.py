"""Ids minted by each shard's PL/pgSQL ``next_ids``: unique, increasing, rolling correctly."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import psycopg2

from server.domain.ids import EPOCH, decode_id
from tests.integration.conftest import Env


def test_unique_and_increasing_under_concurrency(env: Env) -> None:
    """8 connections minting 500 ids each in one shard: all unique, each connection's rising."""
    dsn = env.config.shard_map.dsn_for(5)
    per_conn: list[list[int]] = []
    barrier = threading.Barrier(8)

    def mint() -> None:
        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        got: list[int] = []
        with conn.cursor() as cur:
            barrier.wait()
            for _ in range(500):
                cur.execute("SELECT shard_0005.next_id()")
                got.append(cur.fetchone()[0])
        conn.close()
        per_conn.append(got)

    threads = [threading.Thread(target=mint) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for got in per_conn for i in got]
    assert len(everything) == len(set(everything)) == 4000
    for got in per_conn:
        assert got == sorted(got)
        assert {decode_id(i).shard for i in got} == {5}


def test_1025th_id_in_one_millisecond_rolls_into_the_next(env: Env) -> None:
    """1,024 ids at one instant take sequences 0..1023; the 1,025th moves to the next ms."""
    at = datetime.now(UTC) + timedelta(days=1)  # ahead of the shard's clock: a fresh millisecond
    rows = env.router.database(2).run_interaction(
        "ids", lambda txn: txn.fetchall(
            "SELECT shard_0002.next_id(%s) FROM generate_series(1, 1026)", (at,)
        ),
    )
    ids = [r[0] for r in rows]
    parts = [decode_id(i) for i in ids]
    millis = int((at - EPOCH) / timedelta(milliseconds=1))
    assert len(set(ids)) == 1026 and ids == sorted(ids)
    assert [p.sequence for p in parts[:1024]] == list(range(1024))
    assert {p.millis for p in parts[:1024]} == {millis}
    assert (parts[1024].millis, parts[1024].sequence) == (millis + 1, 0)
    assert (parts[1025].millis, parts[1025].sequence) == (millis + 1, 1)
    # The clock never runs backwards: an id minted "now" still comes after them.
    later = env.router.database(2).run_interaction(
        "id", lambda txn: txn.fetchone("SELECT shard_0002.next_id()")
    )
    assert later is not None and later[0] > ids[-1]


def test_batch_of_ids_is_consecutive(env: Env) -> None:
    """next_ids(n) reserves n increasing ids in one call, for batched appends."""
    row = env.router.database(9).run_interaction(
        "ids", lambda txn: txn.fetchone("SELECT shard_0009.next_ids(3000)")
    )
    assert row is not None
    ids = row[0]
    assert len(set(ids)) == 3000 and ids == sorted(ids)
    assert {decode_id(i).shard for i in ids} == {9}
