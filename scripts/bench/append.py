"""Events per second through the event store, next to plain INSERTs of the same rows.

Three modes, each measured for the store and for plain psycopg2 INSERTs into an equivalent
table (same columns, defaults, id function and indexes; no triggers) in the same run:

- single:     one writer, one event per transaction
- concurrent: 32 writers (threads, each with its own connection), one event per transaction
- batched:    one writer, 100 events per transaction

Run: ``python -m scripts.bench.append [--seconds S] [--durable]``. Goal: the store reaches at
least 70% of the plain rate in every mode.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

import psycopg2
import psycopg2.extras

from scripts.bench.common import arguments, bench_stack, machine, progress, rate, table
from server.config import Config
from server.domain.events import Event, EventRegistry
from server.domain.log import AppendRequest, NewEvent
from server.shards import ShardRouter
from server.store.events import PostgresEventStore
from server.store.inline import InlineProjections

REG = EventRegistry()
WRITERS = 32
BATCH = 100
SHARDS = (3, 11)  # one on each physical database


@REG.event("BenchLiked", version=1)
class BenchLiked(Event):
    media_id: int
    user_id: int


PLAIN_TABLE = """
CREATE TABLE IF NOT EXISTS bench_plain_events
    (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)
"""
PLAIN_INSERT = (
    "INSERT INTO bench_plain_events (id, shard, stream, version, type, schema_version, actor,"
    " payload, metadata) VALUES ({next_id}, %s, %s, %s, %s, %s, %s, %s, %s)"
)
PLAIN_BATCH = (
    "INSERT INTO bench_plain_events (id, shard, stream, version, type, schema_version, actor,"
    " payload, metadata) SELECT {next_id}, v.s, v.st, v.v, v.t, v.sv, v.a::bigint, v.p,"
    " v.m::jsonb FROM (VALUES %s) AS v(s, st, v, t, sv, a, p, m)"
)


class Rows:
    """Unique streams (medium, liker) and their payloads, for both sides alike."""

    def __init__(self) -> None:
        self._n = itertools.count(1)
        self._lock = threading.Lock()

    def next(self) -> tuple[str, BenchLiked]:
        with self._lock:
            n = next(self._n)
        return f"like:{n}:{n * 7}", BenchLiked(media_id=n, user_id=n * 7)


def plain_row(shard: int, stream: str, event: BenchLiked) -> tuple[object, ...]:
    name, version, payload = REG.encode(event)
    return (shard, stream, 1, name, version, None, payload, "{}")


def run_for(seconds: float, threads: int, work: Callable[[int], int]) -> int:
    """Run ``work(thread_index)`` repeatedly on ``threads`` threads for ``seconds``; each call
    returns how many events it wrote. Returns the total."""
    stop = time.monotonic() + seconds
    totals = [0] * threads

    def loop(i: int) -> None:
        while time.monotonic() < stop:
            totals[i] += work(i)

    pool = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(totals)


def measure(cfg: Config, mode: str, seconds: float, rows: Rows) -> tuple[float, float]:
    """(store events/s, plain events/s) for one mode."""
    threads = WRITERS if mode == "concurrent" else 1
    batch = BATCH if mode == "batched" else 1
    router = ShardRouter(cfg.shard_map, pool_size=threads + 1)
    store = PostgresEventStore(router, registry=REG, inline=InlineProjections())
    conns = [[psycopg2.connect(cfg.shard_map.dsn_for(s)) for s in SHARDS] for _ in range(threads)]

    def store_work(i: int) -> int:
        shard = SHARDS[i % 2]
        if batch == 1:
            stream, ev = rows.next()
            store.append(shard, stream, [NewEvent(ev)], expected_version=0)
        else:
            reqs = []
            for _ in range(batch):
                stream, ev = rows.next()
                reqs.append(AppendRequest(shard, stream, (NewEvent(ev),), expected_version=0))
            store.append_many(reqs)
        return batch

    def plain_work(i: int) -> int:
        conn = conns[i][i % 2]
        shard = SHARDS[i % 2]
        next_id = f"shard_{shard:04d}.next_id()"
        with conn.cursor() as cur:
            if batch == 1:
                cur.execute(PLAIN_INSERT.format(next_id=next_id), plain_row(shard, *rows.next()))
            else:
                psycopg2.extras.execute_values(
                    cur, PLAIN_BATCH.format(next_id=next_id),
                    [plain_row(shard, *rows.next()) for _ in range(batch)], page_size=batch,
                )
        conn.commit()
        return batch

    results: dict[str, list[float]] = {"store": [], "plain": []}
    for round_ in range(2):  # alternate, so drift in the machine's speed hits both alike
        for side, work in (("plain", plain_work), ("store", store_work)):
            progress(f"{mode}: {side} (round {round_ + 1} of 2, {seconds:.0f}s)")
            n = run_for(seconds, threads, work)
            results[side].append(rate(n, seconds))
    for per_thread in conns:
        for c in per_thread:
            c.close()
    router.close()
    return max(results["store"]), max(results["plain"])


def main() -> None:
    args = arguments(__doc__.splitlines()[0]).parse_args()
    with bench_stack(durable=args.durable) as bench:
        for db in bench.config.shard_map.dsns():
            conn = psycopg2.connect(db)
            with conn, conn.cursor() as cur:
                cur.execute(PLAIN_TABLE)
            conn.close()
        rows = []
        streams = Rows()  # one numbering for the whole run: every stream is new
        for mode in ("single", "concurrent", "batched"):
            store_rate, plain_rate = measure(bench.config, mode, args.seconds, streams)
            ratio = store_rate / plain_rate if plain_rate else 0.0
            rows.append([mode, f"{store_rate:,.0f}", f"{plain_rate:,.0f}", f"{ratio:.0%}",
                         "yes" if ratio >= 0.7 else "NO"])
    table(
        f"append throughput, events/s ({machine()}; PostgreSQL "
        f"{'durable' if args.durable else 'fsync off'}; {args.seconds:.0f}s per phase, best of 2)",
        ["mode", "event store", "plain INSERT", "ratio", ">= 70%"],
        rows,
    )


if __name__ == "__main__":
    main()
