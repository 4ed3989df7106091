"""Events per second through relay, gearmand and workers, next to the same Redis writes done
directly; and end-to-end latency at a steady append rate.

1. Throughput: append ``--events`` events across all 16 shards (workers idle, nobody kicks
   them), then kick the consumer on every shard and time until every checkpoint is at its
   shard's head. The consumer does one Redis write per event (``SET``, pipelined per batch).
   In the same run, the same ``SET``s are done directly in a loop, pipelined in batches of the
   same size. Goal: at least 50,000 events/s through the pipeline, and at least 50% of the
   direct rate.
2. Latency: with the relay running, once every other consumer of the release has moved past
   the backlog (of a type none of them reads), append one event per transaction at
   ``--rate`` events/s for ``--seconds``; latency is from the append's commit (its return)
   to the handler's write (the handler stores its clock in the value). Goal: p99 under 100 ms.

Run: ``python -m scripts.bench.pipeline [--events N] [--workers W] [--concurrency C]``.
"""

from __future__ import annotations

import itertools
import statistics
import sys
import threading
import time

import redis

from scripts.bench.common import arguments, bench_stack, machine, progress, rate, table
from server.domain.checkpoints import kick_due
from server.domain.events import EVENTS, Event
from server.domain.log import AppendRequest, NewEvent, Position, RecordedEvent
from server.shards import ShardRouter
from server.store.consumers import ConsumerStore
from server.store.events import PostgresEventStore
from tests.helpers import Process, wait_for
from workers import gearman, handlers
from workers.consumers import CONSUMERS, consumer
from workers.context import WorkerContext
from workers.jobs import advance_function, advance_job

BATCH = 2000
NAME = "bench_redis"


@EVENTS.event("BenchNoted", version=1)
class BenchNoted(Event):
    n: int


@consumer(NAME, "BenchNoted", batch_size=BATCH)
def bench_redis(ctx: WorkerContext, events: list[RecordedEvent]) -> None:
    """One Redis write per event: ``SET b:ID <apply time>``."""
    pipe = ctx.redis.pipeline(transaction=False)
    now = repr(time.time())
    for e in events:
        pipe.execute_command("SET", f"b:{e.id}", now)
    pipe.execute()


def append_backlog(store: PostgresEventStore, shards: int, total: int) -> list[int]:
    """Append ``total`` events round-robin over the shards (one writer per database)."""
    counter = itertools.count()
    ids: list[int] = []
    lock = threading.Lock()
    per_call = 1000

    def writer(my_shards: list[int], count: int) -> None:
        done = 0
        while done < count:
            n = min(per_call, count - done)
            reqs = [AppendRequest(my_shards[i % len(my_shards)], f"b:{next(counter)}",
                                  (NewEvent(BenchNoted(n=i)),)) for i in range(n)]
            got = [i for r in store.append_many(reqs) for i in r.event_ids]
            with lock:
                ids.extend(got)
            done += n

    halves = [list(range(shards // 2)), list(range(shards // 2, shards))]
    threads = [threading.Thread(target=writer, args=(h, total // 2)) for h in halves]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ids


def direct(r: redis.Redis, ids: list[int]) -> float:
    """The same writes in a loop, pipelined in batches of BATCH; returns events/s."""
    start = time.perf_counter()
    for i in range(0, len(ids), BATCH):
        pipe = r.pipeline(transaction=False)
        now = repr(time.time())
        for event_id in ids[i:i + BATCH]:
            pipe.execute_command("SET", f"d:{event_id}", now)
        pipe.execute()
    return rate(len(ids), time.perf_counter() - start)


def at_head(checkpoints: ConsumerStore, heads: dict[int, Position]) -> bool:
    for shard, head in heads.items():
        cp = checkpoints.checkpoint(NAME, shard)
        if cp is None or cp.position < head:
            return False
    return True


def swept(checkpoints: ConsumerStore, router: ShardRouter) -> bool:
    """Every consumer of the release is near its shards' heads: the backlog appended for the
    throughput phase (of a type only the bench reads) no longer makes the relay kick them, so
    the latency phase measures the steady state."""
    wanted = CONSUMERS.wanted()
    return all(not kick_due(state.lag, state.scanned)
               for db in router.databases() for state in checkpoints.scan(db, wanted))


def main() -> None:
    p = arguments(__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=200_000, help="backlog size (%(default)s)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (%(default)s)")
    p.add_argument("--concurrency", type=int, default=8, help="jobs per process (%(default)s)")
    p.add_argument("--rate", type=int, default=1000, help="latency phase events/s (%(default)s)")
    p.set_defaults(seconds=10.0)
    args = p.parse_args()
    handlers.load()  # the release's consumers, whose checkpoints ``swept`` watches
    with bench_stack(durable=args.durable) as bench:
        cfg = bench.config
        env = bench.env | {"SHUTTERLOG_WORKERS_MODULES": "scripts.bench.pipeline",
                           "SHUTTERLOG_WORKERS_METRICS_PORT": "0",
                           "SHUTTERLOG_RELAY_METRICS_PORT": "0",
                           "SHUTTERLOG_LOG_LEVEL": "warning"}
        router = ShardRouter(cfg.shard_map, pool_size=4)
        store = PostgresEventStore(router)
        checkpoints = ConsumerStore(router)
        r = redis.Redis.from_url(cfg.redis.url)
        cli = [sys.executable, "-m", "scripts.cli"]
        procs = [Process([*cli, "workers", "--concurrency", str(args.concurrency)], env,
                         f"workers{i}") for i in range(args.workers)]
        server = cfg.gearman.servers[0]
        function = advance_function(cfg.gearman.namespace)
        wait_for(lambda: sum(function in w.functions for w in gearman.workers(server))
                 >= args.workers, 60, "the workers to connect")
        try:
            progress(f"appending {args.events:,} events over {router.count} shards")
            started = time.perf_counter()
            ids = append_backlog(store, router.count, args.events)
            progress(f"appended at {rate(len(ids), time.perf_counter() - started):,.0f}/s")
            heads = {s: h for s in range(router.count) if (h := store.head(s))}
            progress("pipeline: kicking the consumer on every shard")
            started = time.perf_counter()
            client = gearman.GearmanClient(cfg.gearman.servers)
            client.submit_many([advance_job(cfg.gearman.namespace, NAME, s) for s in heads])
            wait_for(lambda: at_head(checkpoints, heads), 600, "checkpoints at head", poll=0.01)
            piped = rate(len(ids), time.perf_counter() - started)
            applied = sum(1 for _ in r.scan_iter("b:*", count=10_000))
            assert applied == len(ids), f"{applied} of {len(ids)} events applied"
            progress("direct: the same writes in a loop")
            direct_rate = direct(r, ids)

            progress(f"latency: {args.rate} events/s for {args.seconds:.0f}s, relay running")
            procs.append(Process([*cli, "relay"], env, "relay"))
            probe = store.append(0, "probe", [NewEvent(BenchNoted(n=-1))]).event_ids[0]
            wait_for(lambda: r.exists(f"b:{probe}"), 60, "the relay to start")
            progress("waiting for the other consumers to move past the backlog")
            wait_for(lambda: swept(checkpoints, router), 600, "every checkpoint near its head")
            latencies = steady(store, r, router.count, args.rate, args.seconds)
        finally:
            for proc in procs:
                proc.stop()
            router.close()
    lat = sorted(latencies)
    p50 = statistics.median(lat)
    p99 = lat[int(len(lat) * 0.99) - 1]
    table(
        f"pipeline ({machine()}; {args.workers} worker processes x {args.concurrency} jobs; "
        f"batch {BATCH})",
        ["measure", "value", "goal"],
        [
            ["pipeline events/s (append backlog -> checkpoints at head)", f"{piped:,.0f}",
             ">= 50,000"],
            ["direct Redis writes/s (same SETs, pipelined per batch)", f"{direct_rate:,.0f}", ""],
            ["ratio", f"{piped / direct_rate:.0%}", ">= 50%"],
            [f"latency p50 at {args.rate}/s (append commit -> handler write)",
             f"{p50 * 1000:.1f} ms", ""],
            [f"latency p99 at {args.rate}/s", f"{p99 * 1000:.1f} ms", "< 100 ms"],
        ],
    )


def steady(store: PostgresEventStore, r: redis.Redis, shards: int, per_second: int,
           seconds: float) -> list[float]:
    """Append one event per transaction at ``per_second``; latencies in seconds."""
    committed: dict[int, float] = {}
    interval = 1.0 / per_second
    start = time.monotonic()
    for i in range(int(per_second * seconds)):
        delay = start + i * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        result = store.append(i % shards, f"lat:{i}:{start}", [NewEvent(BenchNoted(n=i))])
        committed[result.event_ids[0]] = time.time()
    keys = [f"b:{i}" for i in committed]
    wait_for(lambda: all(r.mget(keys)), 60, "every event applied")
    return [float(v or 0) - committed[i] for i, v in zip(committed, r.mget(keys), strict=True)]


if __name__ == "__main__":
    main()
